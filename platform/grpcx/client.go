package grpcx

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// DefaultCallTimeout is the deadline given to unary calls made without one
// when ClientOptions.DefaultTimeout is zero.
const DefaultCallTimeout = 10 * time.Second

// ClientOptions configure Dial.
type ClientOptions struct {
	Logger *slog.Logger
	// Registry receives the client metrics; nil keeps them unexported.
	Registry prometheus.Registerer
	// TLSConfig secures the connection; for mutual TLS set Certificates
	// (the client's) and RootCAs (the servers' CA) in it.
	TLSConfig *tls.Config
	// Insecure must be set to connect without TLS, which is for loopback
	// and the in-process transport only. It is ignored when TLSConfig is
	// set.
	Insecure bool
	// DefaultTimeout is the deadline of unary calls whose context has none;
	// zero means DefaultCallTimeout, negative means no default.
	DefaultTimeout time.Duration
	// Keepalive overrides the keepalive parameters (default: ping after 30s
	// idle, give up 10s later, also with no call in flight).
	Keepalive *keepalive.ClientParameters
	// Dialer replaces the network dialer, e.g. with InProcessListener's.
	Dialer func(ctx context.Context, addr string) (net.Conn, error)
	// TracerProvider and Propagator default to the OpenTelemetry globals.
	TracerProvider trace.TracerProvider
	Propagator     propagation.TextMapPropagator
	// Extra are appended to the options Dial builds.
	Extra []grpc.DialOption
}

// Dial returns a client connection to target (a gRPC target such as
// "dns:///store.petrel.svc:7070", "127.0.0.1:7070" or InProcessTarget).
// Like grpc.NewClient it does not connect until the first call.
func Dial(target string, opts ClientOptions) (*grpc.ClientConn, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	var creds credentials.TransportCredentials
	switch {
	case opts.TLSConfig != nil:
		creds = credentials.NewTLS(opts.TLSConfig)
	case opts.Insecure:
		creds = insecure.NewCredentials()
	default:
		return nil, errNoSecurity
	}
	m, err := newClientMetrics(opts.Registry)
	if err != nil {
		return nil, err
	}
	ka := keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}
	if opts.Keepalive != nil {
		ka = *opts.Keepalive
	}
	unary := []grpc.UnaryClientInterceptor{clientObserve(opts.Logger, m)}
	timeout := opts.DefaultTimeout
	if timeout == 0 {
		timeout = DefaultCallTimeout
	}
	if timeout > 0 {
		// Inside the observer, so the measured call includes the wait the
		// default deadline ends.
		unary = append(unary, deadlineInterceptor(timeout))
	}
	dialOpts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelOptions(opts.TracerProvider, opts.Propagator)...)),
		grpc.WithChainUnaryInterceptor(unary...),
		grpc.WithKeepaliveParams(ka),
		// Spread calls over every address the target resolves to (a
		// headless Kubernetes Service lists each pod), instead of gRPC's
		// default of pinning the first one. A service config from the
		// resolver still takes precedence.
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
	}
	if opts.Dialer != nil {
		dialOpts = append(dialOpts, grpc.WithContextDialer(opts.Dialer))
	}
	dialOpts = append(dialOpts, opts.Extra...)
	cc, err := grpc.NewClient(target, dialOpts...)
	if err != nil {
		return nil, fmt.Errorf("grpcx: client for %s: %w", target, err)
	}
	return cc, nil
}
