package delivery_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"
	queuev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/queue/v1"
	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"

	"github.com/petrel-mail/petrel/platform/testenv"
	"github.com/petrel-mail/petrel/services/delivery"
	"github.com/petrel-mail/petrel/services/delivery/internal/deaddest"
	"github.com/petrel-mail/petrel/services/delivery/internal/destlimit"
	"github.com/petrel-mail/petrel/services/delivery/internal/dnsx"
	"github.com/petrel-mail/petrel/services/delivery/internal/dnsx/dnstest"
	"github.com/petrel-mail/petrel/services/delivery/internal/queue"
	"github.com/petrel-mail/petrel/services/delivery/internal/retry"
	"github.com/petrel-mail/petrel/services/delivery/internal/route"
	"github.com/petrel-mail/petrel/services/delivery/internal/smtpout"
	"github.com/petrel-mail/petrel/services/store/storeclient"
)

// remoteMsg is one message a test MX accepted.
type remoteMsg struct {
	from  string
	rcpts []string
	data  []byte
}

// testMX is a go-smtp server playing a remote MX on a loopback address.
// rcpt decides each RCPT (nil accepts): it gets the address and how many
// times it was offered before.
type testMX struct {
	addr string
	rcpt func(addr string, seen int) error

	// hold keeps each DATA for this long (a slow MX), set before traffic.
	hold time.Duration
	// block, when set before traffic, holds each DATA until it is closed.
	block chan struct{}

	mu              sync.Mutex
	msgs            []remoteMsg
	seen            map[string]int
	mails           int
	inData, maxData int // transactions in DATA now, and at most
}

type testMXSession struct {
	m     *testMX
	from  string
	rcpts []string
}

func (s *testMXSession) Reset()        { s.from, s.rcpts = "", nil }
func (s *testMXSession) Logout() error { return nil }
func (s *testMXSession) Mail(from string, _ *smtp.MailOptions) error {
	s.m.mu.Lock()
	s.m.mails++
	s.m.mu.Unlock()
	s.from = from
	return nil
}

func (s *testMXSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.m.mu.Lock()
	n := s.m.seen[to]
	s.m.seen[to]++
	s.m.mu.Unlock()
	if s.m.rcpt != nil {
		if err := s.m.rcpt(to, n); err != nil {
			return err
		}
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *testMXSession) Data(r io.Reader) error {
	s.m.mu.Lock()
	s.m.inData++
	s.m.maxData = max(s.m.maxData, s.m.inData)
	s.m.mu.Unlock()
	defer func() {
		s.m.mu.Lock()
		s.m.inData--
		s.m.mu.Unlock()
	}()
	if s.m.hold > 0 {
		time.Sleep(s.m.hold) // a slow server, not a synchronisation
	}
	if s.m.block != nil {
		<-s.m.block
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.m.mu.Lock()
	s.m.msgs = append(s.m.msgs, remoteMsg{from: s.from, rcpts: s.rcpts, data: b})
	s.m.mu.Unlock()
	return nil
}

func startTestMX(t *testing.T, ip string, port int, rcpt func(string, int) error) *testMX {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("listen %s:%d: %v", ip, port, err)
	}
	return startTestMXOn(t, ln, rcpt)
}

func startTestMXOn(t *testing.T, ln net.Listener, rcpt func(string, int) error) *testMX {
	t.Helper()
	m := &testMX{rcpt: rcpt, seen: map[string]int{}}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &testMXSession{m: m}, nil
	}))
	srv.Domain = "mx.remote.test"
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	m.addr = ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return m
}

func (m *testMX) messages() []remoteMsg {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]remoteMsg(nil), m.msgs...)
}

// smtpSink runs Postfix's smtp-sink on ip:port, dumping every message
// into a file of its own in dir.
type smtpSink struct {
	dir string
}

