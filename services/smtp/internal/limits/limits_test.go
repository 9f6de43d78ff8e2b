package limits

import (
	"net/netip"
	"sync"
	"testing"
	"time"
)

func TestNetworkKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":            "192.0.2.0/24",
		"192.0.2.250":          "192.0.2.0/24",
		"::ffff:192.0.2.9":     "192.0.2.0/24",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1": "2001:db8:1:2::/64",
		"2001:db8:1:3:ffff::1": "2001:db8:1:3::/64",
	} {
		if got := NetworkKey(netip.MustParseAddr(in)); got != want {
			t.Errorf("NetworkKey(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestConnLimiterPerNetwork(t *testing.T) {
	l := NewConnLimiter(2)
	a, b, c := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("198.51.101.1")
	r1, ok1 := l.Acquire(a)
	r2, ok2 := l.Acquire(b)
	if !ok1 || !ok2 {
		t.Fatal("first two connections of a /24 refused")
	}
	if _, ok := l.Acquire(a); ok {
		t.Fatal("third connection of the same /24 allowed")
	}
	if _, ok := l.Acquire(c); !ok {
		t.Fatal("another /24 refused")
	}
	r1()
	r1() // idempotent
	if got := l.Active(b); got != 1 {
		t.Fatalf("active = %d after one release, want 1", got)
	}
	if _, ok := l.Acquire(a); !ok {
		t.Fatal("slot not returned by release")
	}
	r2()
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func TestRateLimiterRefills(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	l := NewRateLimiter(60, time.Minute, 3, clk.Now) // one per second, burst 3
	for i := range 3 {
		if !l.Allow("u") {
			t.Fatalf("event %d of the burst refused", i)
		}
	}
	if l.Allow("u") {
		t.Fatal("event beyond the burst allowed")
	}
	if !l.Allow("other") {
		t.Fatal("another key shares the bucket")
	}
	clk.Add(time.Second)
	if !l.Allow("u") {
		t.Fatal("token not refilled after one second")
	}
	if l.Allow("u") {
		t.Fatal("more than one token refilled")
	}
}

func TestAuthFailuresSlowThenBlock(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	a := NewAuthFailures(3, time.Minute, 100*time.Millisecond, 250*time.Millisecond, clk.Now)
	ip := netip.MustParseAddr("203.0.113.5")
	neighbour := netip.MustParseAddr("203.0.113.77")
	if d := a.Fail(ip); d != 100*time.Millisecond {
		t.Fatalf("first delay %s", d)
	}
	if d := a.Fail(neighbour); d != 200*time.Millisecond {
		t.Fatalf("second delay (same /24) %s", d)
	}
	if a.Blocked(ip) {
		t.Fatal("blocked after two failures")
	}
	if d := a.Fail(ip); d != 250*time.Millisecond {
		t.Fatalf("third delay %s, want the cap", d)
	}
	if !a.Blocked(neighbour) {
		t.Fatal("not blocked after three failures in the /24")
	}
	if a.Blocked(netip.MustParseAddr("203.0.114.5")) {
		t.Fatal("another network blocked")
	}
	clk.Add(time.Minute)
	if a.Blocked(ip) {
		t.Fatal("still blocked after the window")
	}
}
