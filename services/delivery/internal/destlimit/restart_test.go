package destlimit

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/petrel-mail/petrel/platform/natsx"
	"github.com/petrel-mail/petrel/platform/natsx/embedded/embeddedtest"
)

// TestSharedLimitSurvivesNATSRestart: after the NATS server restarts, the
// limiter takes slots from the same bucket again, without being opened
// again (before the bucket was on disk, it vanished with the server and
// every replica fell back to its local limit until it was restarted).
func TestSharedLimitSurvivesNATSRestart(t *testing.T) {
	srv := embeddedtest.Start(t)
	nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	reconnected := embeddedtest.OnReconnect(t, nc)
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

	srv.Restart()
	reconnected()
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
