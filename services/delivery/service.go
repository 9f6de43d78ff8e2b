package delivery

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
	"strconv"
	"strings"

	"github.com/miekg/dns"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	deliveryv1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/delivery/v1"
	queuev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/queue/v1"
	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"
	"github.com/prometheus/client_golang/prometheus"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/petrel-mail/petrel/platform/blob"
	"github.com/petrel-mail/petrel/platform/blob/fsblob"
	"github.com/petrel-mail/petrel/platform/blob/s3blob"
	"github.com/petrel-mail/petrel/platform/grpcx"
	"github.com/petrel-mail/petrel/platform/natsx"
	"github.com/petrel-mail/petrel/platform/telemetry"
	"github.com/petrel-mail/petrel/services/delivery/internal/admin"
	"github.com/petrel-mail/petrel/services/delivery/internal/deaddest"
	"github.com/petrel-mail/petrel/services/delivery/internal/destlimit"
	"github.com/petrel-mail/petrel/services/delivery/internal/dnsx"
	"github.com/petrel-mail/petrel/services/delivery/internal/local"
	"github.com/petrel-mail/petrel/services/delivery/internal/queue"
	"github.com/petrel-mail/petrel/services/delivery/internal/route"
	"github.com/petrel-mail/petrel/services/delivery/internal/smtpout"
	"github.com/petrel-mail/petrel/services/store/storeclient"
)

// Outbound delivers to remote recipients (MX lookup, SMTP, DKIM). Send
// returns one result per recipient index in rcpts; an error means none was
// attempted, and they are all deferred.
type Outbound interface {
	Send(ctx context.Context, entry *queuev1.QueueEntry, rcpts []int) ([]queue.Result, error)
}

// Attempter is the queue.Attempter of the service: local recipients
// through the store, the others through Outbound.
type Attempter struct {
	Local *local.Deliverer
	// Outbound, when nil, leaves remote recipients deferred (they bounce at
	// the end of the queue lifetime).
	Outbound Outbound
	Logger   *slog.Logger
}

var _ queue.Attempter = (*Attempter)(nil)

// Attempt implements queue.Attempter. Local delivery goes first: when the
// store is unavailable the attempt fails before anything was sent remotely,
// so repeating it sends nothing twice.
func (a *Attempter) Attempt(ctx context.Context, entry *queuev1.QueueEntry, pending []int) (queue.Attempt, error) {
	split, err := a.Local.Deliver(ctx, entry, pending)
	if err != nil {
		return queue.Attempt{}, err
	}
	att := queue.Attempt{Results: split.Results, StoreMayReference: split.StoreMayReference}
	if len(split.Remote) == 0 {
		return att, nil
	}
	deferAll := func(reply string) {
		for _, i := range split.Remote {
			att.Results = append(att.Results, queue.Result{Index: i, Outcome: queue.Temporary, Reply: reply})
		}
	}
	if a.Outbound == nil {
		if a.Logger != nil {
			a.Logger.Warn("remote delivery is not wired into this build: remote recipients deferred", "queue_id", entry.GetQueueId(), "recipients", len(split.Remote))
		}
		deferAll("451 4.4.0 remote delivery not available")
		return att, nil
	}
	res, err := a.Outbound.Send(ctx, entry, split.Remote)
	if err != nil {
		if a.Logger != nil {
			a.Logger.Warn("remote delivery", "queue_id", entry.GetQueueId(), "error", err)
		}
		deferAll("451 4.4.0 remote delivery failed")
		return att, nil
	}
	att.Results = append(att.Results, res...)
	return att, nil
}

// Service is the assembled delivery service: store client, NATS, blob
// storage, the queue consumer and the gRPC server with the queue admin API.
// main serves GRPC and Consumer (via ConsumerComponent) with lifecycle.Run
// and calls Close at the end.
type Service struct {
	Store    *storeclient.Client
	NATS     *nats.Conn
	JS       jetstream.JetStream
	Blobs    blob.Store
	Consumer *queue.Consumer
	GRPC     *grpcx.Server
	// Transport is the outbound SMTP client (pooled sessions).
	Transport *smtpout.Transport
	// Dead follows the destinations suspended by any replica.
	Dead *deaddest.Shared
}

