package deaddest

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/petrel-mail/petrel/platform/natsx"
	"github.com/petrel-mail/petrel/platform/natsx/embedded"
)

// TestSurvivesNATSRestart: after the NATS server restarts, suspensions
// are shared again without restarting the replicas: the bucket is still
// there and each replica's watch follows it again.
func TestSurvivesNATSRestart(t *testing.T) {
	dir := t.TempDir()
	srv, err := embedded.Start(embedded.Config{StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown() })
	_, p, _ := net.SplitHostPort(strings.TrimPrefix(srv.ClientURL(), "nats://"))
	port, _ := strconv.Atoi(p)
	url := srv.ClientURL()
	o := natsx.Options{Prefix: "restart"}
	openOn := func() *Shared {
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
		return s
	}
	a, b := openOn(), openOn()
	if err := a.Suspend(context.Background(), "before.example", "x", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b to see the first suspension", func() bool { _, _, ok := b.Suspended("before.example"); return ok })

	srv.Shutdown()
	srv2, err := embedded.Start(embedded.Config{StoreDir: dir, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv2.Shutdown)

	// The replicas reconnect by themselves; a's first write after that
	// succeeds, and b's watch, which nats.go resets once it misses the
	// server's heartbeats (about half a minute here), delivers it.
	eventually(t, "a to write again after the restart", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return a.Suspend(ctx, "after.example", "y", time.Now().Add(time.Hour)) == nil
	})
	eventually(t, "b to see a suspension made after the restart", func() bool {
		_, _, ok := b.Suspended("after.example")
		return ok
	})
	if _, _, ok := b.Suspended("before.example"); !ok {
		t.Error("the suspension made before the restart is gone")
	}
}
