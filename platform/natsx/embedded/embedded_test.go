package embedded_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/petrel-mail/petrel/platform/natsx/embedded"
	"github.com/petrel-mail/petrel/platform/testenv"
)

// roundTrip proves the server routes messages for nc: a request answered by
// a subscriber on the same server.
func roundTrip(t *testing.T, nc *nats.Conn) {
	t.Helper()
	sub, err := nc.Subscribe("echo", func(m *nats.Msg) { _ = m.Respond(append([]byte("re:"), m.Data...)) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	reply, err := nc.Request("echo", []byte("hi"), 10*time.Second)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	if string(reply.Data) != "re:hi" {
		t.Fatalf("reply %q", reply.Data)
	}
}

func TestStartListensOnLoopback(t *testing.T) {
	srv, err := embedded.Start(embedded.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	url := srv.ClientURL()
	if !strings.HasPrefix(url, "nats://127.0.0.1:") || strings.HasSuffix(url, ":4222") {
		t.Fatalf("ClientURL %q: want loopback with a random port", url)
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	roundTrip(t, nc)
}

func TestNoListenInProcessOnly(t *testing.T) {
	dir := t.TempDir()
	srv, err := embedded.Start(embedded.Config{StoreDir: dir, NoListen: true})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	if url := srv.ClientURL(); url != "" {
		t.Fatalf("ClientURL %q with NoListen", url)
	}
	nc, err := nats.Connect("", nats.InProcessServer(srv))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	roundTrip(t, nc)

	// JetStream is enabled and stores under the given directory.
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.AddStream(&nats.StreamConfig{Name: "S", Subjects: []string{"s"}}); err != nil {
		t.Fatalf("add stream: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "jetstream")); err != nil {
		t.Fatalf("store dir not used: %v", err)
	}
}

func TestStartFailsOnUnusableStoreDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := embedded.Start(embedded.Config{StoreDir: file, ReadyTimeout: 5 * time.Second})
	if err == nil {
		srv.Shutdown()
		t.Fatal("Start succeeded with a regular file as store dir")
	}
}

func TestConfigValidate(t *testing.T) {
	err := embedded.Config{Port: 70000, NoListen: true}.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"StoreDir", "bad port", "NoListen"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if err := (embedded.Config{StoreDir: "x"}).Validate(); err != nil {
		t.Errorf("minimal config: %v", err)
	}
}

// TestRestart: the restarted server listens where the first did and has
// its streams; a client with reconnects on finds it by itself.
func TestRestart(t *testing.T) {
	srv, err := embedded.Start(embedded.Config{StoreDir: t.TempDir(), Port: testenv.FreePort(t)})
	if err != nil {
		t.Fatal(err)
	}
	url := srv.ClientURL()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "KEPT", Subjects: []string{"kept"}}); err != nil {
		t.Fatal(err)
	}
	srv2, err := srv.Restart()
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Shutdown()
	if got := srv2.ClientURL(); got != url {
		t.Fatalf("restarted on %s, want %s", got, url)
	}
	if _, err := js.Stream(ctx, "KEPT"); err != nil {
		t.Fatalf("stream after the restart: %v", err)
	}
}
