package smtp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/petrel-mail/petrel/platform/blob"
	"github.com/petrel-mail/petrel/platform/blob/fsblob"
	"github.com/petrel-mail/petrel/platform/blob/s3blob"
	"github.com/petrel-mail/petrel/platform/grpcx"
	"github.com/petrel-mail/petrel/platform/natsx"
	"github.com/petrel-mail/petrel/platform/proxyproto"
	"github.com/petrel-mail/petrel/platform/telemetry"
	"github.com/petrel-mail/petrel/platform/tlsutil"
	"github.com/petrel-mail/petrel/services/smtp/internal/authcheck"
	"github.com/petrel-mail/petrel/services/smtp/internal/directory"
	"github.com/petrel-mail/petrel/services/smtp/internal/ingest"
	"github.com/petrel-mail/petrel/services/smtp/internal/limits"
	"github.com/petrel-mail/petrel/services/smtp/internal/msgauth"
	"github.com/petrel-mail/petrel/services/smtp/internal/server"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"
)

// recipientCacheEntries bounds the RCPT TO cache: ~200 bytes an entry,
// 20 MiB at most.
const recipientCacheEntries = 100_000

// Listener is one SMTP listener to open: main listens on Addr, wraps the
// socket with Listen and serves Server on it.
type Listener struct {
	// Name is "mx", "submission" or "submissions" (the addr-file key).
	Name   string
	Addr   string
	Server *server.Server
	proxy  []netip.Prefix
	log    *slog.Logger
}

// Service is the assembled smtp ingress: its listeners and the
// connections to its dependencies, which Close releases.
type Service struct {
	Listeners []Listener
	closers   []func() error
}

// New connects the dependencies (without waiting for them: each is a
// readiness check, and the SMTP replies are 4xx while one is down) and
// builds a server per enabled listener.
func New(ctx context.Context, cfg Config, log *slog.Logger, reg prometheus.Registerer, ready *telemetry.Readiness) (_ *Service, err error) {
	s := &Service{}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	hostname := cfg.Hostname
	if hostname == "" {
		if hostname, err = os.Hostname(); err != nil {
			return nil, fmt.Errorf("host name: %w", err)
		}
	}

	tlsConfig, err := s.tlsConfig(cfg, hostname, log)
	if err != nil {
		return nil, err
	}

	store, err := openBlob(cfg)
	if err != nil {
		return nil, err
	}
	if c, ok := store.(blob.Checker); ok {
		ready.Add("blob", c.Check)
	}

	nopts := natsx.Options{Prefix: cfg.NATSPrefix}
	nc, js, err := natsx.Connect(ctx, natsx.Config{URLs: cfg.NATSURLs, Name: "petrel-smtp", Logger: log})
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func() error { nc.Close(); return nil })
	// The queue stream may not exist yet (smtp can start before
	// delivery); declaring it is idempotent. Until it is declared the
	// service is not ready, and publishes fail with 451.
	var streamsReady atomic.Bool
	streamCtx, stopStreams := context.WithCancel(context.WithoutCancel(ctx))
	s.closers = append(s.closers, func() error { stopStreams(); return nil })
	go ensureStreams(streamCtx, log, nc, func(ctx context.Context) error { return natsx.EnsureStreams(ctx, js, nopts) }, &streamsReady)
	ready.Add("nats", func(context.Context) error {
		if err := natsx.Ready(nc); err != nil {
			return err
		}
		if !streamsReady.Load() {
			return errors.New("queue stream not declared yet")
		}
		return nil
	})

	dir, cc, err := dialStore(cfg, log, reg)
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, cc.Close)
	dir = directory.NewCache(dir, cfg.RecipientCacheTTL, recipientCacheEntries, nil)
	health := healthgrpc.NewHealthClient(cc)
	ready.Add("store", func(ctx context.Context) error {
		resp, err := health.Check(ctx, &healthgrpc.HealthCheckRequest{})
		if err != nil {
			return fmt.Errorf("store health: %w", err)
		}
		if resp.GetStatus() != healthgrpc.HealthCheckResponse_SERVING {
			return fmt.Errorf("store health: %v", resp.GetStatus())
		}
		return nil
	})

	var auth authcheck.Authenticator
	if cfg.CheckSenderAuth {
		v, err := msgauth.New(msgauth.Options{AuthServID: hostname, Resolver: msgauth.NewResolver(cfg.DNSServer, 5*time.Second)})
		if err != nil {
			return nil, fmt.Errorf("sender authentication: %w", err)
		}
		auth = msgauth.Authenticator{Verifier: v, RejectDMARC: cfg.DMARCReject}
	}
	ing, err := ingest.New(ingest.Options{
		Blob: store, JetStream: js, Conn: nc, Subject: nopts.QueueInboundSubject(),
		Hostname: hostname, MaxMessageBytes: int64(cfg.MaxMessageSize), MaxHops: cfg.MaxHops, Authenticator: auth, Logger: log,
	})
	if err != nil {
		return nil, err
	}

	opts := server.Options{
		Hostname: hostname, Directory: dir, Ingester: ing, TLSConfig: tlsConfig,
		MaxMessageBytes: int64(cfg.MaxMessageSize), MaxRecipients: cfg.MaxRecipients, MaxCommands: cfg.MaxCommands,
		IdleTimeout: cfg.IdleTimeout, SessionTimeout: cfg.SessionTimeout,
		AllowInsecureAuthLoopback: cfg.AllowPlaintextAuthLoopback,
		Limits: server.Limits{
			Conns:        limits.NewConnLimiter(cfg.MaxConnsPerNetwork),
			UserMessages: limits.NewRateLimiter(cfg.UserMessagesPerHour, time.Hour, max(cfg.UserMessagesPerHour/10, 1), nil),
			AuthFailures: limits.NewAuthFailures(cfg.AuthFailuresPerWindow, cfg.AuthFailureWindow, time.Second, 5*time.Second, nil),
		},
		Metrics: server.NewMetrics(reg),
		Logger:  log,
	}
	for _, l := range []struct {
		kind  server.Kind
		addr  string
		cidrs string
	}{
		{server.MX, cfg.MXListen, cfg.MXProxyCIDRs},
		{server.Submission, cfg.SubmissionListen, cfg.SubmissionProxyCIDRs},
		{server.Submissions, cfg.SubmissionsListen, cfg.SubmissionsProxyCIDRs},
	} {
		if l.addr == "" {
			continue
		}
		srv, err := server.New(l.kind, opts)
		if err != nil {
			return nil, err
		}
		prefixes, err := proxyproto.ParseCIDRs(l.cidrs)
		if err != nil {
			return nil, fmt.Errorf("%s proxy CIDRs: %w", l.kind, err)
		}
		s.Listeners = append(s.Listeners, Listener{Name: l.kind.String(), Addr: l.addr, Server: srv, proxy: prefixes, log: log})
	}
	return s, nil
}

