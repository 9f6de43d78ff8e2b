package smtpout

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/petrel-mail/petrel/platform/testenv"
	"github.com/petrel-mail/petrel/services/delivery/internal/dnsx"
	"github.com/petrel-mail/petrel/services/delivery/internal/dnsx/dnstest"
	"github.com/petrel-mail/petrel/services/delivery/internal/downgrade"
	"github.com/petrel-mail/petrel/services/delivery/internal/route"
)

const testMessage = "From: a@sender.test\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nline one\n.starts with a dot\r\nbare CR\rend\r\n"

// wantWire is testMessage as it must arrive: every line ending CRLF.
const wantWire = "From: a@sender.test\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nline one\r\n.starts with a dot\r\nbare CR\r\nend\r\n"

type env struct {
	t      *testing.T
	dns    *dnstest.Server
	router *route.Router
	port   int
}

func newEnv(t *testing.T, ips ...string) *env {
	dns := dnstest.Start(t)
	port := testenv.FreePort(t, ips...)
	return &env{t: t, dns: dns, port: port,
		router: &route.Router{Resolver: &dnsx.Client{Server: dns.Addr, Timeout: 2 * time.Second}, Port: port}}
}

func (e *env) route(domain string) route.Route {
	e.t.Helper()
	rt, err := e.router.Route(context.Background(), domain)
	if err != nil {
		e.t.Fatalf("route %s: %v", domain, err)
	}
	return rt
}

func newTransport(t *testing.T, mod func(*Options)) *Transport {
	t.Helper()
	o := Options{EHLOName: "out.petrel.test", CommandTimeout: 5 * time.Second, DataBlockTimeout: 5 * time.Second,
		FinalDotTimeout: 5 * time.Second, DialTimeout: 2 * time.Second,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil))}
	if mod != nil {
		mod(&o)
	}
	tr, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func msg(rcpts ...string) *Message {
	m := &Message{From: "a@sender.test", Open: opener(testMessage), Size: int64(len(testMessage))}
	for _, r := range rcpts {
		m.Recipients = append(m.Recipients, Recipient{Address: r})
	}
	return m
}

func TestMultiRecipientSingleSession(t *testing.T) {
	e := newEnv(t, "127.0.0.2")
	server := startMX(t, "127.0.0.2", e.port, nil)
	e.dns.Add(t, "example.org. IN MX 10 mx1.example.org.", "mx1.example.org. IN A 127.0.0.2")
	tr := newTransport(t, nil)

	res := tr.Deliver(context.Background(), e.route("example.org"), msg("a@example.org", "b@example.org", "c@example.org"))
	for _, r := range res {
		if r.Status != Delivered || r.Reply == nil || r.Reply.Code != 250 || r.RemoteMTA != "mx1.example.org" ||
			r.RemoteAddr != server.Addr || r.Enhanced != "2.0.0" {
			t.Errorf("%s: %+v reply %+v", r.Address, r, r.Reply)
		}
	}
	msgs := server.messages()
	if len(msgs) != 1 {
		t.Fatalf("server got %d messages, want 1", len(msgs))
	}
	if got := strings.Join(msgs[0].Rcpts, ","); got != "a@example.org,b@example.org,c@example.org" {
		t.Errorf("RCPTs = %s", got)
	}
	if string(msgs[0].Data) != wantWire {
		t.Errorf("data = %q\nwant   %q", msgs[0].Data, wantWire)
	}
	if msgs[0].From != "a@sender.test" || msgs[0].Opts.Size != int64(len(testMessage)) {
		t.Errorf("MAIL = %q %+v", msgs[0].From, msgs[0].Opts)
	}
	if conns, _ := server.stats(); conns != 1 {
		t.Errorf("%d connections, want 1", conns)
	}
	if server.ehlo[0] != "out.petrel.test" {
		t.Errorf("EHLO name %q", server.ehlo[0])
	}
}

