package smtpout

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// countingDialer counts the connections a transport opens.
type countingDialer struct {
	n atomic.Int64
	d net.Dialer
}

func (c *countingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c.n.Add(1)
	return c.d.DialContext(ctx, network, addr)
}

// A destination none of whose addresses answers is suspended: its next
// mail is deferred at once, with the reason, without a connection; other
// destinations are not affected.
func TestDeadDestinationSuspended(t *testing.T) {
	e := newEnv(t, "127.0.0.2", "127.0.0.3", "127.0.0.4")
	e.dns.Add(t,
		"dead.example. IN MX 10 mx1.dead.example.",
		"dead.example. IN MX 20 mx2.dead.example.",
		"mx1.dead.example. IN A 127.0.0.2",
		"mx2.dead.example. IN A 127.0.0.3",
		"alive.example. IN MX 10 mx.alive.example.",
		"mx.alive.example. IN A 127.0.0.4",
	)
	alive := startMX(t, "127.0.0.4", e.port, nil)
	dialer := &countingDialer{}
	tr := newTransport(t, func(o *Options) { o.Dialer = dialer })

	res := tr.Deliver(context.Background(), e.route("dead.example"), msg("a@dead.example"))
	if r := res[0]; r.Status != Temporary || !strings.Contains(r.Detail, "connect") {
		t.Fatalf("first attempt: %+v", r)
	}
	if n := dialer.n.Load(); n != 2 {
		t.Fatalf("first attempt dialled %d addresses, want both", n)
	}

	start := time.Now()
	res = tr.Deliver(context.Background(), e.route("dead.example"), msg("b@dead.example", "c@dead.example"))
	for _, r := range res {
		if r.Status != Temporary || r.Enhanced != "4.4.1" || r.Reply != nil ||
			!strings.Contains(r.Detail, "delivery to dead.example temporarily suspended until") ||
			!strings.Contains(r.Detail, "mx2.dead.example[127.0.0.3:") || !strings.Contains(r.Detail, "connection refused") {
			t.Errorf("while suspended: %+v", r)
		}
	}
	if n := dialer.n.Load(); n != 2 {
		t.Errorf("%d connections while suspended, want none", n-2)
	}
	until := suspendedUntil(t, tr, "DEAD.example") // case does not matter
	if d := until.Sub(start); d < 4*time.Minute || d > 5*time.Minute+time.Second {
		t.Errorf("suspended for %s, want the default 5m", d)
	}

	res = tr.Deliver(context.Background(), e.route("alive.example"), msg("d@alive.example"))
	if res[0].Status != Delivered || len(alive.messages()) != 1 {
		t.Errorf("another destination: %+v", res[0])
	}
}

func suspendedUntil(t *testing.T, tr *Transport, dest string) time.Time {
	t.Helper()
	_, until, ok := tr.opts.Suspensions.Suspended(dest)
	if !ok {
		t.Fatalf("%s is not suspended", dest)
	}
	return until
}

// A greeting that refuses the session counts as no answer; a host that
// greets and then refuses the transaction (MAIL 451) is alive.
func TestWhatSuspendsADestination(t *testing.T) {
	e := newEnv(t, "127.0.0.2", "127.0.0.3")
	e.dns.Add(t,
		"busy.example. IN MX 10 mx.busy.example.", "mx.busy.example. IN A 127.0.0.2",
		"greylist.example. IN MX 10 mx.greylist.example.", "mx.greylist.example. IN A 127.0.0.3",
	)
	startRaw(t, "127.0.0.2", e.port, "421 4.3.2 too busy, come back later\r\n")
	greylist := startMX(t, "127.0.0.3", e.port, func(m *mx, _ *smtp.Server) {
		m.mailReply = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "Greylisted"}
	})
	tr := newTransport(t, nil)

	if r := tr.Deliver(context.Background(), e.route("busy.example"), msg("a@busy.example"))[0]; r.Status != Temporary || r.Reply == nil || r.Reply.Code != 421 {
		t.Fatalf("421 greeting: %+v", r)
	}
	suspendedUntil(t, tr, "busy.example")

	for range 2 {
		if r := tr.Deliver(context.Background(), e.route("greylist.example"), msg("a@greylist.example"))[0]; r.Status != Temporary || r.Reply == nil || r.Reply.Code != 451 {
			t.Fatalf("MAIL 451: %+v", r)
		}
	}
	if _, mails := greylist.stats(); mails != 2 {
		t.Errorf("the greylisting MX saw %d MAIL commands, want 2: an answering host must not be suspended", mails)
	}
	if _, _, ok := tr.opts.Suspensions.Suspended("greylist.example"); ok {
		t.Error("greylist.example suspended")
	}
}