// New connects to every dependency, declares the streams and builds the
// parts. ready gets a check per dependency (/readyz, gRPC health).
func New(ctx context.Context, cfg Config, log *slog.Logger, reg prometheus.Registerer, ready *telemetry.Readiness) (_ *Service, err error) {
	s := &Service{}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.Store, err = dialStore(cfg, log, reg); err != nil {
		return nil, err
	}
	health := healthgrpc.NewHealthClient(s.Store.Conn)
	ready.Add("store", func(ctx context.Context) error {
		resp, err := health.Check(ctx, &healthgrpc.HealthCheckRequest{})
		if err != nil {
			return fmt.Errorf("store health: %w", err)
		}
		if resp.GetStatus() != healthgrpc.HealthCheckResponse_SERVING {
			return fmt.Errorf("store health: %s", resp.GetStatus())
		}
		return nil
	})

	if s.NATS, s.JS, err = natsx.Connect(ctx, natsx.Config{URLs: cfg.NATSURLs, Name: "petrel-delivery", Logger: log}); err != nil {
		return nil, err
	}
	nc := s.NATS
	ready.Add("nats", func(context.Context) error { return natsx.Ready(nc) })
	nopts := natsx.Options{Prefix: cfg.NATSPrefix}
	if err := natsx.WaitConnected(ctx, s.NATS); err != nil {
		return nil, err
	}
	if err := natsx.EnsureStreams(ctx, s.JS, nopts); err != nil {
		return nil, err
	}
	if err := queue.EnsureDeferred(ctx, s.JS, nopts); err != nil {
		return nil, err
	}

	if s.Blobs, err = openBlobs(cfg); err != nil {
		return nil, err
	}
	if c, ok := s.Blobs.(blob.Checker); ok {
		ready.Add("blob", c.Check)
	}

	loc, err := local.New(local.Options{Directory: s.Store.Directory, Messages: s.Store.Messages, OverQuotaBounceAfter: cfg.OverQuotaBounceAt,
		BatchSize: cfg.DeliverBatch, BatchCalls: cfg.DeliverCalls})
	if err != nil {
		return nil, err
	}
	hostname := cfg.Hostname
	if hostname == "" {
		if hostname, err = os.Hostname(); err != nil {
			return nil, fmt.Errorf("host name: %w", err)
		}
	}
	var shared smtpout.SharedLimiter
	if !cfg.LocalDestinationLimit {
		if shared, err = destlimit.Open(ctx, s.JS, nopts, destlimit.Config{Max: cfg.MaxConnsPerDestination,
			Initial: cfg.InitialConnsPerDestination, Holder: fmt.Sprintf("%s/%d", hostname, os.Getpid()), Logger: log}); err != nil {
			return nil, err
		}
	}
	var dead smtpout.Suspensions
	if cfg.DeadDestinationTime > 0 {
		if s.Dead, err = deaddest.Open(ctx, s.JS, nopts, log); err != nil {
			return nil, err
		}
		dead = s.Dead
		if reg != nil {
			if err := reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "petrel_delivery_suspended_destinations",
				Help: "Destinations whose mail is deferred without connecting because none of their hosts answered (--dead-destination-time), as this replica knows them.",
			}, func() float64 { return float64(s.Dead.Count()) })); err != nil {
				return nil, fmt.Errorf("register metrics: %w", err)
			}
		}
	}
	remote, err := newRemote(cfg, hostname, s.Blobs, storev1.NewDKIMServiceClient(s.Store.Conn), shared, dead, log)
	if err != nil {
		return nil, err
	}
	s.Transport = remote.Transport
	if s.Consumer, err = queue.New(queue.Options{
		JS:        s.JS,
		NATS:      nopts,
		Attempter: &Attempter{Local: loc, Outbound: remote, Logger: log},
		Bouncer: &DSNQueuer{
			JS: s.JS, NATS: nopts, Blobs: s.Blobs, ReportingMTA: hostname, Logger: log,
		},
		Blobs:       s.Blobs,
		Holds:       local.Holds{Messages: s.Store.Messages},
		Schedule:    cfg.Schedule(),
		Concurrency: cfg.Concurrency,
		Logger:      log,
		Registry:    reg,
	}); err != nil {
		return nil, err
	}

	adm, err := admin.New(admin.Options{
		JS: s.JS, NATS: nopts, Blobs: s.Blobs, Logger: log,
		Verifier: &admin.StoreVerifier{Admin: s.Store.Admin},
		Holds:    local.Holds{Messages: s.Store.Messages},
		Resume:   remote.Resume,
	})
	if err != nil {
		return nil, err
	}
	if s.GRPC, err = grpcx.NewServer(grpcx.ServerOptions{Logger: log, Registry: reg, Readiness: ready, Reflection: true}); err != nil {
		return nil, err
	}
	deliveryv1.RegisterQueueAdminServiceServer(s.GRPC, adm)
	return s, nil
}