func startSmtpSink(t *testing.T, ip string, port int, flags ...string) *smtpSink {
	t.Helper()
	bin := "/usr/sbin/smtp-sink"
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("smtp-sink (Debian package postfix) is required: %v", err)
	}
	// smtp-sink drops root privileges to -u's user, which must be able
	// to reach and write the dump directory: t.TempDir's parent is 0700.
	dir, err := os.MkdirTemp("", "smtp-sink-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(ip, strconv.Itoa(port))
	args := append(flags, "-d", filepath.Join(dir, "%Y%m%d%H%M%S."), addr, "64")
	if os.Geteuid() == 0 {
		args = append([]string{"-u", "nobody"}, args...)
	}
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start smtp-sink: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return &smtpSink{dir: dir}
		}
		select {
		case <-exited:
			t.Fatalf("smtp-sink exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("smtp-sink does not listen on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dumps returns the messages smtp-sink received (envelope as X- header
// fields, then the message).
func (s *smtpSink) dumps(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(s.dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		// A dump is complete once it holds the end of the message.
		if bytes.Contains(b, []byte("\n\n")) || bytes.Contains(b, []byte("\r\n\r\n")) {
			out = append(out, string(b))
		}
	}
	return out
}

// commonPort is a TCP port free on every given loopback address: remote
// MXes share one port as MXes in production share 25.
func commonPort(t *testing.T, ips ...string) int {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", ips[0]+":0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		ok := true
		for _, ip := range ips[1:] {
			l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return port
		}
	}
	t.Fatal("no port free on every address")
	return 0
}

// outboundWorld is the remote side of a test: a DNS server on loopback and
// the Outbound and Bouncer that use it.
type outboundWorld struct {
	dns    *dnstest.Server
	port   int
	remote *delivery.Remote
	dsn    *delivery.DSNQueuer
}

func (e *env) outbound(t *testing.T, ips ...string) *outboundWorld {
	t.Helper()
	w := &outboundWorld{dns: dnstest.Start(t), port: commonPort(t, ips...)}
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(tWriter{t}, nil))
	}
	tr, err := smtpout.New(smtpout.Options{EHLOName: "petrel.test", Logger: log, CommandTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	w.remote = &delivery.Remote{
		Router:    &route.Router{Resolver: &dnsx.Client{Server: w.dns.Addr}, Port: w.port, Logger: log},
		Transport: tr,
		Blobs:     e.blobs,
		Keys:      &delivery.StoreKeys{Client: storev1.NewDKIMServiceClient(e.service.Conn)},
		Logger:    log,
	}
	w.dsn = &delivery.DSNQueuer{JS: e.js, NATS: e.nopts, Blobs: e.blobs, ReportingMTA: "petrel.test", Logger: log}
	return w
}

// replica is another delivery replica's Remote in this world: the same
// router, blobs and keys, its own transport with o (EHLO name and a
// silent logger filled in).
func (w *outboundWorld) replica(t *testing.T, o smtpout.Options) *delivery.Remote {
	t.Helper()
	o.EHLOName = "petrel.test"
	o.Logger = slog.New(slog.DiscardHandler)
	tr, err := smtpout.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	r := *w.remote
	r.Transport = tr
	return &r
}

// fastSchedule retries within tens of milliseconds.
func fastSchedule(lifetime, warn time.Duration) retry.Schedule {
	s := retry.Default()
	s.Floor, s.Ceiling, s.Lifetime, s.DelayWarning = 50*time.Millisecond, 200*time.Millisecond, lifetime, warn
	return s
}

// messageBody reads message uid of addr's INBOX through the store.
func (e *env) messageBody(addr string, uid uint32) string {
	e.t.Helper()
	ctx := testCtx(e.t)
	auth, err := e.operator.Directory.Authenticate(ctx, &storev1.AuthenticateRequest{Username: addr, Password: e.password, Service: "imap", RemoteIp: "127.0.0.1"})
	if err != nil {
		e.t.Fatalf("authenticate %s: %v", addr, err)
	}
	ctx = storeclient.WithToken(ctx, auth.GetSessionToken())
	if _, err := e.operator.Mailboxes.SelectMailbox(ctx, &storev1.SelectMailboxRequest{Name: "INBOX"}); err != nil {
		e.t.Fatalf("select INBOX of %s: %v", addr, err)
	}
	st, err := e.operator.Messages.GetBody(ctx, &storev1.GetBodyRequest{Mailbox: "INBOX", Uid: uid, Whole: true})
	if err != nil {
		e.t.Fatalf("body of %s/%d: %v", addr, uid, err)
	}
	var b strings.Builder
	for {
		resp, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return b.String()
		}
		if err != nil {
			e.t.Fatalf("body of %s/%d: %v", addr, uid, err)
		}
		b.Write(resp.GetChunk())
	}
}

// mustContain checks that s holds every one of subs.
func mustContain(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s does not contain %q:\n%s", what, sub, s)
		}
	}
}