// A suspension ends when its time is up, and a session that succeeds
// while one is in force (it began before, or another replica suspended
// the destination meanwhile) ends it at once.
func TestSuspensionEnds(t *testing.T) {
	e := newEnv(t, "127.0.0.2", "127.0.0.3")
	e.dns.Add(t,
		"example.org. IN MX 10 mx1.example.org.", "mx1.example.org. IN A 127.0.0.2",
		"slow.example. IN MX 10 mx.slow.example.", "mx.slow.example. IN A 127.0.0.3",
	)
	tr := newTransport(t, func(o *Options) { o.DeadDestinationTime = 300 * time.Millisecond })

	if r := tr.Deliver(context.Background(), e.route("example.org"), msg("a@example.org"))[0]; r.Status != Temporary {
		t.Fatalf("no MX yet: %+v", r)
	}
	suspendedUntil(t, tr, "example.org")
	startMX(t, "127.0.0.2", e.port, nil)
	// The suspension's end is a time, not an event: wait for it.
	waitFor(t, "the suspension to end", func() bool {
		_, _, ok := tr.opts.Suspensions.Suspended("example.org")
		return !ok
	})
	if r := tr.Deliver(context.Background(), e.route("example.org"), msg("b@example.org"))[0]; r.Status != Delivered {
		t.Fatalf("after the suspension: %+v", r)
	}

	// A session in progress when the destination is suspended (as another
	// replica would) ends the suspension by succeeding.
	block, inData := make(chan struct{}), make(chan struct{}, 1)
	startMX(t, "127.0.0.3", e.port, func(m *mx, _ *smtp.Server) { m.dataBlock, m.inData = block, inData })
	done := make(chan RecipientResult)
	go func() {
		done <- tr.Deliver(context.Background(), e.route("slow.example"), msg("c@slow.example"))[0]
	}()
	<-inData
	if err := tr.opts.Suspensions.Suspend(context.Background(), "slow.example", "test", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	close(block)
	if r := <-done; r.Status != Delivered {
		t.Fatalf("session in progress: %+v", r)
	}
	if _, _, ok := tr.opts.Suspensions.Suspended("slow.example"); ok {
		t.Error("still suspended after a successful session")
	}
}

// DeadDestinationTime < 0 turns suspensions off: every delivery tries
// every address.
func TestSuspensionsOff(t *testing.T) {
	e := newEnv(t, "127.0.0.2")
	e.dns.Add(t, "example.org. IN MX 10 mx1.example.org.", "mx1.example.org. IN A 127.0.0.2")
	dialer := &countingDialer{}
	tr := newTransport(t, func(o *Options) { o.Dialer, o.DeadDestinationTime = dialer, -1 })
	for range 3 {
		if r := tr.Deliver(context.Background(), e.route("example.org"), msg("a@example.org"))[0]; r.Status != Temporary || !strings.Contains(r.Detail, "connect") {
			t.Fatalf("%+v", r)
		}
	}
	if n := dialer.n.Load(); n != 3 {
		t.Errorf("%d connections, want 3", n)
	}
}

// feedbackLimiter is a SharedLimiter without limits that records the
// feedback it gets and answers "dead" as told.
type feedbackLimiter struct {
	dead   atomic.Bool
	got    chan string
	failed atomic.Bool
}

func (f *feedbackLimiter) Acquire(context.Context, string) (func(), error) { return func() {}, nil }

func (f *feedbackLimiter) Feedback(_ context.Context, dest string, answered bool) (bool, error) {
	if f.failed.Load() {
		return false, errors.New("NATS away")
	}
	f.got <- fmt.Sprintf("%s %v", dest, answered)
	return !answered && f.dead.Load(), nil
}

// With a shared limiter (slow start), a delivery no host answered is
// negative feedback, and the destination is suspended only when the
// limiter finds it dead: a host that refuses the sessions beyond the few
// it accepts must not stop the ones it accepts. An answered delivery is
// positive feedback. When the limiter fails, no answer suspends at once.
func TestSuspensionFollowsSharedFeedback(t *testing.T) {
	e := newEnv(t, "127.0.0.2", "127.0.0.3")
	e.dns.Add(t,
		"busy.example. IN MX 10 mx.busy.example.", "mx.busy.example. IN A 127.0.0.2",
		"ok.example. IN MX 10 mx.ok.example.", "mx.ok.example. IN A 127.0.0.3",
	)
	startRaw(t, "127.0.0.2", e.port, "421 4.7.0 too many connections from your IP\r\n")
	startMX(t, "127.0.0.3", e.port, nil)
	fl := &feedbackLimiter{got: make(chan string, 1)}
	tr := newTransport(t, func(o *Options) { o.SharedLimit = fl })

	if r := tr.Deliver(context.Background(), e.route("busy.example"), msg("a@busy.example"))[0]; r.Status != Temporary || r.Reply == nil || r.Reply.Code != 421 {
		t.Fatalf("421 greeting: %+v", r)
	}
	if got := <-fl.got; got != "busy.example false" {
		t.Fatalf("feedback %q", got)
	}
	if _, _, ok := tr.opts.Suspensions.Suspended("busy.example"); ok {
		t.Fatal("suspended although the shared limiter did not find it dead")
	}
	fl.dead.Store(true)
	tr.Deliver(context.Background(), e.route("busy.example"), msg("b@busy.example"))
	<-fl.got
	suspendedUntil(t, tr, "busy.example")

	if r := tr.Deliver(context.Background(), e.route("ok.example"), msg("c@ok.example"))[0]; r.Status != Delivered {
		t.Fatalf("ok.example: %+v", r)
	}
	if got := <-fl.got; got != "ok.example true" {
		t.Fatalf("feedback %q", got)
	}

	fl.failed.Store(true)
	fl.dead.Store(false)
	if err := tr.opts.Suspensions.Resume(context.Background(), "busy.example"); err != nil {
		t.Fatal(err)
	}
	tr.Deliver(context.Background(), e.route("busy.example"), msg("d@busy.example"))
	suspendedUntil(t, tr, "busy.example")
}
