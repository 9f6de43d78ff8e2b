package lifecycle

import (
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// recorder keeps the order of events across fake components.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) add(e string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// fake serves until shut down. With blockShutdown its Shutdown waits for
// the drain context to end, like a server whose clients never finish.
type fake struct {
	name          string
	rec           *recorder
	started       chan struct{}
	stop          chan struct{}
	serveErr      chan error // when set, Serve returns what it receives
	blockShutdown bool
	inShutdown    chan struct{}
	once          sync.Once
}

func newFake(name string, rec *recorder) *fake {
	return &fake{name: name, rec: rec, started: make(chan struct{}), stop: make(chan struct{}), inShutdown: make(chan struct{})}
}

func (f *fake) String() string { return f.name }

func (f *fake) Serve(ctx context.Context) error {
	close(f.started)
	select {
	case <-f.stop:
		f.rec.add(f.name + " serve returned")
		return nil
	case err := <-f.serveErr:
		f.rec.add(f.name + " serve failed")
		return err
	}
}

func (f *fake) Shutdown(ctx context.Context) error {
	f.rec.add(f.name + " shutdown")
	close(f.inShutdown)
	defer f.once.Do(func() { close(f.stop) })
	if f.blockShutdown {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (f *fake) Close() error {
	f.rec.add(f.name + " close")
	return nil
}

func TestOrderOnContextEnd(t *testing.T) {
	rec := &recorder{}
	a, b, c := newFake("a", rec), newFake("b", rec), newFake("c", rec)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{BeforeDrain: func() { rec.add("drain") }}, a, b, c)
	}()
	<-a.started
	<-b.started
	<-c.started
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := rec.list()
	// Shutdowns are in reverse order after BeforeDrain; Serve returns may
	// interleave with later Shutdowns, closes come after every Serve.
	var shutdowns, closes []string
	for _, e := range got {
		if strings.HasSuffix(e, " shutdown") || e == "drain" {
			shutdowns = append(shutdowns, e)
		}
		if strings.HasSuffix(e, " close") {
			closes = append(closes, e)
		}
	}
	if want := []string{"drain", "c shutdown", "b shutdown", "a shutdown"}; !slices.Equal(shutdowns, want) {
		t.Fatalf("shutdown order %v, want %v (all: %v)", shutdowns, want, got)
	}
	if want := []string{"c close", "b close", "a close"}; !slices.Equal(got[len(got)-3:], want) || !slices.Equal(closes, want) {
		t.Fatalf("closes not last and reversed: %v", got)
	}
}

func TestSIGTERM(t *testing.T) {
	rec := &recorder{}
	a := newFake("a", rec)
	done := make(chan error, 1)
	go func() { done <- Run(context.Background(), Options{}, a) }()
	// Run installs its signal handler before starting components.
	<-a.started
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := rec.list(); !slices.Contains(got, "a shutdown") || !slices.Contains(got, "a close") {
		t.Fatalf("events %v", got)
	}
}

func TestComponentFailureStopsTheRest(t *testing.T) {
	rec := &recorder{}
	a, b := newFake("a", rec), newFake("b", rec)
	b.serveErr = make(chan error, 1)
	done := make(chan error, 1)
	go func() { done <- Run(context.Background(), Options{}, a, b) }()
	<-a.started
	<-b.started
	b.serveErr <- errors.New("listener broke")
	err := <-done
	if err == nil || !strings.Contains(err.Error(), "b: listener broke") {
		t.Fatalf("err = %v", err)
	}
	if got := rec.list(); !slices.Contains(got, "a shutdown") || !slices.Contains(got, "a close") {
		t.Fatalf("a not stopped: %v", got)
	}
}

func TestDrainDeadlineHonoured(t *testing.T) {
	rec := &recorder{}
	a, b := newFake("a", rec), newFake("b", rec)
	b.blockShutdown = true
	drainCtx, endDrain := context.WithCancel(context.Background())
	var gotParentCancel bool
	opts := Options{DrainContext: func(parent context.Context) (context.Context, context.CancelFunc) {
		gotParentCancel = parent.Done() == nil // the drain must not end with the caller's context
		return drainCtx, func() {}
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, opts, a, b) }()
	<-a.started
	<-b.started
	cancel()
	<-b.inShutdown
	select {
	case err := <-done:
		t.Fatalf("Run returned %v before the drain deadline", err)
	default:
	}
	endDrain()
	err := <-done
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "b: shutdown") {
		t.Fatalf("err = %v", err)
	}
	if !gotParentCancel {
		t.Fatal("drain context derived from the cancelled caller context")
	}
	// a is still shut down and closed after b overran.
	if got := rec.list(); !slices.Contains(got, "a shutdown") || !slices.Contains(got, "a close") {
		t.Fatalf("events %v", got)
	}
}

func TestServerAdapterAndAddrFile(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &httpServer{Server: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {})}}
	c := Server("http", srv, ln)
	if got := c.(interface{ String() string }).String(); got != "http ("+ln.Addr().String()+")" {
		t.Fatalf("name %q", got)
	}
	path := filepath.Join(t.TempDir(), "addrs.json")
	if err := WriteAddrFile(path, map[string]string{"http": ln.Addr().String()}); err != nil {
		t.Fatal(err)
	}
	addrs, err := ReadAddrFile(path)
	if err != nil || addrs["http"] != ln.Addr().String() {
		t.Fatalf("addrs %v, %v", addrs, err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, Options{}, c) }()
	resp, err := http.Get("http://" + addrs["http"])
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

type httpServer struct{ *http.Server }

func (s *httpServer) Serve(ln net.Listener) error {
	if err := s.Server.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
