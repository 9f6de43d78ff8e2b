package grpcx

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/petrel-mail/petrel/platform/telemetry"
)

// testService is a hand-written service (no generated code needed) whose
// methods exercise what the interceptors handle.
const testServiceName = "petrel.test.v1.Test"

var testDesc = grpc.ServiceDesc{
	ServiceName: testServiceName,
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Echo", Handler: unaryHandler(func(ctx context.Context, in *wrapperspb.StringValue) (any, error) {
			return in, nil
		})},
		{MethodName: "Panic", Handler: unaryHandler(func(ctx context.Context, in *wrapperspb.StringValue) (any, error) {
			panic("secret detail " + in.GetValue())
		})},
		{MethodName: "Deadline", Handler: unaryHandler(func(ctx context.Context, _ *wrapperspb.StringValue) (any, error) {
			dl, ok := ctx.Deadline()
			if !ok {
				return nil, status.Error(codes.FailedPrecondition, "no deadline")
			}
			return durationpb.New(time.Until(dl)), nil
		})},
		{MethodName: "TraceID", Handler: unaryHandler(func(ctx context.Context, _ *wrapperspb.StringValue) (any, error) {
			return wrapperspb.String(trace.SpanContextFromContext(ctx).TraceID().String()), nil
		})},
	},
	Streams: []grpc.StreamDesc{
		{StreamName: "PanicStream", ServerStreams: true, Handler: func(any, grpc.ServerStream) error {
			panic("stream boom")
		}},
		{StreamName: "Block", ServerStreams: true, Handler: func(_ any, ss grpc.ServerStream) error {
			if err := ss.SendMsg(&emptypb.Empty{}); err != nil {
				return err
			}
			<-ss.Context().Done()
			return ss.Context().Err()
		}},
	},
}

func unaryHandler(fn func(context.Context, *wrapperspb.StringValue) (any, error)) grpc.MethodHandler {
	return func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
		in := new(wrapperspb.StringValue)
		if err := dec(in); err != nil {
			return nil, err
		}
		if interceptor == nil {
			return fn(ctx, in)
		}
		method, _ := grpc.Method(ctx) // what generated code hard-codes
		info := &grpc.UnaryServerInfo{Server: srv, FullMethod: method}
		return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
			return fn(ctx, req.(*wrapperspb.StringValue))
		})
	}
}

type fixture struct {
	srv    *Server
	reg    *prometheus.Registry
	ready  *telemetry.Readiness
	cc     *grpc.ClientConn
	served chan error
}