// Listen wraps ln for the PROXY protocol when the listener trusts load
// balancers; otherwise it returns ln.
func (l Listener) Listen(ln net.Listener) (net.Listener, error) {
	if len(l.proxy) == 0 {
		return ln, nil
	}
	name := l.Name
	pl, err := proxyproto.NewListener(ln, proxyproto.Options{
		TrustedCIDRs: l.proxy,
		OnReject: func(r proxyproto.Rejection) {
			l.log.Info("PROXY protocol connection refused", "listener", name, "reason", r.Reason.String())
		},
	})
	if err != nil {
		return nil, fmt.Errorf("%s: PROXY protocol: %w", l.Name, err)
	}
	return pl, nil
}

// Close releases the dependencies. Call it after the servers have shut
// down.
func (s *Service) Close() error {
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		errs = append(errs, s.closers[i]())
	}
	return errors.Join(errs...)
}

func (s *Service) tlsConfig(cfg Config, hostname string, log *slog.Logger) (*tls.Config, error) {
	switch {
	case cfg.TLSCertFile != "":
		r, err := tlsutil.NewCertReloader(cfg.TLSCertFile, cfg.TLSKeyFile, tlsutil.ReloaderOptions{
			OnReload: func(leaf *x509.Certificate, err error) {
				if err != nil {
					log.Error("TLS certificate not reloaded", "err", err)
					return
				}
				log.Info("TLS certificate reloaded", "subject", leaf.Subject.String(), "not_after", leaf.NotAfter)
			},
		})
		if err != nil {
			return nil, fmt.Errorf("TLS certificate: %w", err)
		}
		s.closers = append(s.closers, r.Close)
		return tlsutil.ServerConfig(r.GetCertificate), nil
	case cfg.DevSelfSigned:
		hosts := []string{hostname, "localhost", "127.0.0.1", "::1"}
		cert, err := tlsutil.GenerateSelfSigned(tlsutil.SelfSignedOptions{Hosts: hosts})
		if err != nil {
			return nil, fmt.Errorf("self-signed certificate: %w", err)
		}
		log.Warn("using a self-signed TLS certificate (development)", "hosts", strings.Join(hosts, ","))
		return tlsutil.ServerConfig(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert.Pair, nil }), nil
	}
	// No certificate: no STARTTLS (Validate refused a submissions
	// listener without one).
	return nil, nil
}

