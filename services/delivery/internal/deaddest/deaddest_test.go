package deaddest

import (
	"context"
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

func options(t *testing.T) natsx.Options {
	o := natsx.Options{Prefix: fmt.Sprintf("%s_dd%d", testenv.Prefix(), seq.Add(1))}
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

// replica is one delivery replica's view on its own NATS connection.
type replica struct {
	nc *nats.Conn
	*Shared
}

// open is a replica on its own connection to url (reconnecting forever,
// quickly).
func open(t *testing.T, url string, o natsx.Options) *replica {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), js, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return &replica{nc: nc, Shared: s}
}

// eventually waits until cond holds, looking again at each change r
// applies (a minute at most: after a NATS restart the watch takes half of
// that to resume).
func eventually(t *testing.T, r *replica, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(time.Minute)
	defer deadline.Stop()
	for {
		next := r.changed()
		if cond() {
			return
		}
		select {
		case <-next:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestSuspensionSharedAcrossReplicas(t *testing.T) {
	o := options(t)
	a, b := open(t, testenv.NATSURL(t), o), open(t, testenv.NATSURL(t), o)
	until := time.Now().Add(time.Hour).Round(time.Millisecond)
	if err := a.Suspend(context.Background(), "Example.ORG", "mx.example.org[192.0.2.1:25]: connect: connection refused", until); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := a.Suspended("example.org"); !ok {
		t.Fatal("not suspended in the replica that suspended it")
	}
	eventually(t, b, "the other replica to see the suspension", func() bool {
		_, _, ok := b.Suspended("example.org")
		return ok
	})
	reason, got, _ := b.Suspended("EXAMPLE.org")
	if reason != "mx.example.org[192.0.2.1:25]: connect: connection refused" || !got.Equal(until) {
		t.Errorf("other replica: %q until %s, want the suspender's (until %s)", reason, got, until)
	}
	if _, _, ok := b.Suspended("example.net"); ok {
		t.Error("another destination is suspended")
	}
	// A replica that starts later loads it before Open returns.
	c := open(t, testenv.NATSURL(t), o)
	if _, _, ok := c.Suspended("example.org"); !ok {
		t.Error("a new replica does not see the suspension")
	}
	if n := c.Count(); n != 1 {
		t.Errorf("Count %d, want 1", n)
	}

	// A successful session anywhere ends it everywhere.
	if err := b.Resume(context.Background(), "example.org"); err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]*replica{"a": a, "c": c} {
		eventually(t, r, "replica "+name+" to see the end", func() bool {
			_, _, ok := r.Suspended("example.org")
			return !ok
		})
	}
	// Resuming what is not suspended writes nothing and is no error.
	if err := a.Resume(context.Background(), "example.org"); err != nil {
		t.Error(err)
	}
}

// Suspensions carry their own end: one whose time has passed is not in
// force, in the replica that wrote it or in one that starts later.
func TestSuspensionEndsByItself(t *testing.T) {
	o := options(t)
	a := open(t, testenv.NATSURL(t), o)
	if err := a.Suspend(context.Background(), "example.org", "old", time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := a.Suspended("example.org"); ok {
		t.Error("an ended suspension is in force")
	}
	if n := a.Count(); n != 0 {
		t.Errorf("Count %d with only an ended suspension, want 0", n)
	}
	if _, _, ok := open(t, testenv.NATSURL(t), o).Suspended("example.org"); ok {
		t.Error("an ended suspension is in force in a new replica")
	}
}

// Without NATS a suspension still holds in the replica, and the error
// says it was not shared.
func TestSuspensionWithoutNATS(t *testing.T) {
	a := open(t, testenv.NATSURL(t), options(t))
	a.nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := a.Suspend(ctx, "example.org", "down", time.Now().Add(time.Hour)); err == nil {
		t.Error("Suspend without NATS returned no error")
	}
	if _, _, ok := a.Suspended("example.org"); !ok {
		t.Error("the suspension does not hold locally without NATS")
	}
}