func start(t *testing.T, inProcess bool, sopts ServerOptions, copts ClientOptions) *fixture {
	t.Helper()
	f := &fixture{reg: prometheus.NewRegistry(), ready: telemetry.NewReadiness(time.Second), served: make(chan error, 1)}
	sopts.Registry, sopts.Readiness = f.reg, f.ready
	srv, err := NewServer(sopts)
	if err != nil {
		t.Fatal(err)
	}
	srv.RegisterService(&testDesc, struct{}{})
	f.srv = srv

	var ln net.Listener
	target := ""
	if inProcess {
		l := ListenInProcess()
		ln, target, copts = l, InProcessTarget, l.ClientOptions(copts)
	} else {
		tl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, target = tl, tl.Addr().String()
		copts.Insecure = true
	}
	go func() { f.served <- srv.Serve(ln) }()
	cc, err := Dial(target, copts)
	if err != nil {
		t.Fatal(err)
	}
	f.cc = cc
	t.Cleanup(func() {
		cc.Close()
		srv.Stop()
		if err := <-f.served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return f
}

func (f *fixture) health(t *testing.T, service string) healthgrpc.HealthCheckResponse_ServingStatus {
	t.Helper()
	resp, err := healthgrpc.NewHealthClient(f.cc).Check(context.Background(), &healthgrpc.HealthCheckRequest{Service: service})
	if err != nil {
		t.Fatalf("health check %q: %v", service, err)
	}
	return resp.GetStatus()
}

func TestServeAndHealth(t *testing.T) {
	for _, inProcess := range []bool{false, true} {
		name := map[bool]string{false: "tcp", true: "in-process"}[inProcess]
		t.Run(name, func(t *testing.T) {
			f := start(t, inProcess, ServerOptions{Reflection: true}, ClientOptions{})
			out := new(wrapperspb.StringValue)
			if err := f.cc.Invoke(context.Background(), "/"+testServiceName+"/Echo", wrapperspb.String("hi"), out); err != nil {
				t.Fatal(err)
			}
			if out.GetValue() != "hi" {
				t.Fatalf("echo = %q", out.GetValue())
			}

			if st := f.health(t, ""); st != healthgrpc.HealthCheckResponse_SERVING {
				t.Fatalf("overall = %v", st)
			}
			if st := f.health(t, testServiceName); st != healthgrpc.HealthCheckResponse_SERVING {
				t.Fatalf("%s = %v", testServiceName, st)
			}
			_, err := healthgrpc.NewHealthClient(f.cc).Check(context.Background(), &healthgrpc.HealthCheckRequest{Service: "no.such.Service"})
			if status.Code(err) != codes.NotFound {
				t.Fatalf("unknown service: %v", err)
			}

			// A failing readiness check shows at once in Check.
			up := make(chan struct{})
			f.ready.Add("store", func(context.Context) error {
				select {
				case <-up:
					return nil
				default:
					return errors.New("down")
				}
			})
			if st := f.health(t, ""); st != healthgrpc.HealthCheckResponse_NOT_SERVING {
				t.Fatalf("with failing check = %v", st)
			}
			close(up)
			if st := f.health(t, testServiceName); st != healthgrpc.HealthCheckResponse_SERVING {
				t.Fatalf("after recovery = %v", st)
			}

			// Draining reaches Watch streams without waiting for a poll.
			watch, err := healthgrpc.NewHealthClient(f.cc).Watch(context.Background(), &healthgrpc.HealthCheckRequest{})
			if err != nil {
				t.Fatal(err)
			}
			first, err := watch.Recv()
			if err != nil || first.GetStatus() != healthgrpc.HealthCheckResponse_SERVING {
				t.Fatalf("watch first = %v, %v", first, err)
			}
			f.ready.SetDraining()
			next, err := watch.Recv()
			if err != nil || next.GetStatus() != healthgrpc.HealthCheckResponse_NOT_SERVING {
				t.Fatalf("watch after drain = %v, %v", next, err)
			}
			if st := f.health(t, ""); st != healthgrpc.HealthCheckResponse_NOT_SERVING {
				t.Fatalf("draining = %v", st)
			}

			if got := testutil.ToFloat64(f.srv.metrics.handled.WithLabelValues("/"+testServiceName+"/Echo", "OK")); got != 1 {
				t.Fatalf("handled{Echo,OK} = %v", got)
			}
		})
	}
}

func TestPanicRecoveredAndCounted(t *testing.T) {
	f := start(t, true, ServerOptions{}, ClientOptions{})
	err := f.cc.Invoke(context.Background(), "/"+testServiceName+"/Panic", wrapperspb.String("x"), new(wrapperspb.StringValue))
	if status.Code(err) != codes.Internal {
		t.Fatalf("unary panic: %v", err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Fatalf("panic value leaked to client: %v", err)
	}
	stream, err := f.cc.NewStream(context.Background(), &testDesc.Streams[0], "/"+testServiceName+"/PanicStream")
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if err := stream.RecvMsg(new(emptypb.Empty)); status.Code(err) != codes.Internal {
		t.Fatalf("stream panic: %v", err)
	}
	if f.srv.Panics() != 2 {
		t.Fatalf("Panics() = %d", f.srv.Panics())
	}
	if got := testutil.ToFloat64(f.srv.metrics.panics.WithLabelValues("/" + testServiceName + "/Panic")); got != 1 {
		t.Fatalf("panics{Panic} = %v", got)
	}
	if got := testutil.ToFloat64(f.srv.metrics.handled.WithLabelValues("/"+testServiceName+"/Panic", "Internal")); got != 1 {
		t.Fatalf("handled{Panic,Internal} = %v", got)
	}
	n, err := testutil.GatherAndCount(f.reg, "petrel_grpc_server_panics_total")
	if err != nil || n != 2 {
		t.Fatalf("registry has %d panic series, err %v", n, err)
	}
	// The server still serves after a panic.
	if err := f.cc.Invoke(context.Background(), "/"+testServiceName+"/Echo", wrapperspb.String("ok"), new(wrapperspb.StringValue)); err != nil {
		t.Fatal(err)
	}
}

func TestDefaultDeadline(t *testing.T) {
	creg := prometheus.NewRegistry()
	f := start(t, false, ServerOptions{}, ClientOptions{DefaultTimeout: 3 * time.Second, Registry: creg})
	remaining := func(ctx context.Context) time.Duration {
		out := new(durationpb.Duration)
		if err := f.cc.Invoke(ctx, "/"+testServiceName+"/Deadline", wrapperspb.String(""), out); err != nil {
			t.Fatal(err)
		}
		return out.AsDuration()
	}
	if d := remaining(context.Background()); d <= 0 || d > 3*time.Second {
		t.Fatalf("call without deadline reached the server with %s left, want the 3s default", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if d := remaining(ctx); d <= 3*time.Second {
		t.Fatalf("caller's own deadline was replaced: %s left", d)
	}
	if got := counterSum(t, creg, "petrel_grpc_client_handled_total"); got != 2 {
		t.Fatalf("client handled = %v", got)
	}

	// Negative disables the default.
	cc, err := Dial(f.cc.Target(), ClientOptions{Insecure: true, DefaultTimeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	err = cc.Invoke(context.Background(), "/"+testServiceName+"/Deadline", wrapperspb.String(""), new(durationpb.Duration))
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("with no default the server should see no deadline: %v", err)
	}
}

// counterSum sums every series of a counter family in reg.
func counterSum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func TestShutdownDrainDeadline(t *testing.T) {
	f := start(t, true, ServerOptions{}, ClientOptions{})
	ctx, cancelCall := context.WithCancel(context.Background())
	defer cancelCall()
	stream, err := f.cc.NewStream(ctx, &testDesc.Streams[1], "/"+testServiceName+"/Block")
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	// The first message proves the call is running on the server.
	if err := stream.RecvMsg(new(emptypb.Empty)); err != nil {
		t.Fatal(err)
	}

	drain, endDrain := context.WithCancel(context.Background())
	result := make(chan error, 1)
	go func() { result <- f.srv.Shutdown(drain) }()
	// GracefulStop waits for the blocked call; only the end of the drain
	// context ends it.
	select {
	case err := <-result:
		t.Fatalf("Shutdown returned %v while a call was running", err)
	default:
	}
	endDrain()
	if err := <-result; !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown = %v, want the drain context's error", err)
	}
	if err := stream.RecvMsg(new(emptypb.Empty)); status.Code(err) != codes.Unavailable {
		t.Fatalf("blocked call after forced stop: %v", err)
	}
	if err := <-f.served; err != nil {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
	f.served <- nil // for the cleanup
}

func TestGracefulShutdownWhenIdle(t *testing.T) {
	f := start(t, false, ServerOptions{}, ClientOptions{})
	if err := f.cc.Invoke(context.Background(), "/"+testServiceName+"/Echo", wrapperspb.String("x"), new(wrapperspb.StringValue)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-f.served; err != nil {
		t.Fatal(err)
	}
	f.served <- nil
}

func TestTracePropagates(t *testing.T) {
	serverTP, err := telemetry.NewTracerProvider(telemetry.TracingOptions{Service: "server"})
	if err != nil {
		t.Fatal(err)
	}
	clientTP := sdktrace.NewTracerProvider()
	f := start(t, true,
		ServerOptions{TracerProvider: serverTP, Propagator: telemetry.Propagator()},
		ClientOptions{TracerProvider: clientTP, Propagator: telemetry.Propagator()})
	ctx, span := clientTP.Tracer("test").Start(context.Background(), "caller")
	defer span.End()
	out := new(wrapperspb.StringValue)
	if err := f.cc.Invoke(ctx, "/"+testServiceName+"/TraceID", wrapperspb.String(""), out); err != nil {
		t.Fatal(err)
	}
	if want := span.SpanContext().TraceID().String(); out.GetValue() != want {
		t.Fatalf("server saw trace %s, caller's is %s", out.GetValue(), want)
	}
}

func TestDialRequiresSecurityChoice(t *testing.T) {
	if _, err := Dial("127.0.0.1:1", ClientOptions{}); !errors.Is(err, errNoSecurity) {
		t.Fatalf("err = %v", err)
	}
}

func TestSharedRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	for range 2 {
		if _, err := NewServer(ServerOptions{Registry: reg}); err != nil {
			t.Fatalf("second server on one registry: %v", err)
		}
	}
}

// A Stop that wins the race with Serve's start is an orderly end too.
func TestServeAfterStopReturnsNil(t *testing.T) {
	srv, err := NewServer(ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if err := srv.Serve(ListenInProcess()); err != nil {
		t.Fatalf("Serve after Stop: %v, want nil", err)
	}
}