func TestFallbackToNextMXAndEveryAddress(t *testing.T) {
	// mx1 (best) has two addresses that refuse connections; mx2 has a dead
	// address and a live one. The live one must be reached.
	e := newEnv(t, "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")
	server := startMX(t, "127.0.0.5", e.port, nil)
	e.dns.Add(t,
		"example.org. IN MX 10 mx1.example.org.",
		"example.org. IN MX 20 mx2.example.org.",
		"mx1.example.org. IN A 127.0.0.2",
		"mx1.example.org. IN A 127.0.0.3",
		"mx2.example.org. IN A 127.0.0.4",
		"mx2.example.org. IN A 127.0.0.5",
	)
	tr := newTransport(t, nil)
	rt := e.route("example.org")
	if len(rt.Hosts) != 2 || rt.Hosts[0].Name != "mx1.example.org" {
		t.Fatalf("route %+v", rt)
	}
	res := tr.Deliver(context.Background(), rt, msg("a@example.org"))
	if res[0].Status != Delivered || res[0].RemoteMTA != "mx2.example.org" || res[0].RemoteAddr != server.Addr {
		t.Fatalf("result %+v", res[0])
	}
	if len(server.messages()) != 1 {
		t.Fatal("message not received")
	}
}

func TestImplicitMXDelivery(t *testing.T) {
	e := newEnv(t, "127.0.0.6")
	server := startMX(t, "127.0.0.6", e.port, nil)
	e.dns.Add(t, "nomx.example. IN A 127.0.0.6")
	tr := newTransport(t, nil)
	rt := e.route("nomx.example")
	if !rt.ImplicitMX {
		t.Fatalf("route %+v", rt)
	}
	if res := tr.Deliver(context.Background(), rt, msg("x@nomx.example")); res[0].Status != Delivered {
		t.Fatalf("%+v", res[0])
	}
	if len(server.messages()) != 1 {
		t.Fatal("not received")
	}
}

func TestAllHostsDownIsTemporary(t *testing.T) {
	e := newEnv(t, "127.0.0.2", "127.0.0.3")
	e.dns.Add(t,
		"example.org. IN MX 10 mx1.example.org.",
		"example.org. IN MX 20 mx2.example.org.",
		"mx1.example.org. IN A 127.0.0.2",
		"mx2.example.org. IN A 127.0.0.3",
	)
	tr := newTransport(t, nil)
	res := tr.Deliver(context.Background(), e.route("example.org"), msg("a@example.org", "b@example.org"))
	for _, r := range res {
		if r.Status != Temporary || r.Enhanced != "4.4.1" || r.Reply != nil || r.RemoteMTA != "mx2.example.org" ||
			!strings.Contains(r.Detail, "connect") {
			t.Errorf("%+v", r)
		}
	}
}

func TestMixedRecipientResults(t *testing.T) {
	e := newEnv(t, "127.0.0.2")
	server := startMX(t, "127.0.0.2", e.port, func(m *mx, _ *smtp.Server) {
		m.rcptReply["full@example.org"] = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "Mailbox full, try later"}
		m.rcptReply["nobody@example.org"] = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
		m.rcptReply["noenh@example.org"] = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.NoEnhancedCode, Message: "Go away"}
	})
	e.dns.Add(t, "example.org. IN MX 10 mx1.example.org.", "mx1.example.org. IN A 127.0.0.2")
	tr := newTransport(t, nil)
	res := tr.Deliver(context.Background(), e.route("example.org"),
		msg("full@example.org", "ok@example.org", "nobody@example.org", "noenh@example.org"))

	check := func(r RecipientResult, st Status, code int, enh, text string) {
		t.Helper()
		if r.Status != st || r.Enhanced != enh || r.Reply == nil || r.Reply.Code != code || r.Reply.Text != text {
			t.Errorf("%s: status %v enhanced %s reply %+v; want %v %d %s %q", r.Address, r.Status, r.Enhanced, r.Reply, st, code, enh, text)
		}
	}
	check(res[0], Temporary, 452, "4.2.2", "Mailbox full, try later")
	if res[0].Reply.String() != "452 4.2.2 Mailbox full, try later" {
		t.Errorf("reply string %q", res[0].Reply.String())
	}
	check(res[1], Delivered, 250, "2.0.0", res[1].Reply.Text)
	check(res[2], Permanent, 550, "5.1.1", "No such user here")
	check(res[3], Permanent, 554, "5.0.0", "Go away")

	msgs := server.messages()
	if len(msgs) != 1 || strings.Join(msgs[0].Rcpts, ",") != "ok@example.org" {
		t.Fatalf("server got %+v", msgs)
	}
}

