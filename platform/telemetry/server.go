package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewRegistry returns a Prometheus registry holding the Go runtime and
// process collectors, to which the service adds its own metrics.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// Options configure a Server. The Server keeps a copy.
type Options struct {
	Registry  *prometheus.Registry // required: what /metrics exposes
	Readiness *Readiness           // what /readyz runs; nil means a new one with no checks
	Logger    *slog.Logger
}

// Server is the HTTP server for /metrics, /healthz and /readyz.
type Server struct {
	opts Options
	http *http.Server
}

// NewServer returns a Server; main opens the listener and calls Serve.
func NewServer(opts Options) (*Server, error) {
	if opts.Registry == nil {
		return nil, errors.New("telemetry: Options.Registry is required")
	}
	if opts.Readiness == nil {
		opts.Readiness = NewReadiness(0)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts}
	s.http = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// Readiness is the readiness the server reports.
func (s *Server) Readiness() *Readiness { return s.opts.Readiness }

// Handler serves /metrics, /healthz and /readyz.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.opts.Registry, promhttp.HandlerOpts{
		ErrorLog:          slog.NewLogLogger(s.opts.Logger.Handler(), slog.LevelError),
		Registry:          s.opts.Registry, // counts its own scrape errors
		EnableOpenMetrics: true,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	return mux
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	failed := s.opts.Readiness.Check(r.Context())
	if len(failed) == 0 {
		fmt.Fprintln(w, "ready")
		return
	}
	names := make([]string, len(failed))
	for i, f := range failed {
		names[i] = f.Name
		// The reasons go to the log, not to the response: the port may be
		// reachable by more than the cluster's probes.
		s.opts.Logger.Warn("readiness check failed", "check", f.Name, "err", f.Err)
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	fmt.Fprintf(w, "not ready: %s\n", strings.Join(names, ", "))
}

// Serve serves HTTP on ln until Shutdown; it returns nil after Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	err := s.http.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("telemetry: serve %s: %w", ln.Addr(), err)
}

// Shutdown stops accepting and waits for requests in flight until ctx ends,
// then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	if err != nil {
		s.http.Close()
		return fmt.Errorf("telemetry: shutdown: %w", err)
	}
	return nil
}
