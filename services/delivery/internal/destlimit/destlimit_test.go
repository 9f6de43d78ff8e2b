package destlimit

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/petrel-mail/petrel/platform/natsx"
	"github.com/petrel-mail/petrel/platform/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var seq atomic.Int64

// replica is one delivery replica's limiter on its own NATS connection.
type replica struct {
	nc *nats.Conn
	*Shared
}

func options(t testing.TB) natsx.Options {
	o := natsx.Options{Prefix: fmt.Sprintf("%s_dl%d", testenv.Prefix(), seq.Add(1))}
	t.Cleanup(func() {
		nc, err := nats.Connect(testenv.NATSURL(t))
		if err != nil {
			return
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		_ = natsx.DeleteStreams(context.Background(), js, o)
	})
	return o
}

func open(t *testing.T, o natsx.Options, max int, ttl time.Duration, name string) *replica {
	t.Helper()
	return openConfig(t, o, Config{Max: max, TTL: ttl, Holder: name})
}

func openConfig(t testing.TB, o natsx.Options, c Config) *replica {
	t.Helper()
	nc, err := nats.Connect(testenv.NATSURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), js, o, c)
	if err != nil {
		t.Fatal(err)
	}
	return &replica{nc: nc, Shared: s}
}

// acquireAsync starts an Acquire and returns a channel that gets its
// release function.
func acquireAsync(ctx context.Context, t *testing.T, s *Shared, dest string) <-chan func() {
	t.Helper()
	ch := make(chan func(), 1)
	go func() {
		rel, err := s.Acquire(ctx, dest)
		if err != nil {
			if ctx.Err() == nil {
				t.Errorf("acquire %s: %v", dest, err)
			}
			close(ch)
			return
		}
		ch <- rel
	}()
	return ch
}

func must(t *testing.T, ctx context.Context, s *Shared, dest string) func() {
	t.Helper()
	rel, err := s.Acquire(ctx, dest)
	if err != nil {
		t.Fatalf("acquire %s: %v", dest, err)
	}
	return rel
}

// busy reports whether Acquire of dest would wait: it has not returned
// within the context's short life. Only used where the answer must be
// yes; a no would be a slot taken, which the test then releases.
func busy(t *testing.T, s *Shared, dest string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	rel, err := s.Acquire(ctx, dest)
	if err == nil {
		rel()
		return false
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("acquire %s: %v", dest, err)
	}
	return true
}

func TestLimitSharedAcrossReplicas(t *testing.T) {
	o := options(t)
	// A TTL of 10 minutes: every wake-up in this test must come from an
	// event, the quarter-TTL poll would outlast the context.
	a := open(t, o, 2, 10*time.Minute, "a")
	b := open(t, o, 2, 10*time.Minute, "b")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	relA1 := must(t, ctx, a.Shared, "example.org")
	relB1 := must(t, ctx, b.Shared, "Example.ORG") // the same destination
	if !busy(t, a.Shared, "example.org") || !busy(t, b.Shared, "example.org") {
		t.Fatal("a third session to example.org was allowed with a limit of 2 across replicas")
	}
	// Other destinations are not affected.
	must(t, ctx, b.Shared, "example.net")()

	// B waits; A's release (a delete event) wakes it.
	waiting := acquireAsync(ctx, t, b.Shared, "example.org")
	relA1()
	rel, ok := <-waiting
	if !ok {
		t.Fatal("waiting acquire failed: the delete event was missed")
	}
	rel()
	relB1()
	// Released twice is released once.
	relB1()
	must(t, ctx, a.Shared, "example.org")()
}

func TestCrashedHolderExpires(t *testing.T) {
	o := options(t)
	const ttl = 2 * time.Second
	a := open(t, o, 1, ttl, "a")
	b := open(t, o, 1, ttl, "b")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	must(t, ctx, a.Shared, "example.org") // never released
	a.nc.Close()                          // the replica dies: no refresh, no delete
	if !busy(t, b.Shared, "example.org") {
		t.Fatal("slot free while its holder's lease runs")
	}
	// The slot expires after the TTL; B's quarter-TTL retry takes it.
	rel := must(t, ctx, b.Shared, "example.org")
	rel()
}

func TestLongSessionKeepsItsSlot(t *testing.T) {
	o := options(t)
	const ttl = time.Second
	a := open(t, o, 1, ttl, "a")
	b := open(t, o, 1, ttl, "b")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	rel := must(t, ctx, a.Shared, "example.org")
	// Watch the slot's key until it has been refreshed four times, past
	// twice the TTL: without refreshes it would have expired.
	w, err := a.kv.WatchAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	puts := 0
	for puts < 5 { // the create, then four refreshes
		select {
		case e := <-w.Updates():
			if e != nil && e.Operation() == jetstream.KeyValuePut {
				puts++
			}
		case <-ctx.Done():
			t.Fatal("slot not refreshed")
		}
	}
	if !busy(t, b.Shared, "example.org") {
		t.Fatal("a running session's slot was taken after its TTL")
	}
	rel()
	must(t, ctx, b.Shared, "example.org")()
}