func TestMailFromRejected(t *testing.T) {
	e := newEnv(t, "127.0.0.2", "127.0.0.3")
	// 5xx to MAIL: permanent for this message, no point asking the backup.
	first := startMX(t, "127.0.0.2", e.port, func(m *mx, _ *smtp.Server) {
		m.mailReply = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Sender blocked"}
	})
	backup := startMX(t, "127.0.0.3", e.port, nil)
	e.dns.Add(t,
		"example.org. IN MX 10 mx1.example.org.", "mx1.example.org. IN A 127.0.0.2",
		"example.org. IN MX 20 mx2.example.org.", "mx2.example.org. IN A 127.0.0.3",
	)
	tr := newTransport(t, nil)
	res := tr.Deliver(context.Background(), e.route("example.org"), msg("a@example.org"))
	if res[0].Status != Permanent || res[0].Enhanced != "5.7.1" || res[0].Reply.Text != "Sender blocked" {
		t.Fatalf("%+v %+v", res[0], res[0].Reply)
	}
	if _, mails := backup.stats(); mails != 0 {
		t.Error("backup MX was tried after a 5xx to MAIL")
	}

	// 4xx to MAIL: that host is unhappy, the next one is tried.
	first.mailReply = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Local trouble"}
	res = tr.Deliver(context.Background(), e.route("example.org"), msg("a@example.org"))
	if res[0].Status != Delivered || res[0].RemoteMTA != "mx2.example.org" {
		t.Fatalf("after 451 at MAIL: %+v", res[0])
	}
}

func TestGreeting421TriesNextHost(t *testing.T) {
	e := newEnv(t, "127.0.0.2", "127.0.0.3")
	// A raw listener that greets 421 and hangs up.
	startRaw(t, "127.0.0.2", e.port, "421 4.3.2 Too busy\r\n")
	backup := startMX(t, "127.0.0.3", e.port, nil)
	e.dns.Add(t,
		"example.org. IN MX 10 mx1.example.org.", "mx1.example.org. IN A 127.0.0.2",
		"example.org. IN MX 20 mx2.example.org.", "mx2.example.org. IN A 127.0.0.3",
	)
	tr := newTransport(t, nil)
	res := tr.Deliver(context.Background(), e.route("example.org"), msg("a@example.org"))
	if res[0].Status != Delivered || len(backup.messages()) != 1 {
		t.Fatalf("%+v", res[0])
	}
	// Alone, the 421 greeting defers with the remote's words.
	e.dns.Add(t, "busy.example. IN MX 10 mx1.example.org.")
	res = tr.Deliver(context.Background(), e.route("busy.example"), msg("a@busy.example"))
	if res[0].Status != Temporary || res[0].Reply == nil || res[0].Reply.Code != 421 || res[0].Enhanced != "4.3.2" {
		t.Fatalf("%+v %+v", res[0], res[0].Reply)
	}
}

func TestSTARTTLSOpportunistic(t *testing.T) {
	e := newEnv(t, "127.0.0.2")
	cert, _ := testCert(t, "some-other-name.test")
	server := startMX(t, "127.0.0.2", e.port, func(_ *mx, s *smtp.Server) {
		s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	})
	e.dns.Add(t, "example.org. IN MX 10 mx1.example.org.", "mx1.example.org. IN A 127.0.0.2")
	tr := newTransport(t, nil)
	res := tr.Deliver(context.Background(), e.route("example.org"), msg("a@example.org"))
	if res[0].Status != Delivered || !res[0].TLS {
		t.Fatalf("%+v", res[0])
	}
	msgs := server.messages()
	if len(msgs) != 1 || !msgs[0].TLS || string(msgs[0].Data) != wantWire {
		t.Fatalf("server: %+v", msgs)
	}
}