// TestRemoteMultiDomain: one entry for two recipients at a.test (go-smtp
// MX), one at b.test (Postfix's smtp-sink as MX) and one local account.
// Each domain gets one transaction carrying all its recipients, the local
// one gets its copy, and the entry is done.
func TestRemoteMultiDomain(t *testing.T) {
	e := newEnv(t)
	w := e.outbound(t, "127.0.0.2", "127.0.0.3")
	w.dns.Add(t,
		"a.test. 300 IN MX 10 mx.a.test.",
		"mx.a.test. 300 IN A 127.0.0.2",
		"b.test. 300 IN MX 5 mx.b.test.",
		"mx.b.test. 300 IN A 127.0.0.3",
	)
	mxA := startTestMX(t, "127.0.0.2", w.port, nil)
	sink := startSmtpSink(t, "127.0.0.3", w.port)

	alice, bob := e.account("alice"), e.account("bob")
	en := e.entry("QMULTI", alice, "x1@a.test", bob, "y@b.test", "x2@a.test")
	e.publish(e.js, en, en.GetQueueId())
	e.runConsumer(consumerOpts{outbound: w.remote, bouncer: w.dsn})

	waitFor(t, "the entry to be acknowledged", func() bool { return streamMsgs(t, e.js, e.nopts.QueueStream()) == 0 })
	msgs := mxA.messages()
	if len(msgs) != 1 {
		t.Fatalf("a.test MX received %d messages, want 1", len(msgs))
	}
	if got := strings.Join(msgs[0].rcpts, ","); got != "x1@a.test,x2@a.test" || msgs[0].from != alice {
		t.Errorf("a.test transaction: from %q to %q", msgs[0].from, got)
	}
	mustContain(t, "message at a.test", string(msgs[0].data), "Subject: QMULTI", "\r\n\r\nHello.\r\n")
	var dumps []string
	waitFor(t, "smtp-sink's dump", func() bool { dumps = sink.dumps(t); return len(dumps) == 1 })
	mustContain(t, "smtp-sink dump", dumps[0], "X-Mail-Args: <"+alice+">", "X-Rcpt-Args: <y@b.test>", "Subject: QMULTI")
	if n := e.inbox(bob); n != 1 {
		t.Errorf("INBOX of %s holds %d messages, want 1", bob, n)
	}
	if n := e.inbox(alice); n != 0 {
		t.Errorf("the sender got %d messages (a DSN?), want none", n)
	}
	if streamMsgs(t, e.js, deferredStream(e)) != 0 {
		t.Errorf("something was deferred")
	}
}

// TestRemoteTemporaryThenDelivered: the MX answers 451 to the first RCPT;
// the recipient is deferred with that reply recorded, tried again after the
// backoff, and delivered once.
func TestRemoteTemporaryThenDelivered(t *testing.T) {
	e := newEnv(t)
	w := e.outbound(t, "127.0.0.2")
	w.dns.Add(t, "c.test. 300 IN MX 10 mx.c.test.", "mx.c.test. 300 IN A 127.0.0.2")
	mx := startTestMX(t, "127.0.0.2", w.port, func(_ string, seen int) error {
		if seen == 0 {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
		}
		return nil
	})
	alice := e.account("alice")
	en := e.entry("QTEMP", alice, "z@c.test")
	e.publish(e.js, en, en.GetQueueId())

	var mu sync.Mutex
	var replies []string
	e.runConsumer(consumerOpts{outbound: w.remote, bouncer: w.dsn, schedule: fastSchedule(time.Hour, 0),
		wrap: recordReplies(&mu, &replies)})
	waitFor(t, "delivery on the second attempt", func() bool { return len(mx.messages()) == 1 })
	waitFor(t, "both streams to be empty", func() bool {
		return streamMsgs(t, e.js, e.nopts.QueueStream()) == 0 && streamMsgs(t, e.js, deferredStream(e)) == 0
	})
	mu.Lock()
	got := strings.Join(replies, " | ")
	mu.Unlock()
	if len(replies) != 2 || !strings.HasPrefix(replies[0], "deferred 451 4.3.0 try again later") || !strings.HasPrefix(replies[1], "delivered 250 ") {
		t.Errorf("attempt replies = %s; want a 451 then a 250", got)
	}
	if n := len(mx.messages()); n != 1 {
		t.Errorf("MX received %d copies, want 1", n)
	}
	if n := e.inbox(alice); n != 0 {
		t.Errorf("sender got %d messages, want none (no delay warning configured)", n)
	}
}

