package grpcx

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/petrel-mail/petrel/platform/telemetry"
)

// DefaultHealthPoll is how often readiness is re-evaluated for health
// Watch streams when ServerOptions.HealthPoll is zero.
const DefaultHealthPoll = 5 * time.Second

// ServerOptions configure NewServer. The server keeps a copy.
type ServerOptions struct {
	Logger *slog.Logger
	// Registry receives the server's metrics; nil keeps them unexported.
	Registry prometheus.Registerer
	// Readiness decides what the health service reports; nil means a
	// readiness with no checks (SERVING until shutdown).
	Readiness *telemetry.Readiness
	// HealthPoll is how often readiness is re-run so that health Watch
	// streams see changes; Check calls always run it afresh.
	HealthPoll time.Duration
	// Reflection registers the server reflection service (for grpcurl).
	Reflection bool
	// TLSConfig, when set, makes the server speak TLS only; set ClientAuth
	// and ClientCAs in it for mutual TLS. Nil serves without transport
	// security, for loopback and in-process listeners.
	TLSConfig *tls.Config
	// TracerProvider and Propagator default to the OpenTelemetry globals
	// (see telemetry.SetupTracing).
	TracerProvider trace.TracerProvider
	Propagator     propagation.TextMapPropagator
	// Extra are appended to the options NewServer builds.
	Extra []grpc.ServerOption
}

// Server is a grpc.Server with Petrel's interceptors and health service.
// Register services on it (it is a grpc.ServiceRegistrar) before Serve.
type Server struct {
	opts    ServerOptions
	grpc    *grpc.Server
	health  *healthService
	metrics *serverMetrics
	panics  atomic.Int64

	stopPoll  chan struct{}
	closeOnce sync.Once
}

var _ grpc.ServiceRegistrar = (*Server)(nil)

// NewServer builds a server from opts.
func NewServer(opts ServerOptions) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if opts.Readiness == nil {
		opts.Readiness = telemetry.NewReadiness(0)
	}
	if opts.HealthPoll <= 0 {
		opts.HealthPoll = DefaultHealthPoll
	}
	m, err := newServerMetrics(opts.Registry)
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, metrics: m, stopPoll: make(chan struct{})}

	serverOpts := []grpc.ServerOption{
		grpc.StatsHandler(otelgrpc.NewServerHandler(otelOptions(opts.TracerProvider, opts.Propagator)...)),
		// Recovery is innermost so that logging and metrics see the
		// codes.Internal it turns a panic into.
		grpc.ChainUnaryInterceptor(s.unaryObserve, s.unaryRecover),
		grpc.ChainStreamInterceptor(s.streamObserve, s.streamRecover),
		// Clients ping every 30s (see Dial); allow down to 10s, also with no
		// call in flight, rather than closing their connections with
		// GOAWAY too_many_pings.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: time.Minute, Timeout: 20 * time.Second}),
	}
	if opts.TLSConfig != nil {
		serverOpts = append(serverOpts, grpc.Creds(credentials.NewTLS(opts.TLSConfig)))
	}
	serverOpts = append(serverOpts, opts.Extra...)
	s.grpc = grpc.NewServer(serverOpts...)

	s.health = newHealthService(opts.Readiness)
	healthgrpc.RegisterHealthServer(s.grpc, s.health)
	if opts.Reflection {
		reflection.Register(s.grpc)
	}
	return s, nil
}

func otelOptions(tp trace.TracerProvider, p propagation.TextMapPropagator) []otelgrpc.Option {
	var o []otelgrpc.Option
	if tp != nil {
		o = append(o, otelgrpc.WithTracerProvider(tp))
	}
	if p != nil {
		o = append(o, otelgrpc.WithPropagators(p))
	}
	return o
}

// RegisterService registers a service implementation and reports it in the
// health service under its full name.
func (s *Server) RegisterService(desc *grpc.ServiceDesc, impl any) {
	s.grpc.RegisterService(desc, impl)
	s.health.addService(desc.ServiceName)
}

// GRPC is the underlying server, for what this package does not wrap.
func (s *Server) GRPC() *grpc.Server { return s.grpc }