func dialStore(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*storeclient.Client, error) {
	token, err := storeclient.ReadTokenFile(cfg.StoreTokenFile)
	if err != nil {
		return nil, err
	}
	opts := storeclient.Options{Token: token, Logger: log, Registry: reg}
	if cfg.StoreCAFile != "" {
		pem, err := os.ReadFile(cfg.StoreCAFile)
		if err != nil {
			return nil, fmt.Errorf("store CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("store CA: no certificate in %s", cfg.StoreCAFile)
		}
		opts.TLSConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	} else {
		opts.Insecure = true
	}
	return storeclient.Dial(cfg.StoreAddr, opts)
}

func openBlobs(cfg Config) (blob.Store, error) {
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
		return nil, fmt.Errorf("s3: %w", err)
	}
	return st, nil
}

// ConsumerComponent runs the queue consumer under lifecycle.Run: Shutdown
// stops taking entries and lets those in work finish until its context
// ends; then they are abandoned unacknowledged and come back to another
// replica.
func (s *Service) ConsumerComponent() *ConsumerComponent {
	return &ConsumerComponent{c: s.Consumer, stop: make(chan struct{}), abort: make(chan struct{}), done: make(chan struct{})}
}

// ConsumerComponent is a lifecycle.Component.
type ConsumerComponent struct {
	c           *queue.Consumer
	stop, abort chan struct{}
	done        chan struct{}
}

// Serve implements lifecycle.Component.
func (cc *ConsumerComponent) Serve(ctx context.Context) error {
	defer close(cc.done)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-cc.abort:
			cancel()
		case <-ctx.Done():
		}
	}()
	return cc.c.RunDrain(ctx, cc.stop)
}

// Shutdown implements lifecycle.Component.
func (cc *ConsumerComponent) Shutdown(ctx context.Context) error {
	close(cc.stop)
	select {
	case <-cc.done:
		return nil
	case <-ctx.Done():
		close(cc.abort)
		<-cc.done
		return errors.New("queue consumer: entries in work abandoned at the end of the grace period")
	}
}

// newRemote builds the outbound path from the configuration.
func newRemote(cfg Config, hostname string, blobs blob.Store, keys storev1.DKIMServiceClient, shared smtpout.SharedLimiter,
	dead smtpout.Suspensions, log *slog.Logger) (*Remote, error) {
	var resolver dnsx.Resolver = dnsx.System{}
	switch {
	case cfg.DNSServer != "":
		resolver = &dnsx.Client{Server: cfg.DNSServer}
	default:
		// The system resolver cannot tell "no such domain" from "no MX
		// record" (the implicit MX case); query the configured server
		// directly when there is one.
		if cc, err := dns.ClientConfigFromFile("/etc/resolv.conf"); err == nil && len(cc.Servers) > 0 {
			resolver = &dnsx.Client{Server: net.JoinHostPort(cc.Servers[0], cc.Port)}
		}
	}
	router := &route.Router{Resolver: resolver, Port: cfg.MXPort, Logger: log}
	for _, a := range cfg.LocalAddrs {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			return nil, fmt.Errorf("local address: %w", err)
		}
		router.LocalAddrs = append(router.LocalAddrs, ip.Unmap())
	}
	if cfg.Smarthost != "" {
		host, port, err := net.SplitHostPort(cfg.Smarthost)
		if err != nil {
			return nil, fmt.Errorf("smarthost: %w", err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("smarthost port: %w", err)
		}
		sh := &route.Smarthost{Host: host, Port: p, Username: cfg.SmarthostUser, ImplicitTLS: cfg.SmarthostImplicitTLS}
		if cfg.SmarthostPasswordFile != "" {
			pw, err := os.ReadFile(cfg.SmarthostPasswordFile)
			if err != nil {
				return nil, fmt.Errorf("smarthost password: %w", err)
			}
			sh.Password = strings.TrimRight(string(pw), "\r\n")
		}
		router.Smarthost = sh
	}
	deadTime := cfg.DeadDestinationTime
	if deadTime == 0 {
		deadTime = -1 // smtpout: never
	}
	tr, err := smtpout.New(smtpout.Options{EHLOName: hostname, MaxConnsPerDestination: cfg.MaxConnsPerDestination, SharedLimit: shared,
		DeadDestinationTime: deadTime, Suspensions: dead, Logger: log})
	if err != nil {
		return nil, err
	}
	return &Remote{
		Router: router, Transport: tr, Blobs: blobs, Logger: log,
		Keys: &StoreKeys{Client: keys, TTL: cfg.DKIMKeyCache},
	}, nil
}

// Close releases the connections.
func (s *Service) Close() {
	if s.Transport != nil {
		_ = s.Transport.Close()
	}
	if s.Dead != nil {
		s.Dead.Close()
	}
	if s.NATS != nil {
		s.NATS.Close()
	}
	if s.Store != nil {
		_ = s.Store.Close()
	}
}