// TestRemoteBounce: a 550 5.1.1 from the MX bounces the recipient; the
// DSN is queued as a new entry from the null sender and delivered to the
// local sender's INBOX, an RFC 3464 report naming the recipient, the
// remote MTA and its reply, and returning the message; the recipient that
// the MX accepted is not in it. The DSN itself causes no further DSN.
func TestRemoteBounce(t *testing.T) {
	e := newEnv(t)
	w := e.outbound(t, "127.0.0.2")
	w.dns.Add(t, "d.test. 300 IN MX 10 mx.d.test.", "mx.d.test. 300 IN A 127.0.0.2")
	mx := startTestMX(t, "127.0.0.2", w.port, func(addr string, _ int) error {
		if addr == "nobody@d.test" {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user here"}
		}
		return nil
	})
	alice := e.account("alice")
	en := e.entry("QBOUNCE", alice, "nobody@d.test", "somebody@d.test")
	en.DsnEnvid = "ENV-42"
	en.Recipients[0].OrcptType, en.Recipients[0].Orcpt = "rfc822", "Nobody@d.test"
	e.publish(e.js, en, en.GetQueueId())
	e.runConsumer(consumerOpts{outbound: w.remote, bouncer: w.dsn})

	waitFor(t, "the DSN in the sender's INBOX", func() bool { return e.inbox(alice) == 1 })
	waitFor(t, "every entry to be done", func() bool { return streamMsgs(t, e.js, e.nopts.QueueStream()) == 0 })
	if n := len(mx.messages()); n != 1 {
		t.Fatalf("MX received %d messages, want 1", n)
	}
	body := e.messageBody(alice, 1)
	mustContain(t, "DSN", body,
		"From: Mail Delivery System <MAILER-DAEMON@petrel.test>",
		"To: <"+alice+">",
		"Subject: Undelivered Mail Returned to Sender",
		"Content-Type: multipart/report; report-type=delivery-status;",
		"Content-Type: message/delivery-status",
		"Reporting-MTA: dns; petrel.test",
		"Original-Envelope-Id: ENV-42",
		"Final-Recipient: rfc822; nobody@d.test",
		"Original-Recipient: rfc822; Nobody@d.test",
		"Action: failed",
		"Status: 5.1.1",
		"Remote-MTA: dns; mx.d.test",
		"Diagnostic-Code: smtp; 550 5.1.1 no such user here",
		"Content-Type: message/rfc822",
		"Subject: QBOUNCE",
	)
	if strings.Contains(body, "Final-Recipient: rfc822; somebody@d.test") {
		t.Errorf("the DSN reports the delivered recipient:\n%s", body)
	}
	// The Return-Path: of a DSN is the null sender; nothing bounced back.
	if n := e.inbox(alice); n != 1 {
		t.Errorf("sender INBOX holds %d messages, want 1", n)
	}
}

// TestExpiryBounce: an MX that always answers 451 is retried until the
// queue lifetime ends; the sender gets one delay warning while it is
// retried, then a bounce saying the delivery time expired with the last
// reply.
func TestExpiryBounce(t *testing.T) {
	e := newEnv(t)
	w := e.outbound(t, "127.0.0.2")
	w.dns.Add(t, "f.test. 300 IN MX 10 mx.f.test.", "mx.f.test. 300 IN A 127.0.0.2")
	startTestMX(t, "127.0.0.2", w.port, func(string, int) error {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "mailbox busy"}
	})
	alice := e.account("alice")
	en := e.entry("QEXPIRE", alice, "late@f.test")
	e.publish(e.js, en, en.GetQueueId())
	e.runConsumer(consumerOpts{outbound: w.remote, bouncer: w.dsn, schedule: fastSchedule(3*time.Second, 300*time.Millisecond)})

	waitFor(t, "a delay warning and a bounce", func() bool { return e.inbox(alice) == 2 })
	waitFor(t, "every entry to be done", func() bool {
		return streamMsgs(t, e.js, e.nopts.QueueStream()) == 0 && streamMsgs(t, e.js, deferredStream(e)) == 0
	})
	warning, bounce := e.messageBody(alice, 1), e.messageBody(alice, 2)
	mustContain(t, "delay warning", warning,
		"Subject: Delayed Mail (still being retried)",
		"Action: delayed", "Status: 4.2.1", "Will-Retry-Until: ",
		"Diagnostic-Code: smtp; 451 4.2.1 mailbox busy",
		"Content-Type: text/rfc822-headers")
	mustContain(t, "bounce", bounce,
		"Subject: Undelivered Mail Returned to Sender",
		"Final-Recipient: rfc822; late@f.test",
		"Action: failed", "Status: 5.4.7",
		"Remote-MTA: dns; mx.f.test",
		"giving up after 3s in the queue; last reply: 451 4.2.1 mailbox busy")
	if n := e.inbox(alice); n != 2 {
		t.Errorf("sender INBOX holds %d messages, want exactly 2", n)
	}
}

// TestNoBounceForNullSender: a DSN that cannot be delivered is dropped,
// never bounced (no loop).
func TestNoBounceForNullSender(t *testing.T) {
	e := newEnv(t)
	w := e.outbound(t, "127.0.0.2")
	w.dns.Add(t, "g.test. 300 IN MX 10 mx.g.test.", "mx.g.test. 300 IN A 127.0.0.2")
	mx := startTestMX(t, "127.0.0.2", w.port, func(string, int) error {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	})
	en := e.entry("QNULL", "", "gone@g.test")
	e.publish(e.js, en, en.GetQueueId())
	e.runConsumer(consumerOpts{outbound: w.remote, bouncer: w.dsn})
	waitFor(t, "the entry to be done", func() bool { return streamMsgs(t, e.js, e.nopts.QueueStream()) == 0 })
	mx.mu.Lock()
	tried := mx.seen["gone@g.test"]
	mx.mu.Unlock()
	if tried != 1 {
		t.Errorf("recipient offered %d times, want 1", tried)
	}
}