// Panics is the number of panics recovered so far; tests assert it is zero.
func (s *Server) Panics() int64 { return s.panics.Load() }

// UpdateHealth re-runs readiness now and publishes the result to health
// Watch streams.
func (s *Server) UpdateHealth(ctx context.Context) { s.health.evaluate(ctx) }

// Serve serves on ln until Shutdown or Stop, then returns nil.
func (s *Server) Serve(ln net.Listener) error {
	go s.pollHealth()
	// A Stop or Shutdown that came before Serve got going is the same
	// orderly end as one that came after (when grpc returns nil): not an
	// error, whichever goroutine the scheduler ran first.
	if err := s.grpc.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("grpcx: serve %s: %w", ln.Addr(), err)
	}
	return nil
}

func (s *Server) pollHealth() {
	s.health.evaluate(context.Background())
	t := time.NewTicker(s.opts.HealthPoll)
	defer t.Stop()
	for {
		select {
		case <-s.stopPoll:
			return
		case <-t.C:
			s.health.evaluate(context.Background())
		}
	}
}

// Shutdown reports NOT_SERVING, stops accepting and lets calls in flight
// finish until ctx ends; then it closes every connection (ending calls still
// running, such as Watch streams) and returns an error saying so.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopPolling()
	s.health.Shutdown()
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.grpc.Stop()
		<-done
		return fmt.Errorf("grpcx: calls still running at the drain deadline were ended: %w", ctx.Err())
	}
}

// Stop closes every connection at once.
func (s *Server) Stop() {
	s.stopPolling()
	s.health.Shutdown()
	s.grpc.Stop()
}

func (s *Server) stopPolling() { s.closeOnce.Do(func() { close(s.stopPoll) }) }

// healthService is the standard health server, except that Check consults
// readiness afresh instead of answering from the last recorded status, so a
// probe never sees stale state; Watch and List are the standard ones, fed by
// evaluate.
type healthService struct {
	*health.Server
	ready *telemetry.Readiness

	mu       sync.Mutex
	services []string
}

func newHealthService(ready *telemetry.Readiness) *healthService {
	h := &healthService{Server: health.NewServer(), ready: ready, services: []string{""}}
	// Start NOT_SERVING: Serve's first evaluation decides.
	h.SetServingStatus("", healthgrpc.HealthCheckResponse_NOT_SERVING)
	ready.OnChange(func() { h.evaluate(context.Background()) })
	return h
}

func (h *healthService) addService(name string) {
	h.mu.Lock()
	h.services = append(h.services, name)
	h.mu.Unlock()
	h.SetServingStatus(name, healthgrpc.HealthCheckResponse_NOT_SERVING)
}

func (h *healthService) known(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.services {
		if s == name {
			return true
		}
	}
	return false
}

// evaluate runs readiness and records the result for every service: they
// share the process's dependencies, so they are ready together.
func (h *healthService) evaluate(ctx context.Context) healthgrpc.HealthCheckResponse_ServingStatus {
	st := healthgrpc.HealthCheckResponse_SERVING
	if len(h.ready.Check(ctx)) > 0 {
		st = healthgrpc.HealthCheckResponse_NOT_SERVING
	}
	h.mu.Lock()
	services := append([]string(nil), h.services...)
	h.mu.Unlock()
	// After health.Server.Shutdown these calls are ignored and every
	// service stays NOT_SERVING, which is what a draining server reports.
	for _, name := range services {
		h.SetServingStatus(name, st)
	}
	return st
}

// Check implements grpc.health.v1.Health/Check.
func (h *healthService) Check(ctx context.Context, req *healthgrpc.HealthCheckRequest) (*healthgrpc.HealthCheckResponse, error) {
	if !h.known(req.GetService()) {
		return h.Server.Check(ctx, req) // NOT_FOUND, as the standard says
	}
	h.evaluate(ctx)
	return h.Server.Check(ctx, req)
}

var errNoSecurity = errors.New("grpcx: no TLSConfig given and Insecure not set; plaintext is only for loopback and in-process connections and must be asked for")