func TestSTARTTLSFailureFallsBackToPlaintext(t *testing.T) {
	e := newEnv(t, "127.0.0.2")
	server := startMX(t, "127.0.0.2", e.port, func(_ *mx, s *smtp.Server) { s.TLSConfig = brokenTLS() })
	e.dns.Add(t, "example.org. IN MX 10 mx1.example.org.", "mx1.example.org. IN A 127.0.0.2")
	tr := newTransport(t, nil)
	res := tr.Deliver(context.Background(), e.route("example.org"), msg("a@example.org"))
	if res[0].Status != Delivered || res[0].TLS {
		t.Fatalf("%+v", res[0])
	}
	msgs := server.messages()
	if len(msgs) != 1 || msgs[0].TLS {
		t.Fatalf("server: %+v", msgs)
	}
	if conns, _ := server.stats(); conns != 2 {
		t.Errorf("%d connections; want the failed TLS one and the plaintext retry", conns)
	}
}

func TestRequiredTLSRefusesPlaintextPeer(t *testing.T) {
	e := newEnv(t, "127.0.0.2", "127.0.0.3")
	plain := startMX(t, "127.0.0.2", e.port, nil)
	broken := startMX(t, "127.0.0.3", e.port, func(_ *mx, s *smtp.Server) { s.TLSConfig = brokenTLS() })
	e.dns.Add(t,
		"plain.example. IN MX 10 mx.plain.example.", "mx.plain.example. IN A 127.0.0.2",
		"broken.example. IN MX 10 mx.broken.example.", "mx.broken.example. IN A 127.0.0.3",
	)
	tr := newTransport(t, func(o *Options) { o.TLSPolicy = policyFunc(requiredFor("plain.example", "broken.example")) })

	res := tr.Deliver(context.Background(), e.route("plain.example"), msg("a@plain.example"))
	if res[0].Status != Temporary || res[0].Enhanced != "4.7.4" {
		t.Fatalf("plaintext-only peer: %+v", res[0])
	}
	if _, mails := plain.stats(); mails != 0 {
		t.Error("a MAIL FROM went to a plaintext-only peer under a TLS-required policy")
	}

	res = tr.Deliver(context.Background(), e.route("broken.example"), msg("a@broken.example"))
	if res[0].Status != Temporary || res[0].Enhanced != "4.7.5" {
		t.Fatalf("broken TLS: %+v", res[0])
	}
	if conns, mails := broken.stats(); mails != 0 || conns != 1 {
		t.Errorf("broken TLS under required policy: %d conns, %d MAILs; want 1 and no fallback", conns, mails)
	}
}

func TestRequiredTLSVerifiesCertificate(t *testing.T) {
	e := newEnv(t, "127.0.0.2")
	cert, roots := testCert(t, "mx1.example.org")
	server := startMX(t, "127.0.0.2", e.port, func(_ *mx, s *smtp.Server) {
		s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	})
	e.dns.Add(t, "example.org. IN MX 10 mx1.example.org.", "mx1.example.org. IN A 127.0.0.2",
		"wrong.example. IN MX 10 wrongname.example.", "wrongname.example. IN A 127.0.0.2")
	tr := newTransport(t, func(o *Options) {
		o.TLSPolicy = policyFunc(func(_ context.Context, _ string, _ route.Host) (TLSRequirement, error) {
			return TLSRequirement{Mode: TLSRequired, Config: &tls.Config{RootCAs: roots}}, nil
		})
	})
	res := tr.Deliver(context.Background(), e.route("example.org"), msg("a@example.org"))
	if res[0].Status != Delivered || !res[0].TLS {
		t.Fatalf("%+v", res[0])
	}
	// Same server, but the MX name does not match the certificate.
	res = tr.Deliver(context.Background(), e.route("wrong.example"), msg("a@wrong.example"))
	if res[0].Status != Temporary || res[0].Enhanced != "4.7.5" || !strings.Contains(res[0].Detail, "certificate") {
		t.Fatalf("mismatched certificate: %+v", res[0])
	}
	if len(server.messages()) != 1 {
		t.Error("message sent over an unverified session")
	}
}

