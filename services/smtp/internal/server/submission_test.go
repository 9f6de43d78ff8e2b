package server

import (
	"crypto/tls"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

func submit(t *testing.T, e *env, implicit bool, auth sasl.Client, from string, rcpts []string, msg string) error {
	t.Helper()
	var c *smtp.Client
	var err error
	if implicit {
		c, err = smtp.DialTLS(e.addr[Submissions], e.tls)
	} else {
		c, err = smtp.DialStartTLS(e.addr[Submission], e.tls)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if auth != nil {
		if err := c.Auth(auth); err != nil {
			return err
		}
	}
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		return err
	}
	return w.Close()
}

func wantCode(t *testing.T, err error, code int, enh string) {
	t.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != code || (enh != "" && strings.Join(strings.Fields(strings.Trim(strings.ReplaceAll(strings.Trim(fmtEnh(se.EnhancedCode), "[]"), " ", "."), " ")), "") != enh) {
		t.Fatalf("got %v, want %d %s", err, code, enh)
	}
}

func fmtEnh(c smtp.EnhancedCode) string {
	return strings.Join([]string{itoa(c[0]), itoa(c[1]), itoa(c[2])}, ".")
}

func TestSubmissionRelayMatrix(t *testing.T) {
	e := newEnv(t, envConfig{})
	alice := func() sasl.Client { return sasl.NewPlainClient("", "alice@example.com", "alice-secret") }
	msg := "From: Alice <alice@example.com>\r\nTo: x@remote.test\r\nSubject: hi\r\n\r\nhello\r\n"

	// Unauthenticated submission: refused at MAIL.
	wantCode(t, submit(t, e, false, nil, "alice@example.com", []string{"x@remote.test"}, msg), 530, "5.7.0")
	// Wrong password.
	wantCode(t, submit(t, e, false, sasl.NewPlainClient("", "alice@example.com", "nope"), "alice@example.com", nil, msg), 535, "5.7.8")
	// Spoofed envelope sender after AUTH.
	wantCode(t, submit(t, e, false, alice(), "ceo@example.com", []string{"x@remote.test"}, msg), 553, "5.7.1")
	// Spoofed From: header after AUTH, with a permitted envelope.
	before := len(e.objects("tenant-a"))
	spoof := strings.Replace(msg, "From: Alice <alice@example.com>", "From: CEO <ceo@example.com>", 1)
	wantCode(t, submit(t, e, false, alice(), "alice@example.com", []string{"x@remote.test"}, spoof), 550, "5.7.1")
	if n := len(e.objects("tenant-a")); n != before {
		t.Fatal("a refused From: left an object")
	}
	// Allowed: own address and an alias, relaying to a remote domain, over
	// STARTTLS (PLAIN) and implicit TLS (LOGIN).
	if err := submit(t, e, false, alice(), "alice@example.com", []string{"x@remote.test", "bob@example.com"}, msg); err != nil {
		t.Fatal(err)
	}
	if err := submit(t, e, true, sasl.NewLoginClient("alice@example.com", "alice-secret"), "sales@example.com", []string{"y@remote.test"}, strings.Replace(msg, "alice@", "sales@", 1)); err != nil {
		t.Fatal(err)
	}
	entries := e.queued()
	if len(entries) != 2 {
		t.Fatalf("%d entries", len(entries))
	}
	qe := entries[0]
	if qe.Client.GetAuthAccount() != "acc-alice" || qe.Client.GetListener() != "submission" || !qe.Client.GetTls() || qe.TenantId != "tenant-a" ||
		qe.Recipients[0].Local || !qe.Recipients[1].Local {
		t.Fatalf("entry %v", qe)
	}
	if entries[1].Client.GetListener() != "submissions" {
		t.Fatalf("entry %v", entries[1])
	}
	// Message-ID and Date were added, once, in the header.
	obj := e.object(qe.BlobKey)
	head, _, _ := strings.Cut(obj, "\r\n\r\n")
	if strings.Count(head, "\r\nMessage-ID: <"+qe.QueueId+"@mx.test>") != 1 || strings.Count(head, "\r\nDate: ") != 1 {
		t.Fatalf("header:\n%s", head)
	}
	if !strings.Contains(head, "with ESMTPSA id") {
		t.Fatalf("Received: protocol:\n%s", head)
	}
	// A message that has them keeps its own.
	own := "Message-ID: <own@client>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n" + msg
	if err := submit(t, e, false, alice(), "alice@example.com", []string{"x@remote.test"}, own); err != nil {
		t.Fatal(err)
	}
	entries = e.queued()
	head, _, _ = strings.Cut(e.object(entries[2].BlobKey), "\r\n\r\n")
	if strings.Count(head, "Message-ID:") != 1 || strings.Count(head, "Date:") != 1 || !strings.Contains(head, "<own@client>") {
		t.Fatalf("header:\n%s", head)
	}
}

func TestSubmissionPlaintextAuth(t *testing.T) {
	// Without TLS, AUTH is neither offered nor accepted...
	e := newEnv(t, envConfig{})
	w := dialWire(t, e.addr[Submission])
	w.expect("220")
	w.send("EHLO a\r\n")
	for {
		line := w.r
		l, err := line.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(l, "AUTH") {
			t.Fatalf("AUTH offered without TLS: %q", l)
		}
		if l[3] == ' ' {
			break
		}
	}
	w.cmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAGFsaWNlLXNlY3JldA==", "523 5.7.10")
	// ...unless the operator allows it for loopback clients (local runs).
	e2 := newEnv(t, envConfig{tweak: func(o *Options) { o.AllowInsecureAuthLoopback = true }})
	w2 := dialWire(t, e2.addr[Submission])
	w2.expect("220")
	w2.cmd("EHLO a", "250")
	w2.cmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAGFsaWNlLXNlY3JldA==", "235 2.0.0")
	w2.cmd("MAIL FROM:<alice@example.com>", "250")
	if ips := e2.dir.lastIPs; len(ips) != 1 || ips[0] != "127.0.0.1" {
		t.Fatalf("Authenticate got remote IPs %v", ips)
	}
}

func TestAuthFailuresRefusedPerNetwork(t *testing.T) {
	e := newEnv(t, envConfig{tweak: func(o *Options) {
		o.AllowInsecureAuthLoopback = true
		o.MaxAuthAttempts = 10
		o.Limits.AuthFailures = nil
	}})
	// Defaults: 10 failures in 10 minutes; make it quick with a fresh
	// limiter of 2 and no delay.
	e.servers[Submission].o.Limits.AuthFailures = newTestAuthFailures()
	w := dialWire(t, e.addr[Submission])
	w.expect("220")
	w.cmd("EHLO a", "250")
	bad := "AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAG5vcGU="
	w.cmd(bad, "535 5.7.8")
	w.cmd(bad, "535 5.7.8")
	w.cmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAGFsaWNlLXNlY3JldA==", "454 4.7.0")
}

// TestPythonSmtplib and TestSwaks: scenario tests with other clients.
func TestPythonSmtplib(t *testing.T) {
	e := newEnv(t, envConfig{tweak: func(o *Options) { o.AllowInsecureAuthLoopback = true }})
	script := `
import smtplib, sys
host, port = sys.argv[1].rsplit(":", 1)
s = smtplib.SMTP(host, int(port), timeout=20)
s.ehlo("py.example")
s.login("alice@example.com", "alice-secret")
r = s.sendmail("alice@example.com", ["z@remote.test"], "From: alice@example.com\r\nSubject: py\r\n\r\nfrom python\r\n")
try:
    s.sendmail("mallory@example.com", ["z@remote.test"], "From: alice@example.com\r\n\r\nx\r\n")
    print("SPOOF-ACCEPTED")
except smtplib.SMTPSenderRefused as e:
    print("refused", e.smtp_code)
s.quit()
m = smtplib.SMTP(sys.argv[2].rsplit(":",1)[0], int(sys.argv[2].rsplit(":",1)[1]), timeout=20)
try:
    m.sendmail("a@remote.test", ["x@elsewhere.test"], "Subject: relay\r\n\r\nx\r\n")
    print("RELAY-ACCEPTED")
except smtplib.SMTPRecipientsRefused as e:
    print("relay refused", list(e.recipients.values())[0][0])
m.quit()
`
	out, err := exec.Command("python3", "-c", script, e.addr[Submission], e.addr[MX]).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	if got := string(out); got != "refused 553\nrelay refused 554\n" {
		t.Fatalf("python output %q", got)
	}
	if n := len(e.queued()); n != 1 {
		t.Fatalf("%d entries", n)
	}
}

func TestSwaks(t *testing.T) {
	if _, err := exec.LookPath("swaks"); err != nil {
		t.Fatal("swaks is not installed: apt-get install -y swaks")
	}
	e := newEnv(t, envConfig{})
	out, err := exec.Command("swaks", "--server", e.addr[MX], "--from", "s@remote.test", "--to", "bob@example.com", "--helo", "swaks.example",
		"--pipeline", "--header", "Subject: swaks").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "250 2.0.0 OK: queued as") {
		t.Fatalf("swaks MX: %v\n%s", err, out)
	}
	out, _ = exec.Command("swaks", "--server", e.addr[MX], "--from", "s@remote.test", "--to", "x@elsewhere.test", "--helo", "swaks.example").CombinedOutput()
	if !strings.Contains(string(out), "554 5.7.1 Relay access denied") {
		t.Fatalf("swaks relay attempt:\n%s", out)
	}
	host, port, _ := strings.Cut(e.addr[Submissions], ":")
	out, err = exec.Command("swaks", "--server", host, "--port", port, "--tlsc", "--auth", "LOGIN", "--auth-user", "alice@example.com", "--auth-password", "alice-secret",
		"--from", "alice@example.com", "--to", "r@remote.test", "--header", "From: alice@example.com").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "250 2.0.0 OK: queued as") {
		t.Fatalf("swaks submissions: %v\n%s", err, out)
	}
	if n := len(e.queued()); n != 2 {
		t.Fatalf("%d entries", n)
	}
}

var _ = tls.VersionTLS12
