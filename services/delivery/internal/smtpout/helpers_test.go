package smtpout

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/petrel-mail/petrel/services/delivery/internal/route"
)

// received is one message a test server accepted.
type received struct {
	From  string
	Rcpts []string
	Data  []byte
	TLS   bool
	Opts  smtp.MailOptions
}

// mx is a go-smtp server playing a remote MX on a loopback address.
type mx struct {
	t    *testing.T
	Addr string // ip:port
	srv  *smtp.Server

	// Set before traffic starts.
	rcptReply map[string]*smtp.SMTPError // per recipient refusal
	mailReply *smtp.SMTPError
	dataBlock chan struct{} // if set, Data waits for it to close
	no8bit    bool          // EHLO does not announce 8BITMIME
	inData    chan struct{} // if set, Data signals here on entry

	mu      sync.Mutex
	msgs    []received
	conns   int
	mails   int
	ehlo    []string
	active  int // sessions open
	tx, max int // transactions in progress (MAIL to end of DATA), and their maximum
	logouts int
}

type mxSession struct {
	m     *mx
	conn  *smtp.Conn
	from  string
	opts  smtp.MailOptions
	rcpts []string
	inTx  bool
}

func (s *mxSession) Reset() {
	s.endTx()
	s.from, s.rcpts = "", nil
}

func (s *mxSession) endTx() {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	if s.inTx {
		s.inTx = false
		s.m.tx--
	}
}

func (s *mxSession) Logout() error {
	s.endTx()
	s.m.mu.Lock()
	s.m.active--
	s.m.logouts++
	s.m.mu.Unlock()
	return nil
}
func (s *mxSession) Mail(from string, opts *smtp.MailOptions) error {
	s.m.mu.Lock()
	s.m.mails++
	s.m.ehlo = append(s.m.ehlo, s.conn.Hostname())
	if s.m.mailReply != nil {
		s.m.mu.Unlock()
		return s.m.mailReply
	}
	s.m.tx++
	s.m.max = max(s.m.max, s.m.tx)
	s.inTx = true
	s.m.mu.Unlock()
	s.from = from
	if opts != nil {
		s.opts = *opts
	}
	return nil
}
func (s *mxSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if e := s.m.rcptReply[to]; e != nil {
		return e
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}
func (s *mxSession) Data(r io.Reader) error {
	// The transaction ends before the reply to the final dot is written.
	defer s.endTx()
	if s.m.inData != nil {
		s.m.inData <- struct{}{}
	}
	if s.m.dataBlock != nil {
		<-s.m.dataBlock
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, isTLS := s.conn.TLSConnectionState()
	s.m.mu.Lock()
	s.m.msgs = append(s.m.msgs, received{From: s.from, Rcpts: s.rcpts, Data: b, TLS: isTLS, Opts: s.opts})
	s.m.mu.Unlock()
	return nil
}

// startMX runs a go-smtp server on ip:port (port 0 picks one).
func startMX(t *testing.T, ip string, port int, configure func(*mx, *smtp.Server)) *mx {
	t.Helper()
	m := &mx{t: t, rcptReply: map[string]*smtp.SMTPError{}}
	m.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		m.mu.Lock()
		m.conns++
		m.active++
		m.mu.Unlock()
		return &mxSession{m: m, conn: c}, nil
	}))
	m.srv.Domain = "mx.test"
	m.srv.ReadTimeout = 10 * time.Second
	m.srv.WriteTimeout = 10 * time.Second
	m.srv.AllowInsecureAuth = true
	if configure != nil {
		configure(m, m.srv)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("listen %s:%d: %v", ip, port, err)
	}
	m.Addr = ln.Addr().String()
	if m.no8bit {
		ln = no8bitListener{ln}
	}
	go m.srv.Serve(ln)
	t.Cleanup(func() { m.srv.Close() })
	return m
}

func (m *mx) messages() []received {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]received(nil), m.msgs...)
}

func (m *mx) stats() (conns, mails int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.conns, m.mails
}

// testCert makes a CA and a server certificate for names, signed by it.
func testCert(t *testing.T, names ...string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

// brokenTLS offers STARTTLS but every handshake fails.
func brokenTLS() *tls.Config {
	return &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return nil, errors.New("no certificate for you")
	}}
}

func opener(data string) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader([]byte(data))), nil }
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startRaw listens on ip:port and answers every connection with greeting,
// then hangs up.
func startRaw(t *testing.T, ip string, port int, greeting string) {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, greeting)
			c.Close()
		}
	}()
}

// startMXTLS runs a go-smtp server with implicit TLS (a submissions-style
// smarthost) that requires AUTH PLAIN checked by check.
func startMXTLS(t *testing.T, ip string, port int, cert tls.Certificate, check func(user, pass string) error) *mx {
	t.Helper()
	m := &mx{t: t, rcptReply: map[string]*smtp.SMTPError{}}
	m.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		m.mu.Lock()
		m.conns++
		m.active++
		m.mu.Unlock()
		return &authSession{mxSession: mxSession{m: m, conn: c}, check: check}, nil
	}))
	m.srv.Domain = "relay.test"
	m.srv.ReadTimeout = 10 * time.Second
	m.srv.WriteTimeout = 10 * time.Second
	ln, err := tls.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)), &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	m.Addr = ln.Addr().String()
	if m.no8bit {
		ln = no8bitListener{ln}
	}
	go m.srv.Serve(ln)
	t.Cleanup(func() { m.srv.Close() })
	return m
}

type authSession struct {
	mxSession
	check  func(user, pass string) error
	authed bool
}

func (s *authSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *authSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if err := s.check(user, pass); err != nil {
			return err
		}
		s.authed = true
		return nil
	}), nil
}

func (s *authSession) Mail(from string, opts *smtp.MailOptions) error {
	if !s.authed {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	}
	return s.mxSession.Mail(from, opts)
}

type policyFunc func(ctx context.Context, domain string, host route.Host) (TLSRequirement, error)

func (f policyFunc) TLSFor(ctx context.Context, domain string, host route.Host) (TLSRequirement, error) {
	return f(ctx, domain, host)
}

// requiredFor requires TLS (verification skipped: what matters in these
// tests is that there is no plaintext fallback) for the given domains.
func requiredFor(domains ...string) policyFunc {
	return func(_ context.Context, domain string, _ route.Host) (TLSRequirement, error) {
		if slices.Contains(domains, domain) {
			return TLSRequirement{Mode: TLSRequired, Config: &tls.Config{InsecureSkipVerify: true}}, nil
		}
		return TLSRequirement{Mode: TLSOpportunistic}, nil
	}
}

type failingReader struct{ err error }

func (f failingReader) Read([]byte) (int, error) { return 0, f.err }

func errReaderOf(err error) io.Reader { return failingReader{err} }

func dialOK(ip string, port int) bool {
	c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, strconv.Itoa(port)), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// no8bitListener hides 8BITMIME from the EHLO replies of go-smtp's server,
// which always announces it.
type no8bitListener struct{ net.Listener }

func (l no8bitListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return no8bitConn{c}, nil
}

type no8bitConn struct{ net.Conn }

func (c no8bitConn) Write(p []byte) (int, error) {
	// go-smtp writes a whole reply at once.
	q := bytes.ReplaceAll(p, []byte("250-8BITMIME\r\n"), nil)
	if _, err := c.Conn.Write(q); err != nil {
		return 0, err
	}
	return len(p), nil
}