func deferredStream(e *env) string { return queue.DeferredStream(e.nopts) }

// recordReplies wraps the attempter to record "outcome reply" of every
// result.
func recordReplies(mu *sync.Mutex, out *[]string) func(a queue.Attempter) queue.Attempter {
	return func(a queue.Attempter) queue.Attempter {
		return attempterFunc(func(ctx context.Context, entry *queuev1.QueueEntry, pending []int) (queue.Attempt, error) {
			att, err := a.Attempt(ctx, entry, pending)
			mu.Lock()
			for _, r := range att.Results {
				*out = append(*out, fmt.Sprintf("%s %s", r.Outcome, r.Reply))
			}
			mu.Unlock()
			return att, err
		})
	}
}

// TestDKIMSigned: keys generated through the store's admin API (RSA and
// Ed25519), the TXT record the API shows published on the loopback DNS
// server; outbound mail from the domain carries a signature that
// go-msgauth verifies against that record, made with the newest key.
// Only the delivery service may read private keys.
func TestDKIMSigned(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	w := e.outbound(t, "127.0.0.2")
	w.dns.Add(t, "h.test. 300 IN MX 10 mx.h.test.", "mx.h.test. 300 IN A 127.0.0.2")
	mx := startTestMX(t, "127.0.0.2", w.port, nil)

	if _, err := storev1.NewDKIMServiceClient(e.operator.Conn).GetSigningKey(ctx, &storev1.GetSigningKeyRequest{Domain: e.domain}); !errors.Is(err, storeclient.ErrPermissionDenied) {
		t.Fatalf("operator reads a private key: %v, want permission denied", err)
	}
	var keys []*storev1.DKIMKey
	for _, k := range []struct {
		sel string
		alg storev1.DKIMAlgorithm
	}{{"old", storev1.DKIMAlgorithm_DKIM_ALGORITHM_ED25519}, {"rsa1", storev1.DKIMAlgorithm_DKIM_ALGORITHM_RSA_2048}} {
		resp, err := e.operator.Admin.GenerateDKIMKey(ctx, &storev1.GenerateDKIMKeyRequest{Domain: e.domain, Selector: k.sel, Algorithm: k.alg})
		if err != nil {
			t.Fatalf("generate %s: %v", k.sel, err)
		}
		keys = append(keys, resp.GetKey())
	}
	list, err := e.operator.Admin.ListDKIMKeys(ctx, &storev1.ListDKIMKeysRequest{Domain: e.domain})
	if err != nil || len(list.GetKeys()) != 2 || list.GetKeys()[0].GetSelector() != "rsa1" || !list.GetKeys()[0].GetActive() || list.GetKeys()[1].GetActive() {
		t.Fatalf("list keys: %v %v (want rsa1 active, then old)", list, err)
	}
	rsaKey := keys[1]
	if rsaKey.GetRecordName() != "rsa1._domainkey."+e.domain || !strings.HasPrefix(rsaKey.GetRecord(), "v=DKIM1; k=rsa; p=") ||
		!strings.HasPrefix(rsaKey.GetZoneText(), `"v=DKIM1; k=rsa; p=`) || !strings.Contains(rsaKey.GetZoneText(), `" "`) {
		t.Fatalf("RSA key record: %v", rsaKey)
	}
	// Publish what the admin API says to publish, as the zone text's
	// character-strings.
	for _, k := range keys {
		var strs []string
		for _, p := range strings.Split(k.GetZoneText(), `" "`) {
			strs = append(strs, strings.Trim(p, `"`))
		}
		w.dns.AddTXT(k.GetRecordName(), strs...)
	}

	alice := e.account("alice")
	en := e.entry("QDKIM", alice, "rcpt@h.test")
	e.publish(e.js, en, en.GetQueueId())
	e.runConsumer(consumerOpts{outbound: w.remote, bouncer: w.dsn})
	waitFor(t, "the signed message at the MX", func() bool { return len(mx.messages()) == 1 })

	resolver := &dnsx.Client{Server: w.dns.Addr}
	verifs, err := dkim.VerifyWithOptions(bytes.NewReader(mx.messages()[0].data), &dkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) { return resolver.LookupTXT(context.Background(), name) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(verifs) != 1 {
		t.Fatalf("%d signatures, want 1", len(verifs))
	}
	v := verifs[0]
	if v.Err != nil || v.Domain != e.domain {
		t.Fatalf("signature of %q: %v", v.Domain, v.Err)
	}
	mustContain(t, "signed message", string(mx.messages()[0].data), "s=rsa1;")

	if _, err := e.operator.Admin.DeleteDKIMKey(ctx, &storev1.DeleteDKIMKeyRequest{Domain: e.domain, Selector: "rsa1"}); err != nil {
		t.Fatal(err)
	}
	got, err := storev1.NewDKIMServiceClient(e.service.Conn).GetSigningKey(ctx, &storev1.GetSigningKeyRequest{Domain: strings.ToUpper(e.domain)})
	if err != nil || got.GetSelector() != "old" || got.GetAlgorithm() != storev1.DKIMAlgorithm_DKIM_ALGORITHM_ED25519 || !bytes.HasPrefix(got.GetPrivateKeyPem(), []byte("-----BEGIN PRIVATE KEY-----")) {
		t.Fatalf("signing key after deleting rsa1: selector %q, %v", got.GetSelector(), err)
	}
	if _, err := storev1.NewDKIMServiceClient(e.service.Conn).GetSigningKey(ctx, &storev1.GetSigningKeyRequest{Domain: "unknown.test"}); !errors.Is(err, storeclient.ErrNotFound) {
		t.Fatalf("key of an unknown domain: %v, want not found", err)
	}
}

// TestEightBitDowngradeSigned: an 8-bit message from a domain with a DKIM
// key goes to two domains in one attempt: a go-smtp MX (8BITMIME) gets the
// original bytes, Postfix's smtp-sink without 8BITMIME (-8) gets them
// converted to 7-bit MIME, and each copy carries a signature that
// go-msgauth verifies against the published key: the converted copy is
// signed after the conversion.
func TestEightBitDowngradeSigned(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	w := e.outbound(t, "127.0.0.2", "127.0.0.3")
	w.dns.Add(t, "a.test. 300 IN MX 10 mx.a.test.", "mx.a.test. 300 IN A 127.0.0.2",
		"old.test. 300 IN MX 10 mx.old.test.", "mx.old.test. 300 IN A 127.0.0.3")
	modern := startTestMX(t, "127.0.0.2", w.port, nil)
	old := startSmtpSink(t, "127.0.0.3", w.port, "-8")

	key, err := e.operator.Admin.GenerateDKIMKey(ctx, &storev1.GenerateDKIMKeyRequest{Domain: e.domain, Selector: "s1",
		Algorithm: storev1.DKIMAlgorithm_DKIM_ALGORITHM_ED25519})
	if err != nil {
		t.Fatal(err)
	}
	w.dns.AddTXT(key.GetKey().GetRecordName(), key.GetKey().GetRecord())

	alice := e.account("alice")
	const body = "Content-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n" +
		"--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\xff\xfe\x01\r\n--b1--\r\n"
	en := e.entryOf("Q8BIT", alice, "From: <"+alice+">\r\nSubject: 8bit\r\nMIME-Version: 1.0\r\n"+body, "x@a.test", "y@old.test")
	en.Body = queuev1.Body_BODY_8BITMIME
	e.publish(e.js, en, en.GetQueueId())
	e.runConsumer(consumerOpts{outbound: w.remote, bouncer: w.dsn})

	waitFor(t, "the entry to be acknowledged", func() bool { return streamMsgs(t, e.js, e.nopts.QueueStream()) == 0 })
	var dumps []string
	waitFor(t, "smtp-sink's dump", func() bool { dumps = old.dumps(t); return len(dumps) == 1 })
	if len(modern.messages()) != 1 {
		t.Fatalf("8BITMIME MX got %d messages", len(modern.messages()))
	}
	resolver := &dnsx.Client{Server: w.dns.Addr}
	verify := func(what string, msg []byte) {
		t.Helper()
		verifs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), &dkim.VerifyOptions{
			LookupTXT: func(name string) ([]string, error) { return resolver.LookupTXT(context.Background(), name) },
		})
		if err != nil || len(verifs) != 1 || verifs[0].Err != nil || verifs[0].Domain != e.domain {
			t.Fatalf("%s: signatures %+v, %v\n%s", what, verifs, err, msg)
		}
	}
	sent := modern.messages()[0].data
	verify("message to the 8BITMIME MX", sent)
	mustContain(t, "message to the 8BITMIME MX", string(sent), body)

	// smtp-sink's dump: its X- envelope fields, then the message with LF
	// line ends.
	dump := strings.ReplaceAll(dumps[0], "\n", "\r\n")
	mustContain(t, "smtp-sink dump", dump, "X-Mail-Args: <"+alice+">",
		"Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe\r\n--b1\r\n",
		"Content-Transfer-Encoding: base64\r\n\r\n//4B\r\n--b1--\r\n")
	if strings.Contains(dump, "BODY=8BITMIME") {
		t.Errorf("BODY=8BITMIME sent to a server that does not announce it")
	}
	for _, b := range []byte(dump) {
		if b >= 0x80 {
			t.Fatalf("8-bit byte reached the server without 8BITMIME:\n%s", dump)
		}
	}
	verify("converted message", []byte(dump))
}

