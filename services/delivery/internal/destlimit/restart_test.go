package destlimit

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/petrel-mail/petrel/platform/natsx"
	"github.com/petrel-mail/petrel/platform/natsx/embedded"
	"github.com/petrel-mail/petrel/platform/testenv"
)

// TestSharedLimitSurvivesNATSRestart: after the NATS server restarts, the
// limiter takes slots from the same bucket again, without being opened
// again (before the bucket was on disk, it vanished with the server and
// every replica fell back to its local limit until it was restarted).
func TestSharedLimitSurvivesNATSRestart(t *testing.T) {
	srv, err := embedded.Start(embedded.Config{StoreDir: t.TempDir(), Port: testenv.FreePort(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown() })
	reconnected := make(chan struct{}, 1)
	nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.ReconnectHandler(func(*nats.Conn) { reconnected <- struct{}{} }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), js, natsx.Options{Prefix: "restart"}, Config{Max: 1, TTL: time.Minute, Holder: "r"})
	if err != nil {
		t.Fatal(err)
	}
	rel := must(t, context.Background(), s, "example.org")
	rel()

	if srv, err = srv.Restart(); err != nil {
		t.Fatal(err)
	}

	select {
	case <-reconnected:
	case <-time.After(30 * time.Second):
		t.Fatal("no reconnection to the restarted server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	rel, err = s.Acquire(ctx, "example.org")
	cancel()
	if err != nil {
		t.Fatalf("no slot after the restart: %v", err)
	}
	rel()
	// The limit still holds: with the slot taken, a second Acquire waits.
	rel = must(t, context.Background(), s, "example.org")
	defer rel()
	ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := s.Acquire(ctx, "example.org"); err == nil {
		t.Error("a second slot of a limit of 1 after the restart")
	}
}
