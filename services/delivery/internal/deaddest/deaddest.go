// Package deaddest shares dead destinations between delivery replicas. A
// destination none of whose hosts answered (every address refused or
// timed out the connection, or gave no greeting or a refusing one) is
// suspended for a while: its mail is deferred at once, without
// connecting, by every replica — Postfix's dead destinations
// (SCHEDULER_README, qmgr's throttling for minimal_backoff_time). Without
// it, each queued message for a dead domain holds a delivery worker for
// the connect timeout of every MX address, every replica finds out for
// itself, and the remote, when it comes back, meets the whole backlog at
// once.
//
// A suspension is a value in a NATS JetStream key-value bucket
// (natsx.DeadDestinationsBucket) under d.<hash of the destination>. Each
// replica keeps every suspension in memory from a watch of the bucket, so
// asking whether a destination is suspended is a map look-up. Values
// carry their own end (the bucket's TTL only clears old keys): a
// suspension ends by itself, or earlier when a session to the destination
// succeeds (Resume), for instance one an operator asked for.
//
// NATS failures are returned to the caller, which logs them: the
// suspension is then this replica's alone (it is kept in memory first),
// which is what a single replica would do anyway. The bucket is on disk,
// so it outlives a NATS restart; the watch (nats.go's ordered consumer)
// resumes by itself once it misses the server's heartbeats, about half a
// minute later, without restarting the replica.
package deaddest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/petrel-mail/petrel/platform/natsx"
)

// suspension is the value of a key.
type suspension struct {
	Destination string    `json:"destination"`
	Reason      string    `json:"reason"`
	Until       time.Time `json:"until"`
}

// Shared is the cluster-wide set of suspended destinations. It is safe for
// concurrent use.
type Shared struct {
	kv  jetstream.KeyValue
	w   jetstream.KeyWatcher
	log *slog.Logger

	mu      sync.RWMutex
	m       map[string]suspension // by key
	applied chan struct{}         // closed and replaced whenever the watch applied a change

	ready chan struct{} // closed once the watch delivered the initial values
	done  chan struct{} // closed when the watch loop ends
}

// Open declares the bucket (or updates its settings), loads the current
// suspensions and follows them until Close.
func Open(ctx context.Context, js jetstream.JetStream, o natsx.Options, log *slog.Logger) (*Shared, error) {
	if log == nil {
		log = slog.Default()
	}
	kv, err := natsx.EnsureKeyValue(ctx, js, o.DeadDestinationsConfig())
	if err != nil {
		return nil, fmt.Errorf("deaddest: bucket %s: %w", o.DeadDestinations(), err)
	}
	// The watch lives until Close, not until ctx ends.
	w, err := kv.WatchAll(context.WithoutCancel(ctx))
	if err != nil {
		return nil, fmt.Errorf("deaddest: watch %s: %w", o.DeadDestinations(), err)
	}
	s := &Shared{kv: kv, w: w, log: log, m: map[string]suspension{}, applied: make(chan struct{}), ready: make(chan struct{}), done: make(chan struct{})}
	go s.follow()
	select {
	case <-s.ready:
		return s, nil
	case <-s.done:
		return nil, fmt.Errorf("deaddest: watch of %s ended before its initial values", o.DeadDestinations())
	case <-ctx.Done():
		s.Close()
		return nil, ctx.Err()
	}
}

// Close stops following the bucket.
func (s *Shared) Close() {
	_ = s.w.Stop()
	<-s.done
}

func (s *Shared) follow() {
	defer close(s.done)
	initial := true
	for e := range s.w.Updates() {
		if e == nil {
			if initial {
				initial = false
				close(s.ready)
			}
			continue
		}
		if e.Operation() != jetstream.KeyValuePut {
			s.mu.Lock()
			delete(s.m, e.Key())
			s.notifyLocked()
			s.mu.Unlock()
			continue
		}
		var v suspension
		if err := json.Unmarshal(e.Value(), &v); err != nil {
			s.log.Warn("dead destination entry ignored", "key", e.Key(), "err", err)
			continue
		}
		s.set(e.Key(), v)
	}
}

// set records a suspension and forgets the ones that ended (the bucket's
// TTL removes their keys without an event on older servers).
func (s *Shared) set(key string, v suspension) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, old := range s.m {
		if !now.Before(old.Until) {
			delete(s.m, k)
		}
	}
	s.m[key] = v
	s.notifyLocked()
}

// notifyLocked wakes whoever waits for the next change (s.mu held).
func (s *Shared) notifyLocked() {
	close(s.applied)
	s.applied = make(chan struct{})
}

// changed returns a channel closed at the next change to the suspensions
// this replica knows: its own or, through the watch, another replica's.
func (s *Shared) changed() <-chan struct{} {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.applied
}

func keyOf(dest string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(dest)))
	return "d." + hex.EncodeToString(sum[:16])
}

// Suspended reports whether dest is suspended now, why, and until when.
func (s *Shared) Suspended(dest string) (reason string, until time.Time, ok bool) {
	s.mu.RLock()
	v, found := s.m[keyOf(dest)]
	s.mu.RUnlock()
	if !found || !time.Now().Before(v.Until) {
		return "", time.Time{}, false
	}
	return v.Reason, v.Until, true
}

// Count is the number of destinations suspended now.
func (s *Shared) Count() int {
	now := time.Now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for _, v := range s.m {
		if now.Before(v.Until) {
			n++
		}
	}
	return n
}

// Suspend suspends dest until the given time for every replica. The
// suspension holds in this replica even when the error (NATS) is not nil.
func (s *Shared) Suspend(ctx context.Context, dest, reason string, until time.Time) error {
	v := suspension{Destination: dest, Reason: reason, Until: until}
	key := keyOf(dest)
	s.set(key, v)
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := s.kv.Put(ctx, key, data); err != nil {
		return fmt.Errorf("deaddest: suspend %s: %w", dest, err)
	}
	return nil
}

// Resume ends the suspension of dest, if there is one, for every replica.
func (s *Shared) Resume(ctx context.Context, dest string) error {
	key := keyOf(dest)
	s.mu.Lock()
	_, found := s.m[key]
	if found {
		delete(s.m, key)
		s.notifyLocked()
	}
	s.mu.Unlock()
	if !found {
		return nil
	}
	if err := s.kv.Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("deaddest: resume %s: %w", dest, err)
	}
	return nil
}