// TestDestinationLimitSharedByReplicas: two replicas' transports, each
// allowed one session per destination, share the cluster-wide limit of
// one through NATS: a slow MX never sees two transactions at once, and
// every message arrives. (With the local limits alone it sees two.)
func TestDestinationLimitSharedByReplicas(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	w := e.outbound(t, "127.0.0.2")
	w.dns.Add(t, "slow.test. 300 IN MX 10 mx.slow.test.", "mx.slow.test. 300 IN A 127.0.0.2")
	mx := startTestMX(t, "127.0.0.2", w.port, nil)
	mx.hold = 100 * time.Millisecond

	var replicas []*delivery.Remote
	for i := range 2 {
		limit, err := destlimit.Open(ctx, connectJS(t, testenv.NATSURL(t)), e.nopts, destlimit.Config{Max: 1, TTL: time.Minute, Holder: fmt.Sprintf("replica-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		replicas = append(replicas, w.replica(t, smtpout.Options{MaxConnsPerDestination: 1, MaxIdlePerHost: -1, SharedLimit: limit}))
	}
	alice := e.account("alice")
	var wg sync.WaitGroup
	for i := range 6 {
		en := e.entry(qid("QLIM", i), alice, fmt.Sprintf("r%d@slow.test", i))
		wg.Go(func() {
			res, err := replicas[i%2].Send(ctx, en, []int{0})
			if err != nil || len(res) != 1 || res[0].Outcome != queue.Delivered {
				t.Errorf("send %d: %+v %v", i, res, err)
			}
		})
	}
	wg.Wait()
	if n := len(mx.messages()); n != 6 {
		t.Errorf("MX got %d messages, want 6", n)
	}
	mx.mu.Lock()
	defer mx.mu.Unlock()
	if mx.maxData != 1 {
		t.Errorf("MX saw %d transactions at once with a shared limit of 1", mx.maxData)
	}
}

// countingDialer counts the connections a replica's transport opens.
type countingDialer struct {
	mu sync.Mutex
	n  int
	d  net.Dialer
}

func (c *countingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return c.d.DialContext(ctx, network, addr)
}

func (c *countingDialer) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// TestDeadDestinationSharedByReplicas: once one replica found no host of
// a domain answering, the other defers that domain's mail without
// connecting, with the reason; an operator's retry (Remote.Resume, what
// the admin API's RetryQueueEntry calls) ends the suspension for both,
// and the mail goes out.
func TestDeadDestinationSharedByReplicas(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	w := e.outbound(t, "127.0.0.2")
	w.dns.Add(t, "dead.test. 300 IN MX 10 mx.dead.test.", "mx.dead.test. 300 IN A 127.0.0.2")

	type replica struct {
		remote *delivery.Remote
		dead   *deaddest.Shared
		dialer *countingDialer
	}
	var replicas []replica
	for range 2 {
		dead, err := deaddest.Open(ctx, connectJS(t, testenv.NATSURL(t)), e.nopts, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(dead.Close)
		dialer := &countingDialer{}
		replicas = append(replicas, replica{remote: w.replica(t, smtpout.Options{Dialer: dialer, Suspensions: dead}), dead: dead, dialer: dialer})
	}
	alice := e.account("alice")
	send := func(i int, qid string) queue.Result {
		t.Helper()
		res, err := replicas[i].remote.Send(ctx, e.entry(qid, alice, "bob@dead.test"), []int{0})
		if err != nil || len(res) != 1 {
			t.Fatalf("replica %d: %+v %v", i, res, err)
		}
		return res[0]
	}

	if r := send(0, "QDEAD1"); r.Outcome != queue.Temporary || !strings.Contains(r.Reply, "connection refused") {
		t.Fatalf("replica 0, no MX listening: %+v", r)
	}
	waitFor(t, "replica 1 to see the suspension", func() bool {
		_, _, ok := replicas[1].dead.Suspended("dead.test")
		return ok
	})
	startTestMX(t, "127.0.0.2", w.port, nil) // back, but nobody knows yet
	r := send(1, "QDEAD2")
	if r.Outcome != queue.Temporary || !strings.Contains(r.Reply, "delivery to dead.test temporarily suspended until") ||
		!strings.Contains(r.Reply, "connection refused") {
		t.Errorf("replica 1 while suspended: %+v", r)
	}
	if n := replicas[1].dialer.count(); n != 0 {
		t.Errorf("replica 1 opened %d connections to a suspended destination", n)
	}

	replicas[1].remote.Resume(ctx, []string{"dead.test"})
	waitFor(t, "replica 0 to see the end of the suspension", func() bool {
		_, _, ok := replicas[0].dead.Suspended("dead.test")
		return !ok
	})
	if r := send(0, "QDEAD3"); r.Outcome != queue.Delivered {
		t.Errorf("replica 0 after the retry: %+v", r)
	}
}

// busyListener serves max connections at a time and greets any more with
// 421, as a provider limiting the connections per client IP does, until
// its limit is lifted.
type busyListener struct {
	net.Listener
	max     int
	lifted  atomic.Bool
	active  atomic.Int64
	refused chan struct{} // one event per refused connection
}

func (l *busyListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.active.Add(1) > int64(l.max) && !l.lifted.Load() {
			l.active.Add(-1)
			_, _ = io.WriteString(c, "421 4.7.0 too many connections from your IP\r\n")
			c.Close()
			l.refused <- struct{}{}
			continue
		}
		return &busyConn{Conn: c, l: l}, nil
	}
}

type busyConn struct {
	net.Conn
	l    *busyListener
	once sync.Once
}

func (c *busyConn) Close() error {
	c.once.Do(func() { c.l.active.Add(-1) })
	return c.Conn.Close()
}

// TestBusyDestinationNotSuspended (SMTP-LESSONS 11): a remote MX that
// serves two sessions at a time and greets any more with 421 is busy, not
// dead. Two replicas share a window of four sessions for it: the sessions
// beyond the two it accepts are refused, the window shrinks, and neither
// replica suspends the destination while the accepted sessions run (before
// slow start, the first refusal suspended it for five minutes). Every
// message arrives, the refused ones on their retry.
func TestBusyDestinationNotSuspended(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	w := e.outbound(t, "127.0.0.2")
	w.dns.Add(t, "busy.test. 300 IN MX 10 mx.busy.test.", "mx.busy.test. 300 IN A 127.0.0.2")
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.2", strconv.Itoa(w.port)))
	if err != nil {
		t.Fatal(err)
	}
	busy := &busyListener{Listener: ln, max: 2, refused: make(chan struct{}, 64)}
	mx := startTestMXOn(t, busy, nil)
	block := make(chan struct{})
	mx.block = block

	var replicas []*delivery.Remote
	var deads []*deaddest.Shared
	for i := range 2 {
		js := connectJS(t, testenv.NATSURL(t))
		limit, err := destlimit.Open(ctx, js, e.nopts, destlimit.Config{Max: 4, Initial: 4, TTL: time.Minute, Holder: fmt.Sprintf("replica-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		dead, err := deaddest.Open(ctx, js, e.nopts, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(dead.Close)
		replicas = append(replicas, w.replica(t, smtpout.Options{MaxConnsPerDestination: 4, MaxIdlePerHost: -1, SharedLimit: limit, Suspensions: dead}))
		deads = append(deads, dead)
	}
	alice := e.account("alice")
	send := func(i int, qid string) queue.Result {
		res, err := replicas[i%2].Send(ctx, e.entry(qid, alice, fmt.Sprintf("r%d@busy.test", i)), []int{0})
		if err != nil || len(res) != 1 {
			t.Errorf("send %d: %+v %v", i, res, err)
			return queue.Result{}
		}
		return res[0]
	}

	const n = 8
	results := make([]queue.Result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { results[i] = send(i, qid("QBUSY", i)) })
	}
	// Two sessions are in DATA, held there; let two more be refused.
	// Then the provider lifts its limit (so that no refusal depends on
	// when a finished session's server side closes) and the two end.
	for range 2 {
		<-busy.refused
	}
	busy.lifted.Store(true)
	close(block)
	wg.Wait()

	var retry []int
	for i, r := range results {
		switch {
		case r.Outcome == queue.Delivered:
		case r.Outcome == queue.Temporary && strings.Contains(r.Reply, "421"):
			retry = append(retry, i)
		default:
			t.Errorf("message %d: %+v", i, r)
		}
	}
	if len(retry) < 2 {
		t.Errorf("%d messages refused with 421, want at least the two refused sessions'", len(retry))
	}
	for i, d := range deads {
		if _, _, ok := d.Suspended("busy.test"); ok {
			t.Errorf("replica %d suspended a destination whose host answered", i)
		}
	}
	for _, i := range retry { // the queue's retry, now
		wg.Go(func() {
			if r := send(i, qid("QBUSY", i)); r.Outcome != queue.Delivered {
				t.Errorf("message %d retried: %+v", i, r)
			}
		})
	}
	wg.Wait()
	if got := len(mx.messages()); got != n {
		t.Errorf("MX got %d messages, want %d", got, n)
	}
}
