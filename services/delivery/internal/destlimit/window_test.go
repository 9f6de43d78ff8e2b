package destlimit

import (
	"context"
	"strconv"
	"testing"
	"time"
)

func feedback(t *testing.T, ctx context.Context, s *Shared, dest string, answered bool) (dead bool) {
	t.Helper()
	dead, err := s.Feedback(ctx, dest, answered)
	if err != nil {
		t.Fatalf("feedback %s %v: %v", dest, answered, err)
	}
	return dead
}

func wantWindow(t *testing.T, ctx context.Context, s *Shared, dest string, want int) {
	t.Helper()
	got, err := s.Window(ctx, dest)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("window of %s: %d, want %d", dest, got, want)
	}
}

// twoReplicas opens two replicas' limiters of max sessions starting at
// initial, with a TTL long enough that every wake-up must be an event.
func twoReplicas(t *testing.T, max, initial int) (a, b *replica, ctx context.Context) {
	t.Helper()
	o := options(t)
	a = openConfig(t, o, Config{Max: max, Initial: initial, TTL: 10 * time.Minute, Holder: "a"})
	b = openConfig(t, o, Config{Max: max, Initial: initial, TTL: 10 * time.Minute, Holder: "b"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return a, b, ctx
}

// Slow start: a destination starts with Initial sessions across replicas;
// after as many answered deliveries as its window, the window grows by
// one, up to Max, and a session waiting for a slot gets the new one.
func TestSlowStartGrowsOnSuccess(t *testing.T) {
	a, b, ctx := twoReplicas(t, 4, 2)

	wantWindow(t, ctx, a.Shared, "example.org", 2)
	rels := []func(){must(t, ctx, a.Shared, "example.org"), must(t, ctx, b.Shared, "example.org")}
	if !busy(t, b.Shared, "example.org") {
		t.Fatal("a third session was allowed with a window of 2")
	}
	waiting := acquireAsync(ctx, t, b.Shared, "example.org")
	// One answered delivery is not yet a window's worth.
	if feedback(t, ctx, a.Shared, "example.org", true) {
		t.Fatal("dead after an answered delivery")
	}
	wantWindow(t, ctx, b.Shared, "example.org", 2)
	feedback(t, ctx, a.Shared, "example.org", true)
	wantWindow(t, ctx, b.Shared, "example.org", 3)
	// The window's update (an event, no slot freed) wakes the waiter.
	rel, ok := <-waiting
	if !ok {
		t.Fatal("waiting acquire failed")
	}
	rels = append(rels, rel)
	if !busy(t, a.Shared, "example.org") {
		t.Fatal("a fourth session was allowed with a window of 3")
	}
	for range 3 {
		feedback(t, ctx, b.Shared, "example.org", true)
	}
	wantWindow(t, ctx, a.Shared, "example.org", 4)
	for range 8 {
		feedback(t, ctx, a.Shared, "example.org", true)
	}
	wantWindow(t, ctx, a.Shared, "example.org", 4) // Max
	rels = append(rels, must(t, ctx, a.Shared, "example.org"))
	if !busy(t, b.Shared, "example.org") {
		t.Fatal("a fifth session was allowed with a limit of 4")
	}
	// Other destinations start at their own beginning.
	wantWindow(t, ctx, a.Shared, "example.net", 2)
	for _, rel := range rels {
		rel()
	}
}

// A delivery that no host answered shrinks the window by one; the
// destination is dead (to be suspended) only when it fails at a window of
// one, as a destination that accepts a few sessions and refuses the rest
// must not be suspended. An answered delivery ends the run of failures.
func TestFailuresShrinkWindowThenDead(t *testing.T) {
	a, b, ctx := twoReplicas(t, 10, 3)

	if feedback(t, ctx, a.Shared, "example.org", false) || feedback(t, ctx, b.Shared, "example.org", false) {
		t.Fatal("dead while its window still had more than one session")
	}
	wantWindow(t, ctx, a.Shared, "example.org", 1)
	// The failing session holds a slot; another session, one that took
	// its slot while the window was wider, still runs: a host answered it.
	mine, other := must(t, ctx, b.Shared, "example.org"), holdSlot(t, ctx, a.Shared, "example.org", 2)
	if feedback(t, ctx, b.Shared, "example.org", false) {
		t.Fatal("dead while another session to it runs")
	}
	other()
	if !feedback(t, ctx, b.Shared, "example.org", false) {
		t.Fatal("not dead after a failure at a window of one with no other session")
	}
	mine()
	wantWindow(t, ctx, a.Shared, "example.org", 1)
	// An answered delivery at a window of one is a window's worth.
	if feedback(t, ctx, a.Shared, "example.org", true) {
		t.Fatal("dead after an answered delivery")
	}
	wantWindow(t, ctx, b.Shared, "example.org", 2)
	if feedback(t, ctx, b.Shared, "example.org", false) {
		t.Fatal("dead at a window of two")
	}
}

// With no feedback for the bucket's TTL, a destination's window is
// forgotten and its next delivery starts at Initial again.
func TestWindowExpires(t *testing.T) {
	o := options(t)
	a := openConfig(t, o, Config{Max: 10, Initial: 4, TTL: time.Second, Holder: "a"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	feedback(t, ctx, a.Shared, "example.org", false)
	wantWindow(t, ctx, a.Shared, "example.org", 3)
	for {
		n, err := a.Window(ctx, "example.org")
		if err != nil {
			t.Fatal(err)
		}
		if n == 4 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("window still %d after the TTL", n)
		case <-time.After(100 * time.Millisecond): // polling with a deadline: expiry has no event
		}
	}
}

// Without Initial a destination starts at Max.
func TestNoSlowStart(t *testing.T) {
	o := options(t)
	a := openConfig(t, o, Config{Max: 3, TTL: 10 * time.Minute, Holder: "a"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	wantWindow(t, ctx, a.Shared, "example.org", 3)
	for range 3 {
		defer must(t, ctx, a.Shared, "example.org")()
	}
}

// holdSlot takes slot i of dest directly, as a session that began when
// the window was wider holds it.
func holdSlot(t *testing.T, ctx context.Context, s *Shared, dest string, i int) (release func()) {
	t.Helper()
	rev, err := s.kv.Create(ctx, keyPrefix(dest)+strconv.Itoa(i), s.holder)
	if err != nil {
		t.Fatal(err)
	}
	return s.hold(keyPrefix(dest)+strconv.Itoa(i), rev)
}
