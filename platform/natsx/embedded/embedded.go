// Package embedded runs the real nats-server in-process with JetStream on
// disk, for Petrel's standalone mode and for tests. It is the same server a
// cluster runs, so behaviour (de-duplication, work-queue retention,
// redelivery) is identical; only the deployment differs.
//
// It implements no RFC. It is a separate package from natsx so that services
// which only connect to an external NATS do not link nats-server.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Config of an embedded server.
type Config struct {
	// StoreDir is the JetStream storage directory (created 0700 if missing).
	// Restarting on the same directory recovers every stream. Required.
	StoreDir string
	// Host to listen on; default 127.0.0.1 (standalone mode is not meant to
	// be reached from other machines).
	Host string
	// Port to listen on; 0 picks a free port (read it back with ClientURL).
	Port int
	// NoListen disables the TCP listener: clients connect only in-process
	// (natsx.Config.InProcess = the Server). Standalone mode uses it so that
	// no NATS port is exposed at all.
	NoListen bool
	// ServerName shows in logs and monitoring; default "petrel-embedded".
	ServerName string
	// JetStreamMaxMemory and JetStreamMaxStore limit JetStream resources in
	// bytes; 0 lets the server derive them from the machine.
	JetStreamMaxMemory int64
	JetStreamMaxStore  int64
	// ReadyTimeout bounds the wait for the server to accept connections;
	// default 10s.
	ReadyTimeout time.Duration
	// Logger receives the server's log; nil silences it.
	Logger *slog.Logger
}

// Validate reports every problem in c at once.
func (c Config) Validate() error {
	var errs []error
	if c.StoreDir == "" {
		errs = append(errs, errors.New("embedded nats: StoreDir is required"))
	}
	if c.Port < 0 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("embedded nats: bad port %d", c.Port))
	}
	if c.NoListen && c.Port != 0 {
		errs = append(errs, errors.New("embedded nats: Port set together with NoListen"))
	}
	if c.ReadyTimeout < 0 {
		errs = append(errs, errors.New("embedded nats: negative ReadyTimeout"))
	}
	return errors.Join(errs...)
}

// Server is a running embedded NATS server. It implements
// nats.InProcessConnProvider, so it can be given to natsx.Config.InProcess.
type Server struct {
	ns  *server.Server
	cfg Config // as started (Restart)
}

// Start starts a server and returns once it accepts connections and
// JetStream is enabled.
func Start(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.ServerName == "" {
		cfg.ServerName = "petrel-embedded"
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 10 * time.Second
	}
	if err := os.MkdirAll(cfg.StoreDir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded nats: store dir: %w", err)
	}
	port := cfg.Port
	if port == 0 {
		// For nats-server, 0 means its default port 4222.
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName:         cfg.ServerName,
		Host:               cfg.Host,
		Port:               port,
		DontListen:         cfg.NoListen,
		JetStream:          true,
		StoreDir:           cfg.StoreDir,
		JetStreamMaxMemory: cfg.JetStreamMaxMemory,
		JetStreamMaxStore:  cfg.JetStreamMaxStore,
		// The process that embeds us owns SIGTERM and its graceful shutdown.
		NoSigs: true,
		NoLog:  cfg.Logger == nil,
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	if cfg.Logger != nil {
		l := cfg.Logger.With("component", "nats-server")
		ns.SetLoggerV2(slogAdapter{l}, l.Enabled(context.Background(), slog.LevelDebug), false, false)
	}
	ns.Start()
	s := &Server{ns: ns, cfg: cfg}
	if !ns.ReadyForConnections(cfg.ReadyTimeout) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready for connections within %s (store dir %s)", cfg.ReadyTimeout, cfg.StoreDir)
	}
	if !ns.JetStreamEnabled() {
		s.Shutdown()
		return nil, fmt.Errorf("embedded nats: JetStream failed to start (store dir %s)", cfg.StoreDir)
	}
	return s, nil
}

// ClientURL is the nats:// URL clients connect to, or "" with NoListen.
func (s *Server) ClientURL() string {
	if s.ns.Addr() == nil {
		return ""
	}
	return s.ns.ClientURL()
}

// InProcessConn opens a connection to the server without the network.
func (s *Server) InProcessConn() (net.Conn, error) {
	return s.ns.InProcessConn()
}

// Restart shuts the server down and starts a new one on the same store
// directory and port, as a restarted nats-server would be: clients
// reconnect to it and find their streams. For tests of recovery.
func (s *Server) Restart() (*Server, error) {
	cfg := s.cfg
	if a, ok := s.ns.Addr().(*net.TCPAddr); ok {
		cfg.Port = a.Port
	}
	s.Shutdown()
	return Start(cfg)
}

// Shutdown stops the server and waits until it has released its store, so
// that a new server can start on the same directory. Clients are
// disconnected and start reconnecting.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// slogAdapter sends the server's log to slog. Fatalf does not exit: the
// server reports start-up failures through it and Start returns them as
// errors; ending the process is the embedding program's decision.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Noticef(f string, v ...any) { a.l.Info(fmt.Sprintf(f, v...)) }
func (a slogAdapter) Warnf(f string, v ...any)   { a.l.Warn(fmt.Sprintf(f, v...)) }
func (a slogAdapter) Fatalf(f string, v ...any)  { a.l.Error(fmt.Sprintf(f, v...), "fatal", true) }
func (a slogAdapter) Errorf(f string, v ...any)  { a.l.Error(fmt.Sprintf(f, v...)) }
func (a slogAdapter) Debugf(f string, v ...any)  { a.l.Debug(fmt.Sprintf(f, v...)) }
func (a slogAdapter) Tracef(f string, v ...any)  { a.l.Debug(fmt.Sprintf(f, v...)) }
