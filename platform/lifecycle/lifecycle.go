// Package lifecycle runs a service's long-lived components and shuts them
// down gracefully: on SIGINT or SIGTERM (what Kubernetes sends before it
// kills a pod) or when the caller's context ends, it marks the service as
// draining, asks every component to stop accepting and finish what it has
// within one grace period, then closes them.
//
// Components are shut down in the reverse of the order given, so a service
// lists its telemetry server first and its protocol listeners last: the
// listeners stop first, and /metrics and /healthz stay up while they drain.
//
// A second signal during the drain is not caught: it kills the process at
// once, which is what an operator pressing Ctrl-C twice wants.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Component is a long-lived part of a service.
type Component interface {
	// Serve runs the component until Shutdown or until ctx ends, which
	// happens only after every Shutdown has returned. It returns nil when
	// it stopped because it was asked to.
	Serve(ctx context.Context) error
	// Shutdown stops accepting new work, waits for work in flight until ctx
	// ends, then forces the rest to stop. After it returns, Serve returns.
	Shutdown(ctx context.Context) error
}

// A Component that also implements io.Closer is closed after every Serve
// has returned, to release what it holds (connection pools, files).

// DefaultGrace is the drain deadline when Options.Grace is zero; Kubernetes
// kills a pod 30s after SIGTERM by default, so the drain must end sooner.
const DefaultGrace = 25 * time.Second

// Options configure Run.
type Options struct {
	Logger *slog.Logger
	// Grace bounds the whole drain: every Shutdown gets a context that ends
	// Grace after shutdown began.
	Grace time.Duration
	// Signals that start a shutdown; default SIGINT and SIGTERM.
	Signals []os.Signal
	// BeforeDrain runs when shutdown begins, before any Shutdown, e.g.
	// telemetry.Readiness.SetDraining so load balancers stop sending work.
	BeforeDrain func()
	// DrainContext makes the context the Shutdowns share; the default is
	// context.WithTimeout(parent, Grace). Tests pass one they cancel.
	DrainContext func(parent context.Context) (context.Context, context.CancelFunc)
}

type result struct {
	i   int
	err error
}

// Run serves components until a signal arrives, ctx ends or a component's
// Serve fails, then shuts them all down. It returns nil after a requested
// shutdown that drained in time, and otherwise every error met, each naming
// its component.
func Run(ctx context.Context, opts Options, components ...Component) error {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Grace <= 0 {
		opts.Grace = DefaultGrace
	}
	if len(opts.Signals) == 0 {
		opts.Signals = []os.Signal{syscall.SIGINT, syscall.SIGTERM}
	}
	if opts.DrainContext == nil {
		opts.DrainContext = func(parent context.Context) (context.Context, context.CancelFunc) {
			return context.WithTimeout(parent, opts.Grace)
		}
	}
	log := opts.Logger

	sigCtx, stopSignals := signal.NotifyContext(ctx, opts.Signals...)
	defer stopSignals()

	serveCtx, cancelServe := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelServe()
	results := make(chan result, len(components))
	for i, c := range components {
		go func() { results <- result{i, c.Serve(serveCtx)} }()
	}
	running := len(components)

	var errs []error
	select {
	case <-sigCtx.Done():
		log.Info("shutting down", "reason", context.Cause(sigCtx).Error(), "grace", opts.Grace)
	case r := <-results:
		running--
		err := r.err
		if err == nil {
			err = errors.New("stopped unexpectedly")
		}
		err = fmt.Errorf("%s: %w", nameOf(components[r.i], r.i), err)
		log.Error("component failed, shutting down", "err", err)
		errs = append(errs, err)
	}
	// From here on a second signal gets its default effect: exit now.
	stopSignals()

	if opts.BeforeDrain != nil {
		opts.BeforeDrain()
	}
	drainCtx, cancelDrain := opts.DrainContext(context.WithoutCancel(ctx))
	defer cancelDrain()
	for i := len(components) - 1; i >= 0; i-- {
		name := nameOf(components[i], i)
		if err := components[i].Shutdown(drainCtx); err != nil {
			errs = append(errs, fmt.Errorf("%s: shutdown: %w", name, err))
			log.Warn("shutdown incomplete", "component", name, "err", err)
		}
	}
	// Every Shutdown has returned: what still runs is told to stop.
	cancelServe()
	for ; running > 0; running-- {
		r := <-results
		if r.err != nil && !errors.Is(r.err, context.Canceled) {
			errs = append(errs, fmt.Errorf("%s: %w", nameOf(components[r.i], r.i), r.err))
		}
	}
	for i := len(components) - 1; i >= 0; i-- {
		if c, ok := components[i].(io.Closer); ok {
			if err := c.Close(); err != nil {
				errs = append(errs, fmt.Errorf("%s: close: %w", nameOf(components[i], i), err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	log.Info("shut down cleanly")
	return nil
}

func nameOf(c Component, i int) string {
	if s, ok := c.(fmt.Stringer); ok {
		return s.String()
	}
	return fmt.Sprintf("component %d", i)
}

// ListenServer is a server in the shape Petrel's servers have: main opens
// the listener, the server gets Serve(ln) and Shutdown(ctx).
type ListenServer interface {
	Serve(ln net.Listener) error
	Shutdown(ctx context.Context) error
}

// Server makes a Component of srv serving on ln, named name in logs and
// errors.
func Server(name string, srv ListenServer, ln net.Listener) Component {
	return &listenComponent{name: name, srv: srv, ln: ln}
}

type listenComponent struct {
	name string
	srv  ListenServer
	ln   net.Listener
}

func (c *listenComponent) String() string { return c.name + " (" + c.ln.Addr().String() + ")" }

func (c *listenComponent) Serve(context.Context) error        { return c.srv.Serve(c.ln) }
func (c *listenComponent) Shutdown(ctx context.Context) error { return c.srv.Shutdown(ctx) }
