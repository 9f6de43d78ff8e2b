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
// Slow start (Postfix's destination concurrency scheduler, SMTP-LESSONS
// 11): a destination's sessions may use only the first w of its slots, its
// window, shared in the same bucket under d.<hash>.w. The window starts at
// Config.Initial, grows by one after w deliveries in a row in which a host
// answered (Postfix's positive feedback 1/concurrency, counted by each
// replica on its own, so n replicas grow it up to n times as fast), and
// shrinks by one when no host answered (negative feedback 1). A failure
// at window 1 while no other session to it runs means the destination is
// dead (Feedback's answer), which is Postfix's failed pseudo-cohort: a destination that refuses only the
// sessions beyond the few it accepts ("421 too many connections") has its
// window shrink instead of being suspended, while one that answers nobody
// is suspended after as many failures as its window had sessions, which
// are tried at once. The window expires with the bucket's TTL when no
// feedback changes or refreshes it, and a later delivery starts again at
// Config.Initial.
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
	kv      jetstream.KeyValue
	max     int
	initial int
	ttl     time.Duration
	holder  []byte
	log     *slog.Logger

	mu   sync.Mutex
	runs map[string]int // destination key prefix → answered deliveries since the window last changed here
}

// Config sets up a Shared limiter.
type Config struct {
	Max     int           // sessions per destination, at most
	Initial int           // the window a destination starts with; 0 or more than Max: Max
	TTL     time.Duration // how long a dead replica's slot stays taken; 0: DefaultTTL
	Holder  string        // names this replica in the slots it takes (for an operator reading the bucket)
	Logger  *slog.Logger
}

// maxRuns bounds the success counters kept per destination; past it they
// start again from zero, which only delays growth.
const maxRuns = 10000

// Open declares the bucket (or updates its settings) and returns the
// limiter.
func Open(ctx context.Context, js jetstream.JetStream, o natsx.Options, c Config) (*Shared, error) {
	if c.Max <= 0 {
		return nil, fmt.Errorf("destlimit: max %d must be positive", c.Max)
	}
	if c.Initial <= 0 || c.Initial > c.Max {
		c.Initial = c.Max
	}
	if c.TTL <= 0 {
		c.TTL = DefaultTTL
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	kv, err := natsx.EnsureKeyValue(ctx, js, o.DestinationSlotsConfig(c.TTL))
	if err != nil {
		return nil, fmt.Errorf("destlimit: bucket %s: %w", o.DestinationSlots(), err)
	}
	return &Shared{kv: kv, max: c.Max, initial: c.Initial, ttl: c.TTL, holder: []byte(c.Holder), log: c.Logger,
		runs: map[string]int{}}, nil
}

func keyPrefix(dest string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(dest)))
	return "d." + hex.EncodeToString(sum[:16]) + "."
}

// window is a destination's shared window and the revision it was read
// at (0: none stored, the initial window applies).
type window struct {
	size     int
	failures int // deliveries in a row in which no host answered
	rev      uint64
}

func (s *Shared) window(ctx context.Context, prefix string) (window, error) {
	e, err := s.kv.Get(ctx, prefix+"w")
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return window{size: s.initial}, nil
	}
	if err != nil {
		return window{}, fmt.Errorf("destlimit: window: %w", err)
	}
	w := window{size: s.initial, rev: e.Revision()}
	if _, err := fmt.Sscanf(string(e.Value()), "%d %d", &w.size, &w.failures); err != nil || w.size < 1 {
		w.size, w.failures = s.initial, 0 // not ours to understand: start again
	}
	w.size = min(w.size, s.max) // Max lowered since it was written
	return w, nil
}

// Window returns the number of sessions dest may have now.
func (s *Shared) Window(ctx context.Context, dest string) (int, error) {
	w, err := s.window(ctx, keyPrefix(dest))
	return w.size, err
}