func TestSMTPUTF8Required(t *testing.T) {
	e := newEnv(t, "127.0.0.2", "127.0.0.3")
	server := startMX(t, "127.0.0.2", e.port, nil) // no SMTPUTF8
	utf8mx := startMX(t, "127.0.0.3", e.port, func(_ *mx, s *smtp.Server) { s.EnableSMTPUTF8 = true })
	e.dns.Add(t, "example.org. IN MX 10 mx1.example.org.", "mx1.example.org. IN A 127.0.0.2",
		"utf8.example. IN MX 10 mx.utf8.example.", "mx.utf8.example. IN A 127.0.0.3")
	tr := newTransport(t, nil)

	res := tr.Deliver(context.Background(), e.route("example.org"), msg("jürgen@example.org", "ascii@example.org"))
	if res[0].Status != Permanent || res[0].Enhanced != "5.6.7" {
		t.Errorf("UTF-8 address to a non-SMTPUTF8 peer: %+v", res[0])
	}
	if res[1].Status != Delivered {
		t.Errorf("ASCII address: %+v", res[1])
	}
	if m := server.messages(); len(m) != 1 || strings.Join(m[0].Rcpts, ",") != "ascii@example.org" || m[0].Opts.UTF8 {
		t.Errorf("server got %+v", m)
	}

	// A message flagged SMTPUTF8 cannot go to that peer at all.
	m := msg("ascii@example.org")
	m.UTF8 = true
	if res := tr.Deliver(context.Background(), e.route("example.org"), m); res[0].Status != Permanent || res[0].Enhanced != "5.6.7" {
		t.Errorf("SMTPUTF8 message: %+v", res[0])
	}

	res = tr.Deliver(context.Background(), e.route("utf8.example"), msg("jürgen@utf8.example"))
	if res[0].Status != Delivered {
		t.Fatalf("to an SMTPUTF8 peer: %+v", res[0])
	}
	if m := utf8mx.messages(); len(m) != 1 || !m[0].Opts.UTF8 || m[0].Rcpts[0] != "jürgen@utf8.example" {
		t.Errorf("SMTPUTF8 peer got %+v", m)
	}
}

func TestEightBitConvertedForPeerWithout8BITMIME(t *testing.T) {
	e := newEnv(t, "127.0.0.2", "127.0.0.3")
	old := startMX(t, "127.0.0.2", e.port, func(m *mx, _ *smtp.Server) { m.no8bit = true })
	modern := startMX(t, "127.0.0.3", e.port, nil)
	e.dns.Add(t, "old.example. IN MX 10 mx.old.example.", "mx.old.example. IN A 127.0.0.2",
		"new.example. IN MX 10 mx.new.example.", "mx.new.example. IN A 127.0.0.3")
	tr := newTransport(t, nil)

	const eight = "Subject: x\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\ncaf\xe9\r\n"
	conversions := 0
	m := func(rcpt string, sevenBit func() (SevenBit, error)) *Message {
		m := msg(rcpt)
		m.EightBit, m.Open, m.Size, m.SevenBit = true, opener(eight), int64(len(eight)), sevenBit
		return m
	}
	convert := func() (SevenBit, error) {
		conversions++
		var b bytes.Buffer
		if err := downgrade.Convert(&b, strings.NewReader(eight)); err != nil {
			return SevenBit{}, err
		}
		return SevenBit{Open: opener(b.String()), Size: int64(b.Len())}, nil
	}

	res := tr.Deliver(context.Background(), e.route("old.example"), m("a@old.example", convert))
	if res[0].Status != Delivered {
		t.Fatalf("to a peer without 8BITMIME: %+v", res[0])
	}
	got := old.messages()
	if len(got) != 1 || got[0].Opts.Body != "" || !strings.Contains(string(got[0].Data), "Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9\r\n") {
		t.Fatalf("peer without 8BITMIME got %+v", got)
	}
	if got[0].Opts.Size != int64(len(got[0].Data)) || got[0].Opts.Size == int64(len(eight)) {
		t.Errorf("SIZE=%d for %d octets sent (the 8-bit original has %d)", got[0].Opts.Size, len(got[0].Data), len(eight))
	}
	for _, b := range got[0].Data {
		if b >= 0x80 {
			t.Fatalf("8-bit byte sent to a peer without 8BITMIME: %q", got[0].Data)
		}
	}

	res = tr.Deliver(context.Background(), e.route("new.example"), m("a@new.example", convert))
	if res[0].Status != Delivered {
		t.Fatalf("to an 8BITMIME peer: %+v", res[0])
	}
	if got := modern.messages(); len(got) != 1 || got[0].Opts.Body != smtp.Body8BitMIME || string(got[0].Data) != eight {
		t.Fatalf("8BITMIME peer got %+v", got)
	}
	if conversions != 1 {
		t.Errorf("converted %d times, want once (only for the peer that needs it)", conversions)
	}

	// A message that cannot be converted fails; a conversion that could
	// succeed later is deferred.
	for _, c := range []struct {
		sevenBit func() (SevenBit, error)
		status   Status
		enhanced string
	}{
		{nil, Permanent, "5.6.3"},
		{func() (SevenBit, error) { return SevenBit{}, fmt.Errorf("x: %w", downgrade.ErrMalformed) }, Permanent, "5.6.3"},
		{func() (SevenBit, error) { return SevenBit{}, errors.New("object store down") }, Temporary, "4.3.0"},
	} {
		res := tr.Deliver(context.Background(), e.route("old.example"), m("b@old.example", c.sevenBit))
		if res[0].Status != c.status || res[0].Enhanced != c.enhanced {
			t.Errorf("got %+v, want %v %s", res[0], c.status, c.enhanced)
		}
	}
	if n := len(old.messages()); n != 1 {
		t.Errorf("peer without 8BITMIME got %d messages, want 1", n)
	}
}