func openBlob(cfg Config) (blob.Store, error) {
	if cfg.BlobDir != "" {
		st, err := fsblob.New(cfg.BlobDir)
		if err != nil {
			return nil, fmt.Errorf("blob directory: %w", err)
		}
		return st, nil
	}
	st, err := s3blob.New(s3blob.Config{
		Endpoint: cfg.S3Endpoint, Bucket: cfg.S3Bucket, AccessKey: cfg.S3AccessKey, SecretKey: cfg.S3SecretKey,
		Region: cfg.S3Region, UseTLS: cfg.S3TLS,
	})
	if err != nil {
		return nil, fmt.Errorf("S3: %w", err)
	}
	return st, nil
}

func dialStore(cfg Config, log *slog.Logger, reg prometheus.Registerer) (directory.Directory, *grpc.ClientConn, error) {
	raw, err := os.ReadFile(cfg.StoreTokenFile)
	if err != nil {
		return nil, nil, fmt.Errorf("store token: %w", err)
	}
	token := strings.TrimSpace(string(raw))
	if token == "" {
		return nil, nil, fmt.Errorf("store token: %s is empty", cfg.StoreTokenFile)
	}
	opts := grpcx.ClientOptions{Logger: log, Registry: reg}
	if cfg.StoreCAFile != "" {
		pem, err := os.ReadFile(cfg.StoreCAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("store CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("store CA: no certificate in %s", cfg.StoreCAFile)
		}
		opts.TLSConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	} else {
		opts.Insecure = true
	}
	cc, err := grpcx.Dial(cfg.StoreAddr, opts)
	if err != nil {
		return nil, nil, err
	}
	return directory.NewClient(cc, token), cc, nil
}

// ensureStreams declares the queue stream once NATS is reachable,
// retrying until it succeeds or ctx ends.
func ensureStreams(ctx context.Context, log *slog.Logger, nc *nats.Conn, ensure func(context.Context) error, done *atomic.Bool) {
	wait := 100 * time.Millisecond
	for {
		if err := natsx.WaitConnected(ctx, nc); err != nil {
			return
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := ensure(cctx)
		cancel()
		if err == nil {
			done.Store(true)
			return
		}
		log.Warn("could not declare the queue stream; retrying", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// Group serves the SMTP listeners as one lifecycle component, so that on
// SIGTERM they all drain at once: every port answers new connections with
// 421 from the start of the drain, and sessions on every port get the same
// grace.
type Group struct {
	servers []*server.Server
	lns     []net.Listener
}

// Add serves l.Server on ln.
func (g *Group) Add(l Listener, ln net.Listener) {
	g.servers = append(g.servers, l.Server)
	g.lns = append(g.lns, ln)
}

// String names the component in logs.
func (g *Group) String() string { return "smtp" }

// Serve serves every listener until Shutdown; the first failure stops
// them all and is returned.
func (g *Group) Serve(ctx context.Context) error {
	errc := make(chan error, len(g.servers))
	for i, srv := range g.servers {
		go func() { errc <- srv.Serve(g.lns[i]) }()
	}
	var first error
	for range g.servers {
		if err := <-errc; err != nil && first == nil {
			first = err
			for _, srv := range g.servers {
				srv.Close()
			}
		}
	}
	return first
}

// Shutdown drains every listener at once (see server.Server.Shutdown).
func (g *Group) Shutdown(ctx context.Context) error {
	errc := make(chan error, len(g.servers))
	for _, srv := range g.servers {
		go func() { errc <- srv.Shutdown(ctx) }()
	}
	var errs []error
	for range g.servers {
		errs = append(errs, <-errc)
	}
	return errors.Join(errs...)
}
