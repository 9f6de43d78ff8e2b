// Package destlimit shares the limit of concurrent SMTP sessions per
// destination between delivery replicas. Each replica bounds its own
// sessions (smtpout's local limiter); without a shared bound, ten replicas
// would open ten times the limit to one domain, which is what gets a
// sender's IP rate-limited or blocked by large mailbox providers.
//
// A destination has max slots, keys d.<hash>.<n> in a NATS JetStream
// key-value bucket (natsx.DestinationSlotsBucket). A session takes a free
// slot with an atomic create, refreshes it every third of the bucket's TTL
// while it runs, and deletes it (at the revision it wrote) when it ends.
// A replica that dies holding a slot stops refreshing it and the slot
// expires after the TTL. A session that finds every slot taken watches the
// destination's keys and tries again when one is deleted, and at least
// every quarter TTL, since expiry is silent.
//
// Errors from NATS are returned to the caller, which may carry on under
// its local limit: the limit is politeness towards the remote, not a
// guarantee any mail depends on.
package destlimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/petrel-mail/petrel/platform/natsx"
)

// DefaultTTL is how long the slot of a replica that died stays taken.
const DefaultTTL = time.Minute

// Shared is the cluster-wide limiter. It is safe for concurrent use.
type Shared struct {
	kv     jetstream.KeyValue
	max    int
	ttl    time.Duration
	holder []byte
	log    *slog.Logger
}

// Open declares the bucket (or updates its settings) and returns a
// limiter of max sessions per destination. holder names this replica in
// the slots it takes (for an operator reading the bucket).
func Open(ctx context.Context, js jetstream.JetStream, o natsx.Options, max int, ttl time.Duration, holder string, log *slog.Logger) (*Shared, error) {
	if max <= 0 {
		return nil, fmt.Errorf("destlimit: max %d must be positive", max)
	}
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	if log == nil {
		log = slog.Default()
	}
	kv, err := natsx.EnsureKeyValue(ctx, js, o.DestinationSlotsConfig(ttl))
	if err != nil {
		return nil, fmt.Errorf("destlimit: bucket %s: %w", o.DestinationSlots(), err)
	}
	return &Shared{kv: kv, max: max, ttl: ttl, holder: []byte(holder), log: log}, nil
}

// Acquire waits for a slot of dest (a domain, or any other name for a
// destination) and returns the function that frees it. It fails when ctx
// ends or NATS fails.
func (s *Shared) Acquire(ctx context.Context, dest string) (release func(), err error) {
	sum := sha256.Sum256([]byte(strings.ToLower(dest)))
	prefix := "d." + hex.EncodeToString(sum[:16]) + "."
	var w jetstream.KeyWatcher
	defer func() {
		if w != nil {
			_ = w.Stop()
		}
	}()
	start := rand.IntN(s.max)
	for {
		for k := range s.max {
			key := prefix + strconv.Itoa((start+k)%s.max)
			rev, err := s.kv.Create(ctx, key, s.holder)
			if err == nil {
				return s.hold(key, rev), nil
			}
			if !errors.Is(err, jetstream.ErrKeyExists) {
				return nil, fmt.Errorf("destlimit: take %s: %w", key, err)
			}
		}
		if w == nil {
			// Watch first, then look again: a slot freed in between is
			// seen by the second look, one freed later by the watch.
			if w, err = s.kv.Watch(ctx, prefix+"*", jetstream.UpdatesOnly()); err != nil {
				return nil, fmt.Errorf("destlimit: watch %s: %w", dest, err)
			}
			continue
		}
		if err := s.wait(ctx, w); err != nil {
			return nil, err
		}
	}
}

// wait returns when a slot may have been freed: a delete seen by the
// watch, or a quarter TTL (an expiry sends no event).
func (s *Shared) wait(ctx context.Context, w jetstream.KeyWatcher) error {
	t := time.NewTimer(s.ttl / 4)
	defer t.Stop()
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("destlimit: watch ended")
			}
			if e != nil && e.Operation() != jetstream.KeyValuePut {
				return nil
			}
		case <-t.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// hold refreshes the slot until released, then deletes it if it is
// still ours.
func (s *Shared) hold(key string, rev uint64) func() {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(s.ttl / 3)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), s.ttl/3)
			r, err := s.kv.Update(ctx, key, s.holder, rev)
			cancel()
			if err == nil {
				rev = r
			}
			if err != nil {
				// Expired and taken by another, or NATS is away: the
				// session goes on; at worst the destination sees one
				// session more than the limit for a while.
				s.log.Warn("destination slot not refreshed", "key", key, "err", err)
				return
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(stop)
			<-done // rev is ours to read again
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := s.kv.Delete(ctx, key, jetstream.LastRevision(rev)); err != nil {
				s.log.Warn("destination slot not freed; it expires", "key", key, "ttl", s.ttl, "err", err)
			}
		})
	}
}
