package auth

import (
	"container/list"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// ErrThrottled is returned when a login name or a remote network had too
// many failed logins recently; it maps to RESOURCE_EXHAUSTED
// (REASON_THROTTLED).
var ErrThrottled = errors.New("auth: too many failed logins")

// Limits say when failures of one key (a login name or a network) start to
// slow down and then block further attempts.
type Limits struct {
	// DelayAfter failures in the window, each further attempt is delayed:
	// BaseDelay for the first, doubling up to MaxDelay.
	DelayAfter int
	// LockAfter failures in the window, attempts are refused until the
	// oldest of them leaves the window.
	LockAfter int
}

// ThrottleOptions configure a Throttler. Zero fields take the defaults
// noted.
type ThrottleOptions struct {
	// Window is how long a failure counts (15m).
	Window time.Duration
	// User limits failures per login name (delay after 3, refuse after 10).
	User Limits
	// IP limits failures per remote network, which many users behind one
	// NAT share, hence higher (delay after 10, refuse after 50).
	IP        Limits
	BaseDelay time.Duration // 1s
	MaxDelay  time.Duration // 30s
	// MaxKeys caps the number of login names and networks tracked (100000);
	// beyond it the least recently failed key is forgotten, so that an
	// attacker inventing names cannot exhaust memory.
	MaxKeys int
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

func (o *ThrottleOptions) setDefaults() {
	if o.Window == 0 {
		o.Window = 15 * time.Minute
	}
	if o.User == (Limits{}) {
		o.User = Limits{DelayAfter: 3, LockAfter: 10}
	}
	if o.IP == (Limits{}) {
		o.IP = Limits{DelayAfter: 10, LockAfter: 50}
	}
	if o.BaseDelay == 0 {
		o.BaseDelay = time.Second
	}
	if o.MaxDelay == 0 {
		o.MaxDelay = 30 * time.Second
	}
	if o.MaxKeys == 0 {
		o.MaxKeys = 100000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Validate reports every problem at once. Defaults are applied first.
func (o ThrottleOptions) Validate() error {
	o.setDefaults()
	var errs []error
	if o.Window < 0 {
		errs = append(errs, errors.New("throttle window must be positive"))
	}
	for _, l := range []struct {
		name string
		Limits
	}{{"user", o.User}, {"ip", o.IP}} {
		if l.DelayAfter < 1 || l.LockAfter < l.DelayAfter {
			errs = append(errs, fmt.Errorf("throttle %s limits: want 1 <= delay-after (%d) <= lock-after (%d)", l.name, l.DelayAfter, l.LockAfter))
		}
	}
	if o.BaseDelay < 0 || o.MaxDelay < o.BaseDelay {
		errs = append(errs, fmt.Errorf("throttle delays: want 0 <= base (%s) <= max (%s)", o.BaseDelay, o.MaxDelay))
	}
	if o.MaxKeys < 1 {
		errs = append(errs, errors.New("throttle max keys must be positive"))
	}
	return errors.Join(errs...)
}

// Throttler counts failed logins per login name and per remote network in
// a sliding window. It is safe for concurrent use; one mutex guards
// everything because each operation is a few map and list updates.
type Throttler struct {
	opts    ThrottleOptions
	metrics *Metrics

	mu sync.Mutex
	// keys maps "u:<name>" and "ip:<prefix>" to their element in lru,
	// whose front is the most recently failed key.
	keys map[string]*list.Element
	lru  *list.List
}

// throttleEntry keeps the times of the most recent failures of one key,
// oldest first. At most LockAfter are kept: that is all a sliding window
// decision needs, and it bounds memory per key.
type throttleEntry struct {
	key      string
	failures []time.Time
}

// NewThrottler returns a Throttler. metrics may be nil.
func NewThrottler(opts ThrottleOptions, metrics *Metrics) (*Throttler, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	opts.setDefaults()
	return &Throttler{opts: opts, metrics: metrics, keys: make(map[string]*list.Element), lru: list.New()}, nil
}

func userKey(username string) string {
	return "u:" + strings.ToLower(strings.TrimSpace(username))
}

// ipKey returns the key of the network a client is in: its IPv4 address, or
// the /64 of its IPv6 address, since one IPv6 host usually has a whole /64
// to choose addresses from. "" for an address that does not parse: such a
// client is throttled only by login name.
func ipKey(remoteIP string) string {
	addr, err := netip.ParseAddr(remoteIP)
	if err != nil {
		return ""
	}
	addr = addr.Unmap().WithZone("")
	if addr.Is4() {
		return "ip:" + addr.String()
	}
	return "ip:" + netip.PrefixFrom(addr, 64).Masked().String()
}

// Check says whether an attempt for username from remoteIP may proceed. It
// returns ErrThrottled when either key is locked, or else the delay the
// caller should wait before answering (0 when below the limits).
func (t *Throttler) Check(username, remoteIP string) (time.Duration, error) {
	now := t.opts.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pruneExpired(now)
	var delay time.Duration
	for _, k := range []struct {
		key, scope string
		limits     Limits
	}{{userKey(username), "user", t.opts.User}, {ipKey(remoteIP), "ip", t.opts.IP}} {
		if k.key == "" {
			continue
		}
		n := t.recentFailures(k.key, now)
		if n >= k.limits.LockAfter {
			t.metrics.throttled(k.scope)
			return 0, ErrThrottled
		}
		if d := t.delayFor(n, k.limits); d > delay {
			delay = d
		}
	}
	return delay, nil
}

func (t *Throttler) delayFor(failures int, l Limits) time.Duration {
	if failures < l.DelayAfter {
		return 0
	}
	d := t.opts.BaseDelay
	for i := l.DelayAfter; i < failures && d < t.opts.MaxDelay; i++ {
		d *= 2
	}
	return min(d, t.opts.MaxDelay)
}

// recentFailures counts the failures of key inside the window, dropping
// the ones that left it. t.mu is held.
func (t *Throttler) recentFailures(key string, now time.Time) int {
	el, ok := t.keys[key]
	if !ok {
		return 0
	}
	e := el.Value.(*throttleEntry)
	cutoff := now.Add(-t.opts.Window)
	i := 0
	for i < len(e.failures) && !e.failures[i].After(cutoff) {
		i++
	}
	e.failures = e.failures[i:]
	if len(e.failures) == 0 {
		t.lru.Remove(el)
		delete(t.keys, key)
	}
	return len(e.failures)
}

// pruneExpired forgets keys whose last failure left the window. The back
// of lru is the least recently failed key, so this stops at the first key
// still in the window and costs O(1) amortized. t.mu is held.
func (t *Throttler) pruneExpired(now time.Time) {
	cutoff := now.Add(-t.opts.Window)
	for el := t.lru.Back(); el != nil; el = t.lru.Back() {
		e := el.Value.(*throttleEntry)
		if e.failures[len(e.failures)-1].After(cutoff) {
			return
		}
		t.lru.Remove(el)
		delete(t.keys, e.key)
	}
}

// Failure records a failed login for username from remoteIP.
func (t *Throttler) Failure(username, remoteIP string) {
	now := t.opts.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pruneExpired(now)
	t.record(userKey(username), t.opts.User.LockAfter, now)
	if k := ipKey(remoteIP); k != "" {
		t.record(k, t.opts.IP.LockAfter, now)
	}
}

func (t *Throttler) record(key string, keep int, now time.Time) {
	el, ok := t.keys[key]
	if !ok {
		for t.lru.Len() >= t.opts.MaxKeys {
			oldest := t.lru.Back()
			t.lru.Remove(oldest)
			delete(t.keys, oldest.Value.(*throttleEntry).key)
		}
		el = t.lru.PushFront(&throttleEntry{key: key})
		t.keys[key] = el
	} else {
		t.lru.MoveToFront(el)
	}
	e := el.Value.(*throttleEntry)
	e.failures = append(e.failures, now)
	if len(e.failures) > keep {
		// Copy down instead of reslicing so the backing array does not grow
		// without bound under a steady stream of failures.
		e.failures = append(e.failures[:0], e.failures[len(e.failures)-keep:]...)
	}
}

// Success forgets the failures of username. The network's failures stay:
// logging in to one's own account must not let an attacker behind the same
// address go on guessing others' passwords.
func (t *Throttler) Success(username string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	key := userKey(username)
	if el, ok := t.keys[key]; ok {
		t.lru.Remove(el)
		delete(t.keys, key)
	}
}

// trackedKeys is the number of keys held, for tests of the memory bound.
func (t *Throttler) trackedKeys() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.keys)
}
