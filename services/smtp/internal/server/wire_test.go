package server

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mail/petrel/platform/proxyproto"
)

// TestSMTPSmuggling sends an end-of-data lookalike followed by a second,
// complete transaction in the same write (SMTP-LESSONS 1). go-smtp only
// ends DATA at <CRLF>.<CRLF>, so the lookalike and the "second message"
// stay inside the first; ingest then refuses the message for its bare line
// ending. Nothing is stored, nothing queued, and the reply stream stays in
// step: exactly one reply to the one DATA.
func TestSMTPSmuggling(t *testing.T) {
	e := newEnv(t, envConfig{})
	objectsBefore := len(e.objects("tenant-a"))
	cases := map[string]string{
		"LF.LF":   "\n.\n",
		"LF.CRLF": "\n.\r\n",
		"CR.CRLF": "\r.\r\n",
		"CR.CR":   "\r.\r",
		"CRLF.LF": "\r\n.\n",
		"bare LF": "\n",
		"bare CR": "\r",
		"LF.":     "\n.",
	}
	for name, eod := range cases {
		t.Run(name, func(t *testing.T) {
			w := dialWire(t, e.addr[MX])
			w.expect("220")
			w.cmd("EHLO client.example", "250")
			w.send("MAIL FROM:<a@remote.test>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n")
			w.expect("250")
			w.expect("250")
			w.expect("354")
			w.send("Subject: first\r\n\r\nbody" + eod +
				"MAIL FROM:<smuggled@remote.test>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n.\r\n")
			w.expect("550 5.6.0")
			// Only now would a smuggled transaction's replies appear.
			w.cmd("NOOP", "250 2.0.0")
			w.cmd("QUIT", "221")
		})
	}
	if n := len(e.queued()); n != 0 {
		t.Fatalf("%d queue entries after smuggling attempts, want 0", n)
	}
	if n := len(e.objects("tenant-a")); n != objectsBefore {
		t.Fatalf("%d objects left by refused messages", n-objectsBefore)
	}

	// <CRLF>.<CR> followed by anything but LF: go-smtp's dot-unstuffing
	// drops the ".<CR>" itself, so no bare CR is left to refuse; the
	// would-be second transaction is still only text in the one message.
	w := dialWire(t, e.addr[MX])
	w.expect("220")
	w.cmd("EHLO client.example", "250")
	w.send("MAIL FROM:<a@remote.test>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n")
	w.expect("250")
	w.expect("250")
	w.expect("354")
	w.send("Subject: first\r\n\r\nbody\r\n.\rMAIL FROM:<smuggled@remote.test>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\nx\r\n.\r\n")
	w.expect("250 2.0.0 OK: queued as")
	w.cmd("NOOP", "250 2.0.0")
	entries := e.queued()
	if len(entries) != 1 || len(entries[0].Recipients) != 1 || entries[0].Recipients[0].Address != "bob@example.com" {
		t.Fatalf("entries %v", entries)
	}
	if obj := e.object(entries[0].BlobKey); !strings.HasSuffix(obj, "\r\nbody\r\nMAIL FROM:<smuggled@remote.test>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\nx\r\n") {
		t.Fatalf("stored %q", obj)
	}
}

// TestSTARTTLSInjection: commands pipelined after STARTTLS in the same
// write must not run after the handshake (CVE-2011-0411; SMTP-LESSONS 3),
// directly and through the PROXY protocol layer, which buffers bytes that
// arrive with its header.
func TestSTARTTLSInjection(t *testing.T) {
	for _, proxied := range []bool{false, true} {
		name := "direct"
		cfg := envConfig{}
		if proxied {
			name = "proxied"
			cfg.wrapLn = func(ln net.Listener) net.Listener {
				pl, err := proxyproto.NewListener(ln, proxyproto.Options{TrustedCIDRs: mustCIDRs(t, "127.0.0.0/8")})
				if err != nil {
					t.Fatal(err)
				}
				return pl
			}
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, cfg)
			w := dialWire(t, e.addr[Submission])
			if proxied {
				// Header, EHLO, STARTTLS and the injected command all in
				// one segment.
				w.send("PROXY TCP4 198.51.100.7 127.0.0.1 40000 587\r\nEHLO a\r\nSTARTTLS\r\nMAIL FROM:<alice@example.com>\r\n")
				w.expect("220")
				w.expect("250")
			} else {
				w.expect("220")
				w.cmd("EHLO a", "250")
				w.send("STARTTLS\r\nMAIL FROM:<alice@example.com>\r\n")
			}
			w.expect("220 2.0.0")
			tc := tls.Client(w.conn, e.tls)
			if err := tc.Handshake(); err != nil {
				t.Fatalf("handshake: %v", err)
			}
			w.conn, w.r = tc, newReader(tc)
			// The first reply after the handshake must answer our EHLO,
			// not the injected MAIL.
			w.send("EHLO a\r\n")
			// (an EHLO reply's last line is a keyword, without enhanced code)
			if got := w.reply(); !strings.HasPrefix(got, "250 ") || strings.HasPrefix(got, "250 2.") {
				t.Fatalf("first reply after TLS %q: injected command ran", got)
			}
			w.cmd("MAIL FROM:<alice@example.com>", "530 5.7.0")
		})
	}
}

