package deaddest

import (
	"context"
	"testing"
	"time"

	"github.com/petrel-mail/petrel/platform/natsx"
	"github.com/petrel-mail/petrel/platform/natsx/embedded/embeddedtest"
)

// TestSurvivesNATSRestart: after the NATS server restarts, suspensions
// are shared again without restarting the replicas: the bucket is still
// there and each replica's watch follows it again.
func TestSurvivesNATSRestart(t *testing.T) {
	srv := embeddedtest.Start(t)
	o := natsx.Options{Prefix: "restart"}
	a, b := open(t, srv.ClientURL(), o), open(t, srv.ClientURL(), o)
	if err := a.Suspend(context.Background(), "before.example", "x", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	eventually(t, b, "b to see the first suspension", func() bool { _, _, ok := b.Suspended("before.example"); return ok })

	reconnected := embeddedtest.OnReconnect(t, a.nc)
	srv.Restart()

	// The replicas reconnect by themselves; a's first write after that
	// succeeds, and b's watch, which nats.go resets once it misses the
	// server's heartbeats (about half a minute here), delivers it.
	reconnected()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Suspend(ctx, "after.example", "y", time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("first write after the restart: %v", err)
	}
	eventually(t, b, "b to see a suspension made after the restart", func() bool {
		_, _, ok := b.Suspended("after.example")
		return ok
	})
	if _, _, ok := b.Suspended("before.example"); !ok {
		t.Error("the suspension made before the restart is gone")
	}
}