func TestConnectionReuseAndIdleTimeout(t *testing.T) {
	e := newEnv(t, "127.0.0.2")
	server := startMX(t, "127.0.0.2", e.port, nil)
	e.dns.Add(t, "example.org. IN MX 10 mx1.example.org.", "mx1.example.org. IN A 127.0.0.2")
	tr := newTransport(t, func(o *Options) { o.IdleTimeout = 200 * time.Millisecond })
	rt := e.route("example.org")
	for i := range 3 {
		if res := tr.Deliver(context.Background(), rt, msg("a@example.org")); res[0].Status != Delivered {
			t.Fatalf("message %d: %+v", i, res[0])
		}
	}
	if conns, mails := server.stats(); conns != 1 || mails != 3 {
		t.Fatalf("%d connections for %d messages; want 1 for 3", conns, mails)
	}
	if tr.IdleSessions() != 1 {
		t.Fatalf("idle sessions %d", tr.IdleSessions())
	}
	waitFor(t, "idle session to expire", func() bool { return tr.IdleSessions() == 0 })
	waitFor(t, "server to see the session end", func() bool {
		server.mu.Lock()
		defer server.mu.Unlock()
		return server.logouts == 1
	})
	if res := tr.Deliver(context.Background(), rt, msg("a@example.org")); res[0].Status != Delivered {
		t.Fatal(res[0])
	}
	if conns, _ := server.stats(); conns != 2 {
		t.Errorf("%d connections after expiry, want a new one", conns)
	}
}

func TestStalePooledSessionIsReplaced(t *testing.T) {
	e := newEnv(t, "127.0.0.2")
	server := startMX(t, "127.0.0.2", e.port, nil)
	e.dns.Add(t, "example.org. IN MX 10 mx1.example.org.", "mx1.example.org. IN A 127.0.0.2")
	tr := newTransport(t, nil)
	rt := e.route("example.org")
	if res := tr.Deliver(context.Background(), rt, msg("a@example.org")); res[0].Status != Delivered {
		t.Fatal(res[0])
	}
	// The remote drops the idle connection behind our back.
	tr.pool.mu.Lock()
	for _, l := range tr.pool.idle {
		l[0].conn.Close()
	}
	tr.pool.mu.Unlock()
	if res := tr.Deliver(context.Background(), rt, msg("a@example.org")); res[0].Status != Delivered {
		t.Fatalf("after stale session: %+v", res[0])
	}
	if len(server.messages()) != 2 {
		t.Fatal("second message lost")
	}
}

