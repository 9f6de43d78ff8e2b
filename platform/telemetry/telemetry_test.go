package telemetry

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// startServer serves on a real loopback listener and shuts down at cleanup.
func startServer(t *testing.T, opts Options) (*Server, string) {
	t.Helper()
	s, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, "http://" + ln.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestEndpoints(t *testing.T) {
	reg := NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "petrel_test_things_total", Help: "things"})
	reg.MustRegister(c)
	c.Add(3)

	ready := NewReadiness(time.Second)
	dbUp := make(chan struct{})
	ready.Add("database", func(ctx context.Context) error {
		select {
		case <-dbUp:
			return nil
		default:
			return errors.New("connection refused")
		}
	})
	ready.Add("queue", func(context.Context) error { return nil })
	_, base := startServer(t, Options{Registry: reg, Readiness: ready})

	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz = %d %q", code, body)
	}
	code, body := get(t, base+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{"petrel_test_things_total 3", "go_goroutines", "process_cpu_seconds_total"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	code, body = get(t, base+"/readyz")
	if code != 503 || body != "not ready: database\n" {
		t.Fatalf("/readyz = %d %q", code, body)
	}
	if strings.Contains(body, "refused") {
		t.Fatal("check error leaked to the response")
	}
	close(dbUp)
	if code, body := get(t, base+"/readyz"); code != 200 || body != "ready\n" {
		t.Fatalf("/readyz = %d %q", code, body)
	}

	notified := make(chan struct{})
	ready.OnChange(func() { close(notified) })
	ready.SetDraining()
	ready.SetDraining() // idempotent: notifies once
	<-notified
	if code, body := get(t, base+"/readyz"); code != 503 || body != "not ready: draining\n" {
		t.Fatalf("/readyz while draining = %d %q", code, body)
	}
	if code, _ := get(t, base+"/healthz"); code != 200 {
		t.Fatalf("/healthz while draining = %d, liveness must not change", code)
	}
}

func TestCheckTimeoutAndPanic(t *testing.T) {
	ready := NewReadiness(20 * time.Millisecond)
	block := make(chan struct{})
	defer close(block)
	ready.Add("ignores-context", func(context.Context) error { <-block; return nil })
	ready.Add("panics", func(context.Context) error { panic("boom") })
	ready.Add("fine", func(context.Context) error { return nil })
	failed := ready.Check(context.Background())
	if len(failed) != 2 || failed[0].Name != "ignores-context" || failed[1].Name != "panics" {
		t.Fatalf("failed = %+v", failed)
	}
	if !errors.Is(failed[0].Err, context.DeadlineExceeded) {
		t.Errorf("timeout error = %v", failed[0].Err)
	}
}

func TestNewServerNeedsRegistry(t *testing.T) {
	if _, err := NewServer(Options{}); err == nil {
		t.Fatal("no error without a registry")
	}
}

// A trace started by a caller continues through a provider with no exporter,
// and with an exporter spans are recorded.
func TestTracerProviderPropagates(t *testing.T) {
	tp, err := NewTracerProvider(TracingOptions{Service: "petrel-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Shutdown(context.Background())

	upstream := sdktrace.NewTracerProvider() // always samples
	ctx, parent := upstream.Tracer("test").Start(context.Background(), "caller")
	carrier := propagation.MapCarrier{}
	Propagator().Inject(ctx, carrier)
	if carrier["traceparent"] == "" {
		t.Fatal("no traceparent injected")
	}

	in := Propagator().Extract(context.Background(), carrier)
	_, span := tp.Tracer("test").Start(in, "callee")
	sc := span.SpanContext()
	if sc.TraceID() != parent.SpanContext().TraceID() || !sc.IsSampled() || sc.SpanID() == parent.SpanContext().SpanID() {
		t.Fatalf("callee span %v does not continue caller %v", sc, parent.SpanContext())
	}
	span.End()

	// A new trace without a parent is not sampled when nothing exports.
	_, root := tp.Tracer("test").Start(context.Background(), "root")
	if root.SpanContext().IsSampled() || !root.SpanContext().IsValid() {
		t.Fatalf("root span %v", root.SpanContext())
	}

	exp := tracetest.NewInMemoryExporter()
	tp2, err := NewTracerProvider(TracingOptions{Service: "petrel-test", Exporter: exp})
	if err != nil {
		t.Fatal(err)
	}
	_, s := tp2.Tracer("test").Start(context.Background(), "recorded", trace.WithSpanKind(trace.SpanKindServer))
	s.End()
	defer tp2.Shutdown(context.Background())
	// ForceFlush, not Shutdown: the in-memory exporter forgets on Shutdown.
	if err := tp2.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans := exp.GetSpans()
	if len(spans) != 1 || spans[0].Name != "recorded" {
		t.Fatalf("spans = %v", spans)
	}
	if v, ok := spans[0].Resource.Set().Value("service.name"); !ok || v.AsString() != "petrel-test" {
		t.Fatalf("service.name = %v", v)
	}
}
