// Package limits holds the per-client counters SMTP ingress uses against
// abuse: concurrent connections per network, a token bucket per key (messages
// per authenticated account) and AUTH failures per network (slowed, then
// refused). Addresses are keyed by network, a /24 for IPv4 and a /64 for
// IPv6, because one client usually holds a whole prefix (SMTP-LESSONS 20);
// over-limit clients get a 4xx, never a 5xx (RFC 5321 §4.2.1: the condition
// is temporary).
//
// All types are safe for concurrent use; each holds one mutex, taken for
// map updates only (leaf lock). The clock is injected so tests control it.
package limits

import (
	"net/netip"
	"sync"
	"time"
)

// NetworkKey is the key of the network ip belongs to: its /24 (IPv4, or
// IPv4-mapped IPv6) or /64 (IPv6).
func NetworkKey(ip netip.Addr) string {
	ip = ip.Unmap()
	bits := 64
	if ip.Is4() {
		bits = 24
	}
	if !ip.IsValid() {
		return "invalid"
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return ip.String()
	}
	return p.String()
}

// Clock returns the current time.
type Clock func() time.Time

// ConnLimiter bounds concurrent connections per network.
type ConnLimiter struct {
	max    int
	mu     sync.Mutex
	active map[string]int
}

// NewConnLimiter allows max connections per network; 0 or less means no
// limit.
func NewConnLimiter(max int) *ConnLimiter {
	return &ConnLimiter{max: max, active: make(map[string]int)}
}

// Acquire takes a slot for ip. It returns false when the network is at its
// limit; otherwise release must be called exactly once when the connection
// ends (further calls do nothing).
func (l *ConnLimiter) Acquire(ip netip.Addr) (release func(), ok bool) {
	if l.max <= 0 {
		return func() {}, true
	}
	key := NetworkKey(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.active[key] >= l.max {
		return nil, false
	}
	l.active[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.active[key]--; l.active[key] <= 0 {
				delete(l.active, key)
			}
		})
	}, true
}

// Active returns the connections held by ip's network.
func (l *ConnLimiter) Active(ip netip.Addr) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.active[NetworkKey(ip)]
}

// RateLimiter is a token bucket per key: each key may spend Burst tokens at
// once, refilled at Rate per Per.
type RateLimiter struct {
	burst    float64
	perToken time.Duration
	now      Clock

	mu      sync.Mutex
	buckets map[string]*bucket
	sweeps  int
}

type bucket struct {
	tokens float64
	at     time.Time
}

// NewRateLimiter allows burst events at once and rate events per per
// afterwards. A rate or burst of 0 or less disables the limiter.
func NewRateLimiter(rate int, per time.Duration, burst int, now Clock) *RateLimiter {
	if now == nil {
		now = time.Now
	}
	l := &RateLimiter{burst: float64(burst), now: now, buckets: make(map[string]*bucket)}
	if rate > 0 && per > 0 {
		l.perToken = per / time.Duration(rate)
	}
	return l
}

// Allow spends one token of key and reports whether there was one.
func (l *RateLimiter) Allow(key string) bool {
	if l.perToken <= 0 || l.burst <= 0 {
		return true
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweepLocked(now)
	b, ok := l.buckets[key]
	if !ok {
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[key] = b
	}
	b.refill(now, l.perToken, l.burst)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (b *bucket) refill(now time.Time, perToken time.Duration, burst float64) {
	if el := now.Sub(b.at); el > 0 {
		b.tokens = min(burst, b.tokens+float64(el)/float64(perToken))
		b.at = now
	}
}

// sweepLocked drops full buckets now and then, so memory follows the
// number of recently active keys, not every key ever seen.
func (l *RateLimiter) sweepLocked(now time.Time) {
	l.sweeps++
	if l.sweeps < 1024 {
		return
	}
	l.sweeps = 0
	for k, b := range l.buckets {
		b.refill(now, l.perToken, l.burst)
		if b.tokens >= l.burst {
			delete(l.buckets, k)
		}
	}
}

// AuthFailures counts failed AUTH attempts per network within a window.
// Each failure makes the next answer slower (Delay); at Max failures the
// network is refused (Blocked) until the window passes.
type AuthFailures struct {
	max    int
	window time.Duration
	step   time.Duration
	cap    time.Duration
	now    Clock

	mu    sync.Mutex
	seen  map[string]*failures
	calls int
}

type failures struct {
	n     int
	first time.Time
}

// NewAuthFailures refuses a network after max failures within window; each
// failure before that delays the answer by step more, up to maxDelay.
func NewAuthFailures(max int, window, step, maxDelay time.Duration, now Clock) *AuthFailures {
	if now == nil {
		now = time.Now
	}
	return &AuthFailures{max: max, window: window, step: step, cap: maxDelay, now: now, seen: make(map[string]*failures)}
}

func (a *AuthFailures) getLocked(key string, now time.Time) *failures {
	a.calls++
	if a.calls >= 1024 {
		a.calls = 0
		for k, f := range a.seen {
			if now.Sub(f.first) >= a.window {
				delete(a.seen, k)
			}
		}
	}
	f, ok := a.seen[key]
	if ok && now.Sub(f.first) >= a.window {
		delete(a.seen, key)
		ok = false
	}
	if !ok {
		return nil
	}
	return f
}

// Fail records a failure from ip and returns how long to wait before
// answering it.
func (a *AuthFailures) Fail(ip netip.Addr) time.Duration {
	key := NetworkKey(ip)
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	f := a.getLocked(key, now)
	if f == nil {
		f = &failures{first: now}
		a.seen[key] = f
	}
	f.n++
	return min(a.cap, time.Duration(f.n)*a.step)
}

// Blocked reports whether ip's network has used up its failures.
func (a *AuthFailures) Blocked(ip netip.Addr) bool {
	if a.max <= 0 {
		return false
	}
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	f := a.getLocked(NetworkKey(ip), now)
	return f != nil && f.n >= a.max
}
