package server

import (
	"context"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mail/petrel/platform/proxyproto"
	"github.com/petrel-mail/petrel/services/smtp/internal/authcheck"
	"github.com/petrel-mail/petrel/services/smtp/internal/limits"
)

// TestShutdownAnswers421 checks the drain (ARCHITECTURE.md: "SMTP answers
// 421"): a new connection during the drain is greeted with 421, a session
// that starts a transaction gets 421 and is closed, and a session still
// idle when the grace ends gets 421 4.3.2 instead of a silent close.
func TestShutdownAnswers421(t *testing.T) {
	e := newEnv(t, envConfig{})
	idle := dialWire(t, e.addr[MX])
	idle.expect("220")
	idle.cmd("EHLO idle.test", "250 ")
	busy := dialWire(t, e.addr[MX])
	busy.expect("220")
	busy.cmd("EHLO busy.test", "250 ")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	done := make(chan error, 1)
	srv := e.servers[MX]
	go func() { done <- srv.Shutdown(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for !srv.Draining() {
		if time.Now().After(deadline) {
			t.Fatal("server never started draining")
		}
		time.Sleep(time.Millisecond)
	}

	// A transaction after the drain began: 421, then the server closes.
	busy.cmd("MAIL FROM:<a@remote.test>", "421 4.3.2")
	if _, err := busy.r.ReadString('\n'); err != io.EOF {
		t.Fatalf("connection not closed after 421: %v", err)
	}

	// A new connection during the drain: a 421 greeting. The listener
	// may still be moving into drain mode, so the first attempts may
	// find it not yet refusing; poll until it does.
	for {
		c, err := net.DialTimeout("tcp", e.addr[MX], 5*time.Second)
		if err != nil {
			t.Fatalf("dial during drain: %v (the socket must stay open)", err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		line, _ := newReader(c).ReadString('\n')
		c.Close()
		if strings.HasPrefix(line, "421 4.3.2") {
			break
		}
		if !strings.HasPrefix(line, "220") || time.Now().After(deadline) {
			t.Fatalf("greeting during drain %q", line)
		}
	}

	// The idle session is told when the grace ends.
	idle.expect("421 4.3.2")
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := net.DialTimeout("tcp", e.addr[MX], time.Second); err == nil {
		t.Fatal("listener still open after Shutdown")
	}
}

// TestCommandLimit: commands outside transactions (NOOP, RSET, VRFY, HELP)
// are bounded per session; a session with real work is not cut by them.
func TestCommandLimit(t *testing.T) {
	e := newEnv(t, envConfig{tweak: func(o *Options) { o.MaxCommands = 20 }})
	t.Run("flood", func(t *testing.T) {
		w := dialWire(t, e.addr[MX])
		w.expect("220")
		w.cmd("EHLO flood.test", "250 ")
		// The limit is counted in reply lines beyond an allowance for
		// the EHLO reply (see timedConn), so it bites between
		// MaxCommands and MaxCommands plus that allowance.
		cmds := []string{"NOOP", "RSET", "VRFY bob", "HELP"}
		answered := 0
		for {
			w.send(cmds[answered%len(cmds)] + "\r\n")
			if got := w.reply(); strings.HasPrefix(got, "421 4.7.0") {
				break
			}
			answered++
			if answered > 20+20 {
				t.Fatalf("%d commands answered, limit 20", answered)
			}
		}
		if answered < 20 {
			t.Fatalf("cut after %d commands, limit 20", answered)
		}
		// Closed (EOF, or a reset: the server leaves unread input).
		if line, err := w.r.ReadString('\n'); err == nil {
			t.Fatalf("connection not closed: read %q", line)
		}
	})
	t.Run("transactions", func(t *testing.T) {
		w := dialWire(t, e.addr[MX])
		w.expect("220")
		w.cmd("EHLO busy.test", "250 ")
		for i := 0; i < 8; i++ {
			w.cmd("NOOP", "250")
			w.cmd("MAIL FROM:<a@remote.test>", "250")
			w.cmd("RCPT TO:<bob@example.com>", "250")
			w.cmd("RCPT TO:<alice@example.com>", "250")
			w.cmd("DATA", "354")
			w.cmd("Subject: x\r\n\r\nbody\r\n.", "250 2.0.0")
		}
		w.cmd("QUIT", "221")
	})
}

// fakeAuth is an Authenticator that records what it saw, adds a header,
// and rejects mail from a sender whose domain "publishes" p=reject.
type fakeAuth struct {
	mu  sync.Mutex
	ips []netip.Addr
}

func (f *fakeAuth) Check(_ context.Context, in authcheck.CheckInput) (authcheck.Result, error) {
	f.mu.Lock()
	f.ips = append(f.ips, in.ClientIP)
	f.mu.Unlock()
	if _, err := io.ReadAll(in.Message); err != nil {
		return authcheck.Result{}, err
	}
	if strings.HasSuffix(in.MailFrom, "@reject.test") {
		return authcheck.Result{Reject: true, RejectReason: "Message rejected by the DMARC policy of reject.test"}, nil
	}
	return authcheck.Result{Header: "Authentication-Results: mx.test; spf=pass smtp.mailfrom=" + in.MailFrom + "\r\n"}, nil
}

func (f *fakeAuth) seen() []netip.Addr {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]netip.Addr(nil), f.ips...)
}

// TestSenderAuthentication: on the MX listener the authenticator's header
// is stored after Received:, and its reject is 550 5.7.1 with nothing
// stored or queued; submission does not run it.
func TestSenderAuthentication(t *testing.T) {
	fa := &fakeAuth{}
	e := newEnv(t, envConfig{auth: fa})
	// The bucket is shared by the package's tests: compare counts.
	before := len(e.objects("tenant-a"))
	w := dialWire(t, e.addr[MX])
	w.expect("220")
	w.cmd("EHLO client.test", "250 ")
	w.cmd("MAIL FROM:<x@reject.test>", "250")
	w.cmd("RCPT TO:<bob@example.com>", "250")
	w.cmd("DATA", "354")
	w.cmd("From: x@reject.test\r\n\r\nspoof\r\n.", "550 5.7.1 Message rejected by sender authentication policy")
	if n := len(e.queued()); n != 0 {
		t.Fatalf("%d entries queued for a rejected message", n)
	}
	if keys := e.objects("tenant-a"); len(keys) != before {
		t.Fatalf("objects stored for a rejected message: %v", keys)
	}

	w.cmd("MAIL FROM:<ok@good.test>", "250")
	w.cmd("RCPT TO:<bob@example.com>", "250")
	w.cmd("DATA", "354")
	w.cmd("From: ok@good.test\r\n\r\nfine\r\n.", "250 2.0.0")
	entries := e.queued()
	if len(entries) != 1 {
		t.Fatalf("%d entries", len(entries))
	}
	obj := e.object(entries[0].BlobKey)
	if !strings.HasPrefix(obj, "Received: ") || !strings.Contains(obj, "\r\nAuthentication-Results: mx.test; spf=pass smtp.mailfrom=ok@good.test\r\nFrom: ok@good.test\r\n") {
		t.Fatalf("stored header block:\n%s", obj)
	}
	if n := len(fa.seen()); n != 2 {
		t.Fatalf("authenticator ran %d times, want 2 (MX only)", n)
	}
}

// TestProxiedClientIP: behind a trusted load balancer, the address in the
// PROXY header is the client for Received:, the queue entry, sender
// authentication, the directory (AUTH) and the per-network connection
// limit.
func TestProxiedClientIP(t *testing.T) {
	fa := &fakeAuth{}
	e := newEnv(t, envConfig{
		auth: fa,
		wrapLn: func(ln net.Listener) net.Listener {
			pl, err := proxyproto.NewListener(ln, proxyproto.Options{TrustedCIDRs: mustCIDRs(t, "127.0.0.0/8")})
			if err != nil {
				t.Fatal(err)
			}
			return pl
		},
		tweak: func(o *Options) {
			o.Limits.Conns = limits.NewConnLimiter(1)
			o.AllowInsecureAuthLoopback = true
		},
	})
	w := dialWire(t, e.addr[MX])
	w.send("PROXY TCP4 198.51.100.7 127.0.0.1 40000 25\r\n")
	w.expect("220")

	// Same /24 as the open session: over the limit of 1.
	w2 := dialWire(t, e.addr[MX])
	w2.send("PROXY TCP4 198.51.100.200 127.0.0.1 40001 25\r\n")
	w2.expect("421 4.7.0")
	// Another network is not affected.
	w3 := dialWire(t, e.addr[MX])
	w3.send("PROXY TCP4 203.0.113.9 127.0.0.1 40002 25\r\n")
	w3.expect("220")
	w3.cmd("QUIT", "221")

	w.cmd("EHLO client.test", "250 ")
	w.cmd("MAIL FROM:<ok@good.test>", "250")
	w.cmd("RCPT TO:<bob@example.com>", "250")
	w.cmd("DATA", "354")
	w.cmd("From: ok@good.test\r\n\r\nproxied\r\n.", "250 2.0.0")
	w.cmd("QUIT", "221")
	entries := e.queued()
	if len(entries) != 1 || entries[0].Client.GetIp() != "198.51.100.7" {
		t.Fatalf("queue entries %v", entries)
	}
	if obj := e.object(entries[0].BlobKey); !strings.HasPrefix(obj, "Received: from client.test ([198.51.100.7])") {
		t.Fatalf("Received: does not name the proxied client:\n%s", obj)
	}
	if ips := fa.seen(); len(ips) != 1 || ips[0] != netip.MustParseAddr("198.51.100.7") {
		t.Fatalf("sender authentication saw %v", ips)
	}

	// Submission: the directory's Authenticate gets the proxied address.
	s := dialWire(t, e.addr[Submission])
	s.send("PROXY TCP4 127.0.0.9 127.0.0.1 40003 587\r\n")
	s.expect("220")
	s.cmd("EHLO client.test", "250 ")
	s.cmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAGFsaWNlLXNlY3JldA==", "235")
	e.dir.mu.Lock()
	ips := append([]string(nil), e.dir.lastIPs...)
	e.dir.mu.Unlock()
	if len(ips) != 1 || ips[0] != "127.0.0.9" {
		t.Fatalf("directory saw client IPs %v, want the proxied 127.0.0.9", ips)
	}
}