func TestPerDestinationConcurrencyLimit(t *testing.T) {
	e := newEnv(t, "127.0.0.2")
	release := make(chan struct{})
	inData := make(chan struct{}, 2)
	server := startMX(t, "127.0.0.2", e.port, func(m *mx, _ *smtp.Server) {
		m.dataBlock = release
		m.inData = inData
	})
	e.dns.Add(t, "example.org. IN MX 10 mx1.example.org.", "mx1.example.org. IN A 127.0.0.2")
	tr := newTransport(t, func(o *Options) { o.MaxConnsPerDestination = 1; o.MaxIdlePerHost = -1 })
	rt := e.route("example.org")

	done := make(chan []RecipientResult, 2)
	for range 2 {
		go func() { done <- tr.Deliver(context.Background(), rt, msg("a@example.org")) }()
	}
	<-inData
	// The second delivery waits for the slot, not for the server.
	waitFor(t, "second delivery to queue for the destination", func() bool {
		tr.limit.mu.Lock()
		defer tr.limit.mu.Unlock()
		return tr.limit.dest["example.org"] != nil && tr.limit.dest["example.org"].users == 2
	})
	close(release)
	for range 2 {
		if res := <-done; res[0].Status != Delivered {
			t.Fatal(res[0])
		}
	}
	server.mu.Lock()
	defer server.mu.Unlock()
	if server.max != 1 || server.conns != 2 {
		t.Errorf("max concurrent transactions %d over %d connections; want 1 over 2", server.max, server.conns)
	}
	tr.limit.mu.Lock()
	defer tr.limit.mu.Unlock()
	if len(tr.limit.dest) != 0 {
		t.Errorf("limiter kept %d idle entries", len(tr.limit.dest))
	}
}

func TestBodyReadErrorNeverSendsFinalDot(t *testing.T) {
	e := newEnv(t, "127.0.0.2")
	server := startMX(t, "127.0.0.2", e.port, nil)
	e.dns.Add(t, "example.org. IN MX 10 mx1.example.org.", "mx1.example.org. IN A 127.0.0.2")
	tr := newTransport(t, nil)
	m := msg("a@example.org")
	m.Open = func() (io.ReadCloser, error) {
		return io.NopCloser(io.MultiReader(strings.NewReader("Subject: x\r\n\r\npartial"), errReaderOf(errors.New("blob store gone")))), nil
	}
	res := tr.Deliver(context.Background(), e.route("example.org"), m)
	if res[0].Status != Temporary || res[0].Enhanced != "4.3.0" {
		t.Fatalf("%+v", res[0])
	}
	if len(server.messages()) != 0 {
		t.Fatal("a truncated message was delivered")
	}
}

func TestDSNParametersPassedOn(t *testing.T) {
	e := newEnv(t, "127.0.0.2")
	server := startMX(t, "127.0.0.2", e.port, func(_ *mx, s *smtp.Server) { s.EnableDSN = true })
	e.dns.Add(t, "example.org. IN MX 10 mx1.example.org.", "mx1.example.org. IN A 127.0.0.2")
	tr := newTransport(t, nil)
	m := msg("a@example.org")
	m.Ret, m.EnvID = "HDRS", "env-123"
	if res := tr.Deliver(context.Background(), e.route("example.org"), m); res[0].Status != Delivered {
		t.Fatal(res[0])
	}
	got := server.messages()[0].Opts
	if got.Return != smtp.DSNReturnHeaders || got.EnvelopeID != "env-123" {
		t.Errorf("MAIL options %+v", got)
	}
}

func TestSmarthostImplicitTLSWithAuth(t *testing.T) {
	e := newEnv(t, "127.0.0.7")
	cert, roots := testCert(t, "relay.example.net")
	var authed []string
	server := startMXTLS(t, "127.0.0.7", e.port, cert, func(user, pass string) error {
		authed = append(authed, user+":"+pass)
		if pass != "s3cret" {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "bad credentials"}
		}
		return nil
	})
	e.dns.Add(t, "relay.example.net. IN A 127.0.0.7", "example.org. IN MX 0 .")
	e.router.Smarthost = &route.Smarthost{Host: "relay.example.net", Port: e.port, Username: "petrel", Password: "s3cret", ImplicitTLS: true}
	tr := newTransport(t, func(o *Options) { o.SmarthostTLS = &tls.Config{RootCAs: roots} })
	res := tr.Deliver(context.Background(), e.route("example.org"), msg("a@example.org"))
	if res[0].Status != Delivered || !res[0].TLS || res[0].RemoteMTA != "relay.example.net" {
		t.Fatalf("%+v", res[0])
	}
	if len(server.messages()) != 1 || len(authed) != 1 || authed[0] != "petrel:s3cret" {
		t.Fatalf("server: %d messages, auth %v", len(server.messages()), authed)
	}

	e.router.Smarthost = &route.Smarthost{Host: "relay.example.net", Port: e.port, Username: "petrel", Password: "wrong", ImplicitTLS: true}
	res = tr.Deliver(context.Background(), e.route("example.org"), msg("a@example.org"))
	if res[0].Status != Temporary || res[0].Enhanced != "4.7.8" {
		t.Fatalf("wrong smarthost password must defer, not bounce: %+v", res[0])
	}
}

