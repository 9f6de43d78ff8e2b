// Package gc is the store's background collector: it deletes the S3
// objects that no mailbox entry refers to any more, once they have been
// unreferenced for a grace period, and forgets expunge tombstones older
// than the retention. On a shorter interval of its own it also merges the
// SEARCH index's recent additions into the index (Repo.CleanSearchIndex),
// which PostgreSQL would otherwise do inside whichever delivery crosses
// the pending-list limit.
//
// The grace period exists because an IMAP session that has not yet seen
// an expunge (RFC 9051 §7.5.1: a server may not send EXPUNGE until the
// client can accept it) may still FETCH the message's body; QRESYNC
// (RFC 7162 §3.2.10) clients older than the retention get the full
// VANISHED answer instead. The safety against a concurrent delivery that
// adds a reference is the repository's (repo.Objects.Collect): it locks
// the row, re-checks it, and only then calls the delete given here.
package gc

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/petrel-mail/petrel/platform/blob"
)

// Defaults of Options.
const (
	DefaultGrace     = time.Hour
	DefaultRetention = 30 * 24 * time.Hour
	DefaultInterval  = time.Minute
	// DefaultIndexInterval: at 500 deliveries a second, five seconds of
	// pending SEARCH entries are a few MB, well under the 32 MB limit of
	// migration 0070.
	DefaultIndexInterval = 5 * time.Second
)

// Repo is what the collector needs of the repository.
type Repo interface {
	Collect(ctx context.Context, grace time.Duration, deleteFn func(ctx context.Context, tenantID int64, key string) error) (int, error)
	PruneExpunged(ctx context.Context, before time.Time) (int64, error)
	CleanSearchIndex(ctx context.Context) (int64, error)
}

// Options configure a Collector. Repo and Blobs are required.
type Options struct {
	Repo  Repo
	Blobs blob.Store
	// Grace: how long an object stays after its last reference went.
	// Zero is allowed (tests); negative means DefaultGrace.
	Grace time.Duration
	// Retention: how long expunge tombstones are kept; zero means
	// DefaultRetention.
	Retention time.Duration
	// Interval between runs; zero means DefaultInterval.
	Interval time.Duration
	// IndexInterval between SEARCH index clean-ups; zero means
	// DefaultIndexInterval.
	IndexInterval time.Duration
	Logger        *slog.Logger
	Registry      prometheus.Registerer
	Now           func() time.Time
}

// Collector runs the collection periodically; it is a lifecycle.Component.
type Collector struct {
	opts     Options
	deleted  prometheus.Counter
	pruned   prometheus.Counter
	failures prometheus.Counter
	indexed  prometheus.Counter
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
	doneOnce sync.Once
}

// New returns a collector.
func New(opts Options) (*Collector, error) {
	if opts.Repo == nil || opts.Blobs == nil {
		return nil, errors.New("gc: Repo and Blobs are required")
	}
	if opts.Grace < 0 {
		opts.Grace = DefaultGrace
	}
	if opts.Retention <= 0 {
		opts.Retention = DefaultRetention
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.IndexInterval <= 0 {
		opts.IndexInterval = DefaultIndexInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &Collector{
		opts:     opts,
		deleted:  prometheus.NewCounter(prometheus.CounterOpts{Name: "petrel_store_gc_objects_deleted_total", Help: "Unreferenced message objects deleted from blob storage."}),
		pruned:   prometheus.NewCounter(prometheus.CounterOpts{Name: "petrel_store_gc_tombstones_pruned_total", Help: "Expunge tombstones forgotten after the retention."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "petrel_store_gc_failures_total", Help: "Collector runs that met an error."}),
		indexed:  prometheus.NewCounter(prometheus.CounterOpts{Name: "petrel_store_search_index_pending_pages_merged_total", Help: "SEARCH index pending-list pages merged in the background."}),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if opts.Registry != nil {
		for _, m := range []prometheus.Collector{c.deleted, c.pruned, c.failures, c.indexed} {
			if err := opts.Registry.Register(m); err != nil {
				return nil, err
			}
		}
	}
	return c, nil
}

// Result is what one run did.
type Result struct {
	Deleted int
	Pruned  int64
}

// RunOnce collects once: objects past the grace, then tombstones past the
// retention. Both are attempted; the errors are joined.
func (c *Collector) RunOnce(ctx context.Context) (Result, error) {
	var res Result
	var errs []error
	n, err := c.opts.Repo.Collect(ctx, c.opts.Grace, func(ctx context.Context, _ int64, key string) error {
		return c.opts.Blobs.Delete(ctx, key)
	})
	res.Deleted = n
	c.deleted.Add(float64(n))
	if err != nil {
		errs = append(errs, err)
	}
	p, err := c.opts.Repo.PruneExpunged(ctx, c.opts.Now().Add(-c.opts.Retention))
	res.Pruned = p
	c.pruned.Add(float64(p))
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		c.failures.Inc()
		return res, err
	}
	return res, nil
}

// Serve runs the collector every Interval until Shutdown or ctx ends. A
// failed run is logged and retried at the next interval: the database or
// S3 being down must not stop the service.
func (c *Collector) Serve(ctx context.Context) error {
	defer c.doneOnce.Do(func() { close(c.done) })
	indexDone := make(chan struct{})
	go func() {
		defer close(indexDone)
		c.serveIndex(ctx)
	}()
	defer func() { <-indexDone }()
	t := time.NewTicker(c.opts.Interval)
	defer t.Stop()
	for {
		runCtx, cancel := context.WithTimeout(ctx, max(c.opts.Interval, time.Minute))
		res, err := c.RunOnce(runCtx)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			c.opts.Logger.Warn("gc run failed", "err", err, "deleted", res.Deleted, "pruned", res.Pruned)
		case res.Deleted > 0 || res.Pruned > 0:
			c.opts.Logger.Info("gc run", "deleted", res.Deleted, "pruned", res.Pruned)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.stop:
			return nil
		case <-t.C:
		}
	}
}

// serveIndex cleans the SEARCH index every IndexInterval until Shutdown
// or ctx ends.
func (c *Collector) serveIndex(ctx context.Context) {
	t := time.NewTicker(c.opts.IndexInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.stop:
			return
		case <-t.C:
		}
		runCtx, cancel := context.WithTimeout(ctx, max(c.opts.IndexInterval, time.Minute))
		n, err := c.opts.Repo.CleanSearchIndex(runCtx)
		cancel()
		c.indexed.Add(float64(n))
		if err != nil && ctx.Err() == nil {
			c.failures.Inc()
			c.opts.Logger.Warn("search index clean-up failed", "err", err)
		}
	}
}

// Shutdown stops the loop after the run in progress, or when ctx ends.
func (c *Collector) Shutdown(ctx context.Context) error {
	c.stopOnce.Do(func() { close(c.stop) })
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
