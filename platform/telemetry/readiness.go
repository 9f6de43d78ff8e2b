package telemetry

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// CheckFunc tells whether one dependency is usable; it must return once ctx
// is done.
type CheckFunc func(ctx context.Context) error

// DrainingCheck is the name reported as failing while the service drains.
const DrainingCheck = "draining"

// DefaultCheckTimeout bounds each readiness check when none is configured.
const DefaultCheckTimeout = 2 * time.Second

// Readiness is the set of checks that decide whether the service should get
// traffic. It is safe for concurrent use.
type Readiness struct {
	timeout  time.Duration
	draining atomic.Bool

	mu     sync.Mutex
	checks []namedCheck
	subs   []func()
}

type namedCheck struct {
	name string
	fn   CheckFunc
}

// NewReadiness returns a Readiness whose checks each get at most timeout
// (DefaultCheckTimeout if zero or less).
func NewReadiness(timeout time.Duration) *Readiness {
	if timeout <= 0 {
		timeout = DefaultCheckTimeout
	}
	return &Readiness{timeout: timeout}
}

// Add registers a check under name, which /readyz reports when it fails.
func (r *Readiness) Add(name string, fn CheckFunc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checks = append(r.checks, namedCheck{name, fn})
}

// SetDraining marks the service as shutting down: from now on it is not
// ready, whatever the checks say. Functions registered with OnChange run so
// that push-style reporters (the gRPC health Watch) learn at once.
func (r *Readiness) SetDraining() {
	if r.draining.Swap(true) {
		return
	}
	r.mu.Lock()
	subs := slices.Clone(r.subs)
	r.mu.Unlock()
	for _, fn := range subs {
		fn()
	}
}

// Draining reports whether SetDraining was called.
func (r *Readiness) Draining() bool { return r.draining.Load() }

// OnChange registers fn to run when the service starts draining.
func (r *Readiness) OnChange(fn func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.subs = append(r.subs, fn)
}

// Failure is one failed check.
type Failure struct {
	Name string
	Err  error
}

// Check runs every check concurrently, each with the timeout, and returns
// the failures in registration order; none means ready.
func (r *Readiness) Check(ctx context.Context) []Failure {
	if r.draining.Load() {
		return []Failure{{Name: DrainingCheck, Err: fmt.Errorf("service is shutting down")}}
	}
	r.mu.Lock()
	checks := slices.Clone(r.checks)
	r.mu.Unlock()

	errs := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, r.timeout)
			defer cancel()
			errs[i] = runCheck(cctx, c.fn)
		})
	}
	wg.Wait()
	var failed []Failure
	for i, err := range errs {
		if err != nil {
			failed = append(failed, Failure{Name: checks[i].name, Err: err})
		}
	}
	return failed
}

// runCheck returns when the check does or when ctx ends, so a check that
// ignores its context cannot hang a probe; a panicking check counts as failed.
func runCheck(ctx context.Context, fn CheckFunc) error {
	done := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Errorf("check panicked: %v", p)
			}
		}()
		done <- fn(ctx)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("check timed out: %w", ctx.Err())
	}
}