func TestSmarthostSTARTTLSRequired(t *testing.T) {
	e := newEnv(t, "127.0.0.7")
	plain := startMX(t, "127.0.0.7", e.port, nil)
	e.dns.Add(t, "relay.example.net. IN A 127.0.0.7")
	e.router.Smarthost = &route.Smarthost{Host: "relay.example.net", Port: e.port, Username: "u", Password: "p"}
	tr := newTransport(t, nil)
	res := tr.Deliver(context.Background(), e.route("example.org"), msg("a@example.org"))
	if res[0].Status != Temporary || res[0].Enhanced != "4.7.4" {
		t.Fatalf("%+v", res[0])
	}
	if _, mails := plain.stats(); mails != 0 {
		t.Fatal("credentials or mail sent to a smarthost without TLS")
	}
}

// TestPostfixSmtpSink cross-checks the client against Postfix's smtp-sink:
// a multi-recipient message, then the same with every RCPT soft-rejected.
func TestPostfixSmtpSink(t *testing.T) {
	sink, err := exec.LookPath("smtp-sink")
	if err != nil {
		t.Fatal("smtp-sink not installed (apt-get install postfix): ", err)
	}
	e := newEnv(t, "127.0.0.8", "127.0.0.9")
	// smtp-sink drops root privileges for nobody, who cannot enter
	// t.TempDir() (its parent is 0700).
	dir, err := os.MkdirTemp("", "smtp-sink-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	start := func(ip string, extra ...string) {
		args := append([]string{"-u", "nobody", "-d", filepath.Join(dir, ip+"-%M."), "-h", "sink.test"}, extra...)
		args = append(args, ip+":"+strconv.Itoa(e.port), "100")
		cmd := exec.Command(sink, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		waitFor(t, "smtp-sink on "+ip, func() bool { return dialOK(ip, e.port) })
	}
	start("127.0.0.8")
	start("127.0.0.9", "-r", "RCPT", "-b", "451 4.3.0 Sink says later")
	e.dns.Add(t, "sink.example. IN MX 10 mx.sink.example.", "mx.sink.example. IN A 127.0.0.8",
		"soft.example. IN MX 10 mx.soft.example.", "mx.soft.example. IN A 127.0.0.9")
	tr := newTransport(t, nil)

	res := tr.Deliver(context.Background(), e.route("sink.example"), msg("one@sink.example", "two@sink.example"))
	for _, r := range res {
		if r.Status != Delivered || r.Reply.Code != 250 {
			t.Fatalf("%+v %+v", r, r.Reply)
		}
	}
	var dumped []byte
	waitFor(t, "smtp-sink dump file", func() bool {
		files, _ := filepath.Glob(filepath.Join(dir, "127.0.0.8-*"))
		if len(files) != 1 {
			return false
		}
		dumped, _ = os.ReadFile(files[0])
		return bytes.Contains(dumped, []byte("end\n"))
	})
	// smtp-sink writes lines ending in LF.
	for _, want := range []string{"X-Client-Proto: ESMTP", "X-Helo-Args: out.petrel.test", "<a@sender.test>",
		"<one@sink.example>", "<two@sink.example>", strings.ReplaceAll(wantWire, "\r\n", "\n")} {
		if !bytes.Contains(dumped, []byte(want)) {
			t.Errorf("dump lacks %q:\n%s", want, dumped)
		}
	}

	res = tr.Deliver(context.Background(), e.route("soft.example"), msg("one@soft.example"))
	if res[0].Status != Temporary || res[0].Reply == nil || res[0].Reply.Code != 451 || res[0].Enhanced != "4.3.0" {
		t.Fatalf("soft reject: %+v %+v", res[0], res[0].Reply)
	}
}