// Feedback records how a delivery to dest went: answered when some host
// of it answered, as opposed to none (refused, timed out, no greeting or
// a refusing one). It returns dead when dest should be suspended: no host
// answered, the window was already down to one session, and no session to
// dest but the caller's holds a slot. The window shrinks as sessions fail,
// but sessions that took their slots while it was wider run on; while one
// does, a host answers.
func (s *Shared) Feedback(ctx context.Context, dest string, answered bool) (dead bool, err error) {
	prefix := keyPrefix(dest)
	s.mu.Lock()
	runs := 0
	if answered {
		if len(s.runs) >= maxRuns {
			clear(s.runs)
		}
		s.runs[prefix]++
		runs = s.runs[prefix]
	} else {
		delete(s.runs, prefix)
	}
	s.mu.Unlock()
	for range 5 { // lost races with other replicas' updates
		w, err := s.window(ctx, prefix)
		if err != nil {
			return !answered, err
		}
		next, grow := w, answered && runs >= w.size
		switch {
		case answered && !grow && w.failures == 0:
			return false, nil
		case answered:
			// Grow, or at the ceiling write the same window again so that
			// it does not expire under steady traffic; either way the run
			// of failures has ended.
			next.failures = 0
			if grow {
				next.size = min(w.size+1, s.max)
			}
		default:
			if w.size <= 1 {
				if dead, err = s.alone(ctx, prefix); err != nil {
					return true, err
				}
			}
			next.size = max(w.size-1, 1)
			next.failures = w.failures + 1
		}
		err = s.put(ctx, prefix+"w", next, w.rev)
		if errors.Is(err, jetstream.ErrKeyExists) {
			continue
		}
		if err != nil {
			return dead, fmt.Errorf("destlimit: window: %w", err)
		}
		if grow {
			s.mu.Lock()
			delete(s.runs, prefix)
			s.mu.Unlock()
		}
		if next.size != w.size {
			s.log.Debug("destination window changed", "destination", dest, "from", w.size, "to", next.size, "answered", answered)
		}
		return dead, nil
	}
	// Others keep changing it: their feedback counts as well as ours.
	return false, nil
}

// alone reports whether at most one slot of the destination is taken:
// the caller's own. A session still running (taken when the window was
// wider) is a host that answered, whatever the failures around it say.
// Only asked when a delivery fails at a window of one.
func (s *Shared) alone(ctx context.Context, prefix string) (bool, error) {
	held := 0
	for i := range s.max {
		_, err := s.kv.Get(ctx, prefix+strconv.Itoa(i))
		switch {
		case err == nil:
			held++
		case !errors.Is(err, jetstream.ErrKeyNotFound):
			return false, fmt.Errorf("destlimit: slot: %w", err)
		}
	}
	return held <= 1, nil
}

// put writes w at rev (0: the key must not exist); a lost race is
// jetstream.ErrKeyExists.
func (s *Shared) put(ctx context.Context, key string, w window, rev uint64) error {
	v := []byte(fmt.Sprintf("%d %d", w.size, w.failures))
	var err error
	if rev == 0 {
		_, err = s.kv.Create(ctx, key, v)
	} else {
		_, err = s.kv.Update(ctx, key, v, rev) // a lost race matches ErrKeyExists too
	}
	return err
}

// Acquire waits for a slot of dest (a domain, or any other name for a
// destination) and returns the function that frees it. It fails when ctx
// ends or NATS fails.
func (s *Shared) Acquire(ctx context.Context, dest string) (release func(), err error) {
	prefix := keyPrefix(dest)
	var w jetstream.KeyWatcher
	defer func() {
		if w != nil {
			_ = w.Stop()
		}
	}()
	for {
		win, err := s.window(ctx, prefix)
		if err != nil {
			return nil, err
		}
		start := rand.IntN(win.size)
		for k := range win.size {
			key := prefix + strconv.Itoa((start+k)%win.size)
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

// wait returns when a slot may have been freed or the window changed: a
// delete or a window update seen by the watch, or a quarter TTL (an expiry
// sends no event).
func (s *Shared) wait(ctx context.Context, w jetstream.KeyWatcher) error {
	t := time.NewTimer(s.ttl / 4)
	defer t.Stop()
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("destlimit: watch ended")
			}
			if e != nil && (e.Operation() != jetstream.KeyValuePut || strings.HasSuffix(e.Key(), ".w")) {
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
