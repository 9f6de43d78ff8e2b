package auth

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func newTestThrottler(t *testing.T, clock *fakeClock, m *Metrics, mod func(*ThrottleOptions)) *Throttler {
	t.Helper()
	opts := ThrottleOptions{
		Window:    10 * time.Minute,
		User:      Limits{DelayAfter: 3, LockAfter: 6},
		IP:        Limits{DelayAfter: 5, LockAfter: 8},
		BaseDelay: time.Second,
		MaxDelay:  4 * time.Second,
		Now:       clock.Now,
	}
	if mod != nil {
		mod(&opts)
	}
	th, err := NewThrottler(opts, m)
	if err != nil {
		t.Fatal(err)
	}
	return th
}

func mustCheck(t *testing.T, th *Throttler, user, ip string) time.Duration {
	t.Helper()
	d, err := th.Check(user, ip)
	if err != nil {
		t.Fatalf("Check(%s, %s): %v", user, ip, err)
	}
	return d
}

func TestThrottleUserProgression(t *testing.T) {
	clock := newFakeClock()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	th := newTestThrottler(t, clock, m, nil)

	// Each failure from a different IP so only the user key counts.
	want := []time.Duration{0, 0, 0, time.Second, 2 * time.Second, 4 * time.Second}
	for i, w := range want {
		if d := mustCheck(t, th, "alice@example.test", fmt.Sprintf("192.0.2.%d", i)); d != w {
			t.Fatalf("after %d failures: delay %v, want %v", i, d, w)
		}
		th.Failure("alice@example.test", fmt.Sprintf("192.0.2.%d", i))
		clock.Advance(time.Minute)
	}
	// Six failures in the window: locked, whatever the IP or case.
	if _, err := th.Check("ALICE@example.test ", "198.51.100.1"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("after 6 failures: err = %v, want ErrThrottled", err)
	}
	if got := testutil.ToFloat64(m.throttledTotal.WithLabelValues("user")); got != 1 {
		t.Fatalf("throttled{scope=user} = %v, want 1", got)
	}
	// Another user is not affected.
	if d := mustCheck(t, th, "bob@example.test", "198.51.100.1"); d != 0 {
		t.Fatalf("other user delayed %v", d)
	}

	// The first failure was at minute 0, now is minute 6: at minute 10 it
	// leaves the window and the key is below the lock again.
	clock.Advance(4*time.Minute - time.Second)
	if _, err := th.Check("alice@example.test", "198.51.100.1"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("lock lifted before the window passed: %v", err)
	}
	clock.Advance(time.Second)
	if d := mustCheck(t, th, "alice@example.test", "198.51.100.1"); d != 4*time.Second {
		t.Fatalf("five failures in window: delay %v, want the capped 4s", d)
	}
	clock.Advance(10 * time.Minute)
	if d := mustCheck(t, th, "alice@example.test", "198.51.100.1"); d != 0 {
		t.Fatalf("after the window: delay %v, want 0", d)
	}
	if n := th.trackedKeys(); n != 0 {
		t.Fatalf("%d keys still tracked after every failure expired", n)
	}
}

func TestThrottleSuccessResetsUserOnly(t *testing.T) {
	clock := newFakeClock()
	th := newTestThrottler(t, clock, nil, nil)
	for range 5 {
		th.Failure("alice@example.test", "192.0.2.1")
	}
	if d := mustCheck(t, th, "alice@example.test", "192.0.2.99"); d != 4*time.Second {
		t.Fatalf("delay %v before success", d)
	}
	th.Success("alice@example.test")
	if d := mustCheck(t, th, "alice@example.test", "192.0.2.99"); d != 0 {
		t.Fatalf("user still delayed %v after a success", d)
	}
	// The IP's five failures remain: delay starts at the fifth.
	if d := mustCheck(t, th, "carol@example.test", "192.0.2.1"); d != time.Second {
		t.Fatalf("IP delay %v after a user's success, want 1s", d)
	}
}

func TestThrottleIPNetworks(t *testing.T) {
	clock := newFakeClock()
	th := newTestThrottler(t, clock, nil, nil)
	// Eight failures spread over many names and over addresses of one
	// IPv6 /64 lock the whole /64.
	for i := range 8 {
		th.Failure(fmt.Sprintf("user%d@example.test", i), fmt.Sprintf("2001:db8:1:2::%x", i+1))
	}
	if _, err := th.Check("new@example.test", "2001:db8:1:2:ffff::1"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("same /64: err = %v, want ErrThrottled", err)
	}
	if d := mustCheck(t, th, "new@example.test", "2001:db8:1:3::1"); d != 0 {
		t.Fatalf("neighbouring /64 delayed %v", d)
	}

	// IPv4 is keyed per address, and an IPv4-mapped IPv6 address is the
	// same IPv4 address.
	for i := range 8 {
		th.Failure(fmt.Sprintf("v4user%d@example.test", i), "203.0.113.7")
	}
	if _, err := th.Check("new@example.test", "::ffff:203.0.113.7"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("mapped IPv4: err = %v, want ErrThrottled", err)
	}
	if d := mustCheck(t, th, "new@example.test", "203.0.113.8"); d != 0 {
		t.Fatalf("neighbouring IPv4 delayed %v", d)
	}
	// A missing address is throttled by name only.
	if d := mustCheck(t, th, "new@example.test", ""); d != 0 {
		t.Fatalf("empty IP delayed %v", d)
	}
}

func TestThrottleBoundedMemory(t *testing.T) {
	clock := newFakeClock()
	th := newTestThrottler(t, clock, nil, func(o *ThrottleOptions) { o.MaxKeys = 10 })
	// The victim fails first, then an attacker invents names.
	for range 5 {
		th.Failure("victim@example.test", "")
	}
	for i := range 100 {
		th.Failure(fmt.Sprintf("made-up-%d@example.test", i), "")
		if n := th.trackedKeys(); n > 10 {
			t.Fatalf("%d keys tracked, cap is 10", n)
		}
	}
	// The least recently failed key (the victim) was evicted.
	if d := mustCheck(t, th, "victim@example.test", ""); d != 0 {
		t.Fatalf("evicted key still delayed %v", d)
	}
	if d := mustCheck(t, th, "made-up-99@example.test", ""); d != 0 {
		t.Fatalf("one failure delayed %v", d)
	}
}

func TestThrottleFailuresPerKeyBounded(t *testing.T) {
	clock := newFakeClock()
	th := newTestThrottler(t, clock, nil, nil)
	for range 1000 {
		th.Failure("alice@example.test", "")
	}
	th.mu.Lock()
	n := len(th.keys[userKey("alice@example.test")].Value.(*throttleEntry).failures)
	th.mu.Unlock()
	if n != 6 {
		t.Fatalf("%d failure times kept, want LockAfter = 6", n)
	}
}

func TestThrottleOptionsValidate(t *testing.T) {
	err := ThrottleOptions{
		Window:    -1,
		User:      Limits{DelayAfter: 5, LockAfter: 2},
		BaseDelay: 10 * time.Second, MaxDelay: time.Second,
		MaxKeys: -1,
	}.Validate()
	if err == nil {
		t.Fatal("invalid options accepted")
	}
	for _, want := range []string{"window", "user limits", "delays", "max keys"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not report %s", err, want)
		}
	}
	if err := (ThrottleOptions{}).Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
}
