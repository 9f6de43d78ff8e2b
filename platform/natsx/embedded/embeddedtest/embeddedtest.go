// Package embeddedtest runs an embedded NATS server for tests that
// restart it under running clients (recovery tests); the shared test
// server (testenv.NATSURL) cannot be restarted by one test.
package embeddedtest

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/petrel-mail/petrel/platform/natsx/embedded"
	"github.com/petrel-mail/petrel/platform/testenv"
)

// Server is an embedded NATS server with JetStream on disk in a temporary
// directory, on a port it comes back to when restarted.
type Server struct {
	t   testing.TB
	srv *embedded.Server
}

// Start starts the server; it is shut down when the test ends (the
// restarted one, if it was restarted).
func Start(t testing.TB) *Server {
	t.Helper()
	srv, err := embedded.Start(embedded.Config{StoreDir: t.TempDir(), Port: testenv.FreePort(t)})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, srv: srv}
	t.Cleanup(func() { s.srv.Shutdown() })
	return s
}

// ClientURL is the server's URL; it stays the same across restarts.
func (s *Server) ClientURL() string { return s.srv.ClientURL() }

// Restart shuts the server down and starts it again on the same store and
// port (embedded.Server.Restart).
func (s *Server) Restart() {
	s.t.Helper()
	srv, err := s.srv.Restart()
	if err != nil {
		s.t.Fatal(err)
	}
	s.srv = srv
}

// OnReconnect makes nc report its reconnections; the function it returns
// waits for the next one (30 seconds at most).
func OnReconnect(t testing.TB, nc *nats.Conn) (wait func()) {
	ch := make(chan struct{}, 1)
	nc.SetReconnectHandler(func(*nats.Conn) {
		select {
		case ch <- struct{}{}:
		default:
		}
	})
	return func() {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(30 * time.Second):
			t.Fatal("no reconnection to the restarted server")
		}
	}
}