func mustCIDRs(t *testing.T, s string) []netipPrefix {
	t.Helper()
	p, err := proxyproto.ParseCIDRs(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSizeLimit(t *testing.T) {
	e := newEnv(t, envConfig{})
	objectsBefore := len(e.objects("tenant-a"))
	w := dialWire(t, e.addr[MX])
	w.expect("220")
	w.cmd("EHLO client.example", "250")
	w.cmd("MAIL FROM:<a@remote.test> SIZE=2000000", "552 5.3.4")
	w.cmd("MAIL FROM:<a@remote.test> SIZE=1000", "250")
	w.cmd("RCPT TO:<bob@example.com>", "250")
	w.cmd("DATA", "354")
	line := strings.Repeat("x", 998) + "\r\n"
	big := strings.Repeat(line, (1<<20)/len(line)+10)
	w.send("Subject: big\r\n\r\n" + big + ".\r\n")
	w.expect("552 5.3.4")
	// BDAT over the limit is refused before the chunk is read, and the
	// chunk is skipped so the session stays in step.
	w.cmd("MAIL FROM:<a@remote.test>", "250")
	w.cmd("RCPT TO:<bob@example.com>", "250")
	// (Lines of normal length: go-smtp v0.25.1 still applies its line
	// limit while it skips a refused chunk.)
	chunk := strings.Repeat(strings.Repeat("y", 998)+"\r\n", 2000)
	w.send("BDAT " + itoa(len(chunk)) + " LAST\r\n" + chunk)
	w.expect("552 5.3.4")
	w.cmd("NOOP", "250")
	// Too many recipients: the limit is 5.
	w.cmd("MAIL FROM:<a@remote.test>", "250")
	for range 5 {
		w.cmd("RCPT TO:<bob@example.com>", "250")
	}
	w.cmd("RCPT TO:<bob@example.com>", "452 4.5.3")
	if n := len(e.queued()); n != 0 {
		t.Fatalf("%d entries", n)
	}
	if keys := e.objects("tenant-a"); len(keys) != objectsBefore {
		t.Fatalf("objects left after refused oversize mail: %v", keys)
	}
}

func TestBDAT(t *testing.T) {
	e := newEnv(t, envConfig{})
	w := dialWire(t, e.addr[MX])
	w.expect("220")
	w.cmd("EHLO client.example", "250")
	part1 := "Subject: chunks\r\n\r\n"
	part2 := "line one\r\n.line with dot\r\n"
	// Pipelined: all commands and chunks in one write.
	w.send("MAIL FROM:<a@remote.test>\r\nRCPT TO:<bob@example.com>\r\nBDAT " + itoa(len(part1)) + "\r\n" + part1 +
		"BDAT " + itoa(len(part2)) + " LAST\r\n" + part2)
	w.expect("250")
	w.expect("250")
	w.expect("250 2.0.0 Continue")
	id := queueID(t, w.expect("250 2.0.0 OK: queued as"))
	// BDAT carries raw bytes: a bare LF is refused here too.
	bad := "Subject: x\r\n\r\nbare\nlf\r\n"
	w.send("MAIL FROM:<a@remote.test>\r\nRCPT TO:<bob@example.com>\r\nBDAT " + itoa(len(bad)) + " LAST\r\n" + bad)
	w.expect("250")
	w.expect("250")
	w.expect("550 5.6.0")
	w.cmd("NOOP", "250")
	entries := e.queued()
	if len(entries) != 1 || entries[0].QueueId != id {
		t.Fatalf("entries %v", entries)
	}
	obj := e.object(entries[0].BlobKey)
	if !strings.HasSuffix(obj, "\r\n"+part1+part2) {
		t.Fatalf("BDAT content not stored verbatim: %q", obj)
	}
}

func TestIdleTimeout(t *testing.T) {
	e := newEnv(t, envConfig{tweak: func(o *Options) { o.IdleTimeout = 200 * time.Millisecond }})
	w := dialWire(t, e.addr[MX])
	w.expect("220")
	w.cmd("EHLO a", "250")
	// Send nothing: the server must close with 421 on its own.
	w.expect("421 4.4.2")
}

// TestMailLoopRefused: a message that has already passed
// ingest.DefaultMaxHops (50) Received: fields is looping (RFC 5321 §6.3,
// SMTP-LESSONS 14) and is refused with 554 5.4.6 at the end of DATA,
// nothing stored or queued; one hop fewer is accepted. The count is the
// header's only: "Received:" in the body does not count.
func TestMailLoopRefused(t *testing.T) {
	e := newEnv(t, envConfig{})
	objectsBefore := len(e.objects("tenant-a"))
	hops := func(n int) string {
		var b strings.Builder
		for i := range n {
			// Folded, as real Received: fields are.
			b.WriteString("Received: from hop" + itoa(i) + ".example by hop" + itoa(i+1) + ".example;\r\n\tThu, 26 Nov 2026 08:00:00 +0000\r\n")
		}
		return b.String()
	}
	w := dialWire(t, e.addr[MX])
	w.expect("220")
	w.cmd("EHLO client.example", "250")
	w.cmd("MAIL FROM:<a@remote.test>", "250")
	w.cmd("RCPT TO:<bob@example.com>", "250")
	w.cmd("DATA", "354")
	w.send(hops(50) + "Subject: loop\r\n\r\nround and round\r\n.\r\n")
	w.expect("554 5.4.6")
	if n := len(e.queued()); n != 0 {
		t.Fatalf("%d entries queued for a looping message", n)
	}
	if n := len(e.objects("tenant-a")); n != objectsBefore {
		t.Fatalf("%d objects left by the looping message", n-objectsBefore)
	}

	w.cmd("MAIL FROM:<a@remote.test>", "250")
	w.cmd("RCPT TO:<bob@example.com>", "250")
	w.cmd("DATA", "354")
	w.send(hops(49) + "Subject: long way\r\n\r\n" + hops(10) + ".\r\n")
	w.expect("250 2.0.0")
	w.cmd("QUIT", "221")
	if n := len(e.queued()); n != 1 {
		t.Fatalf("%d entries queued, want the 49-hop message", n)
	}
}
