// Package natsx is Petrel's one way to talk to NATS: it connects with the
// reconnect policy every service needs (start before NATS is up, reconnect
// forever, log every disconnect), declares the JetStream streams and
// consumers of the mail queue in one place (streams.go), builds the core NATS
// subjects of mailbox change events, and publishes queue entries with a
// de-duplication id.
//
// It implements no RFC; it follows the NATS client protocol and the JetStream
// API as provided by github.com/nats-io/nats.go and its jetstream package.
// The embedded server used by standalone mode and tests lives in the
// subpackage natsx/embedded, so that binaries which only connect do not link
// nats-server.
package natsx

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Config says how to reach NATS. The zero value is not valid: set URLs or
// InProcess.
type Config struct {
	// URLs of the NATS servers (nats://host:4222, tls://host:4222). Several
	// URLs are servers of one cluster; the client also learns the others
	// from the cluster itself.
	URLs []string
	// InProcess connects to a server in this process (an embedded.Server)
	// without any TCP listener; used by standalone mode. Exclusive with URLs.
	InProcess nats.InProcessConnProvider

	// Name identifies this client in the server's monitoring (e.g.
	// "petrel-smtp/pod-name").
	Name string

	// Credentials: at most one of CredsFile (a NATS .creds file with a user
	// JWT and nkey seed), Token, or User and Password.
	CredsFile string
	Token     string
	User      string
	Password  string

	// TLS, when set, is the client TLS configuration (root CAs, client
	// certificate for mTLS). Nil means TLS only if a URL says tls://.
	TLS *tls.Config

	// Reconnect backoff: the first retry waits ReconnectWait, each further
	// round through the server list doubles it up to MaxReconnectWait, and a
	// random delay up to ReconnectJitter is added so that many pods do not
	// reconnect in lockstep after a NATS restart. Defaults: 250ms, 5s, 1s.
	ReconnectWait    time.Duration
	MaxReconnectWait time.Duration
	ReconnectJitter  time.Duration

	// Logger receives connection state changes. Default: slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.ReconnectWait == 0 {
		c.ReconnectWait = 250 * time.Millisecond
	}
	if c.MaxReconnectWait == 0 {
		c.MaxReconnectWait = 5 * time.Second
	}
	if c.ReconnectJitter == 0 {
		c.ReconnectJitter = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports every problem in c at once.
func (c Config) Validate() error {
	var errs []error
	switch {
	case len(c.URLs) == 0 && c.InProcess == nil:
		errs = append(errs, errors.New("natsx: no server: set URLs or InProcess"))
	case len(c.URLs) > 0 && c.InProcess != nil:
		errs = append(errs, errors.New("natsx: set either URLs or InProcess, not both"))
	}
	for _, u := range c.URLs {
		if strings.TrimSpace(u) == "" || strings.Contains(u, ",") {
			errs = append(errs, fmt.Errorf("natsx: bad server URL %q (one URL per entry)", u))
		}
	}
	creds := 0
	if c.CredsFile != "" {
		creds++
	}
	if c.Token != "" {
		creds++
	}
	if c.User != "" || c.Password != "" {
		creds++
		if c.User == "" {
			errs = append(errs, errors.New("natsx: Password set without User"))
		}
	}
	if creds > 1 {
		errs = append(errs, errors.New("natsx: set at most one of CredsFile, Token, User/Password"))
	}
	if c.ReconnectWait < 0 || c.MaxReconnectWait < 0 || c.ReconnectJitter < 0 {
		errs = append(errs, errors.New("natsx: reconnect durations must not be negative"))
	}
	if c.MaxReconnectWait > 0 && c.ReconnectWait > c.MaxReconnectWait {
		errs = append(errs, fmt.Errorf("natsx: ReconnectWait %s exceeds MaxReconnectWait %s", c.ReconnectWait, c.MaxReconnectWait))
	}
	return errors.Join(errs...)
}

// reconnectDelay is the wait before the attempts-th round of reconnection
// through the server list: exponential, capped, with jitter.
func (c Config) reconnectDelay(attempts int) time.Duration {
	d := c.ReconnectWait
	for i := 1; i < attempts && d < c.MaxReconnectWait; i++ {
		d *= 2
	}
	d = min(d, c.MaxReconnectWait)
	if c.ReconnectJitter > 0 {
		d += rand.N(c.ReconnectJitter)
	}
	return d
}

// Connect returns a connection to NATS and a JetStream handle on it.
//
// Connect does not wait for the server: if it is unreachable the connection
// starts in the reconnecting state and keeps trying forever, so a service can
// start before NATS does. Use Ready for readiness probes and WaitConnected to
// block until the first connection. Publishing while disconnected is buffered
// by the client and a JetStream publish then fails at its context deadline,
// which callers turn into a temporary failure. ctx is only checked on entry:
// the connection outlives it; close it with nc.Drain or nc.Close.
func Connect(ctx context.Context, cfg Config) (*nats.Conn, jetstream.JetStream, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("natsx: connect: %w", err)
	}
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	log := cfg.Logger.With("component", "nats", "client", cfg.Name)
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.CustomReconnectDelay(cfg.reconnectDelay),
		nats.ConnectHandler(func(nc *nats.Conn) {
			// Only called when the first connection succeeds after retries.
			log.Info("nats connected", "server", nc.ConnectedUrlRedacted())
		}),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "error", err)
			} else {
				log.Info("nats disconnected")
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "server", nc.ConnectedUrlRedacted())
		}),
		nats.ReconnectErrHandler(func(nc *nats.Conn, err error) {
			log.Debug("nats reconnect attempt failed", "error", err)
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			log.Info("nats connection closed")
		}),
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Error("nats asynchronous error", "subject", subject, "error", err)
		}),
	}
	switch {
	case cfg.CredsFile != "":
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	case cfg.Token != "":
		opts = append(opts, nats.Token(cfg.Token))
	case cfg.User != "":
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	}
	if cfg.TLS != nil {
		opts = append(opts, nats.Secure(cfg.TLS))
	}
	url := strings.Join(cfg.URLs, ",")
	if cfg.InProcess != nil {
		opts = append(opts, nats.InProcessServer(cfg.InProcess))
		url = ""
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("natsx: connect to %q: %w", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("natsx: jetstream: %w", err)
	}
	return nc, js, nil
}

// Ready reports whether nc is connected to a server, for readiness probes:
// nil when connected, otherwise an error naming the connection state.
func Ready(nc *nats.Conn) error {
	if nc == nil {
		return errors.New("natsx: no connection")
	}
	if st := nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("natsx: not connected (%s)", st)
	}
	return nil
}

// WaitConnected blocks until nc is connected or ctx is done. The client
// library offers no way to add a second connect callback, so this polls the
// connection state, which is a cheap atomic read.
func WaitConnected(ctx context.Context, nc *nats.Conn) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if nc.IsConnected() {
			return nil
		}
		if nc.IsClosed() {
			return errors.New("natsx: connection closed")
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("natsx: wait for connection: %w (%s)", ctx.Err(), nc.Status())
		case <-t.C:
		}
	}
}
