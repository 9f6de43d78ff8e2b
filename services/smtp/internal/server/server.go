// Package server is the SMTP protocol side of smtp ingress, built on
// github.com/emersion/go-smtp: one Server per listener kind, MX (port 25,
// RFC 5321), submission (587, RFC 6409, STARTTLS per RFC 3207 before AUTH)
// and submissions (465, implicit TLS per RFC 8314), with AUTH PLAIN
// (RFC 4616) and LOGIN over RFC 4954, SIZE (RFC 1870), 8BITMIME
// (RFC 6152), PIPELINING (RFC 2920), ENHANCEDSTATUSCODES (RFC 2034, 3463),
// CHUNKING (RFC 3030), DSN (RFC 3461) and SMTPUTF8 (RFC 6531).
//
// Relay rules (never an open relay): without authentication a recipient
// must resolve to a local address; an authenticated submission may send
// anywhere, but only as an address the account may use, in MAIL FROM and in
// From:. Accepted messages go to package ingest, which answers 250 only once
// the message is durable.
//
// Replies come from this package only: every error a session method
// returns is an *smtp.SMTPError, because go-smtp sends the text of any
// other error to the client. Internal failures are logged with context and
// answered with a generic 4xx.
//
// go-smtp facts this package relies on (v0.25.1, checked by the tests):
// only <CRLF>.<CRLF> ends DATA, lone CR/LF are passed on in the data and
// refused here by ingest; STARTTLS discards whatever the client pipelined
// before the handshake (the text reader is rebuilt on the TLS connection);
// the DATA and BDAT reply is whatever Data returns, so the success reply
// carrying the queue id is returned as a 250 SMTPError.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/petrel-mail/petrel/services/smtp/internal/directory"
	"github.com/petrel-mail/petrel/services/smtp/internal/ingest"
	"github.com/petrel-mail/petrel/services/smtp/internal/limits"
)

// Kind is the role of a listener.
type Kind int

// Listener kinds.
const (
	MX Kind = iota
	Submission
	Submissions
)

func (k Kind) String() string {
	switch k {
	case MX:
		return "mx"
	case Submission:
		return "submission"
	case Submissions:
		return "submissions"
	}
	return "unknown"
}

// Limits are shared by every listener of the process, so that a client
// cannot multiply its allowance by using several ports.
type Limits struct {
	Conns        *limits.ConnLimiter
	UserMessages *limits.RateLimiter
	AuthFailures *limits.AuthFailures
}

// Options configure a Server. The zero values of durations and counts take
// the defaults noted.
type Options struct {
	Hostname  string
	Directory directory.Directory
	Ingester  *ingest.Ingester
	// TLSConfig enables STARTTLS (MX, submission) and is required for
	// submissions.
	TLSConfig *tls.Config

	MaxMessageBytes int64 // default 50 MiB
	MaxRecipients   int   // default 100
	MaxLineLength   int   // command and DATA lines; default 2000 (RFC 5321 §4.5.3.1.6 doubled)
	// MaxTransactions bounds MAIL commands per session; default 100.
	MaxTransactions int
	// MaxAuthAttempts bounds AUTH commands per session; default 3.
	MaxAuthAttempts int
	// MaxCommands bounds commands outside mail transactions (NOOP, RSET,
	// VRFY, HELP, unknown ones) per session; past it the session gets 421
	// and is closed. Default 100.
	MaxCommands         int
	IdleTimeout         time.Duration // default 5m (RFC 5321 §4.5.3.2)
	SessionTimeout      time.Duration // default 30m
	TLSHandshakeTimeout time.Duration // default 10s
	DirectoryTimeout    time.Duration // default 10s
	// AllowInsecureAuthLoopback lets clients on a loopback address
	// authenticate without TLS (local runs, like Dovecot's
	// disable_plaintext_auth=no for 127.0.0.1).
	AllowInsecureAuthLoopback bool

	Limits  Limits
	Metrics *Metrics
	Logger  *slog.Logger
}

func (o *Options) defaults() {
	if o.Hostname == "" {
		o.Hostname = "localhost"
	}
	if o.MaxMessageBytes == 0 {
		o.MaxMessageBytes = 50 << 20
	}
	if o.MaxRecipients == 0 {
		o.MaxRecipients = 100
	}
	if o.MaxLineLength == 0 {
		o.MaxLineLength = 2000
	}
	if o.MaxTransactions == 0 {
		o.MaxTransactions = 100
	}
	if o.MaxCommands == 0 {
		o.MaxCommands = 100
	}
	if o.MaxAuthAttempts == 0 {
		o.MaxAuthAttempts = 3
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 5 * time.Minute
	}
	if o.SessionTimeout == 0 {
		o.SessionTimeout = 30 * time.Minute
	}
	if o.TLSHandshakeTimeout == 0 {
		o.TLSHandshakeTimeout = 10 * time.Second
	}
	if o.DirectoryTimeout == 0 {
		o.DirectoryTimeout = 10 * time.Second
	}
	if o.Limits.Conns == nil {
		o.Limits.Conns = limits.NewConnLimiter(0)
	}
	if o.Limits.UserMessages == nil {
		o.Limits.UserMessages = limits.NewRateLimiter(0, 0, 0, nil)
	}
	if o.Limits.AuthFailures == nil {
		o.Limits.AuthFailures = limits.NewAuthFailures(10, 10*time.Minute, time.Second, 5*time.Second, nil)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
}

// Server serves one listener kind.
type Server struct {
	kind Kind
	o    Options
	m    *Metrics
	smtp *smtp.Server

	draining atomic.Bool
	mu       sync.Mutex
	lns      []*listener
}

// New returns a Server of the given kind. Options are copied.
func New(kind Kind, o Options) (*Server, error) {
	o.defaults()
	if o.Directory == nil || o.Ingester == nil {
		return nil, errors.New("server: Directory and Ingester are required")
	}
	if kind == Submissions && o.TLSConfig == nil {
		return nil, errors.New("server: submissions needs a TLS configuration")
	}
	s := &Server{kind: kind, o: o, m: o.Metrics}
	srv := smtp.NewServer(backend{s})
	srv.Domain = o.Hostname
	srv.TLSConfig = o.TLSConfig
	if kind == Submissions {
		// Already TLS: no STARTTLS on top (RFC 8314 §3.3).
		srv.TLSConfig = nil
	}
	srv.MaxMessageBytes = o.MaxMessageBytes
	srv.MaxRecipients = o.MaxRecipients
	srv.MaxLineLength = o.MaxLineLength
	srv.AllowInsecureAuth = o.AllowInsecureAuthLoopback && kind != MX
	srv.EnableSMTPUTF8 = true
	srv.EnableDSN = true
	srv.ErrorLog = errorLog{s}
	s.smtp = srv
	return s, nil
}

// Kind returns the listener kind.
func (s *Server) Kind() Kind { return s.kind }

// Serve serves SMTP on ln (already wrapped for the PROXY protocol by the
// caller if the listener needs it) until Close or Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	l := newListener(ln, s)
	s.mu.Lock()
	s.lns = append(s.lns, l)
	s.mu.Unlock()
	err := s.smtp.Serve(l)
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Close stops the listener and drops every session.
func (s *Server) Close() error {
	err := s.smtp.Close()
	if errors.Is(err, smtp.ErrServerClosed) {
		err = nil
	}
	for _, l := range s.listeners() {
		if e := l.stop(); e != nil && !errors.Is(e, net.ErrClosed) && err == nil {
			err = e
		}
	}
	return err
}

func (s *Server) listeners() []*listener {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*listener(nil), s.lns...)
}

// Shutdown drains (ARCHITECTURE.md, "Scaling and failure"): new
// connections are answered 421 and closed, a session that starts a new
// transaction gets 421, and sessions have until shortly before ctx's
// deadline to finish; those still open then get "421 4.3.2" and are
// closed (RFC 5321 §3.8), rather than being cut without a word. A margin
// before the deadline is kept for those goodbyes, so that the drain ends
// within the grace the caller gave. A client told 421 retries later; no
// message it was not given a 250 for is lost.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	soft := ctx
	if dl, ok := ctx.Deadline(); ok {
		margin := min(2*time.Second, time.Until(dl)/5)
		var cancel context.CancelFunc
		soft, cancel = context.WithDeadline(ctx, dl.Add(-margin))
		defer cancel()
	}
	err := s.smtp.Shutdown(soft)
	if errors.Is(err, smtp.ErrServerClosed) {
		err = nil
	}
	if err != nil {
		// Sessions remain: tell them, then wait for their goroutines
		// to see the closed connections.
		told := 0
		for _, l := range s.listeners() {
			for _, c := range l.open() {
				c.goodbye(replyShuttingDown)
				told++
			}
		}
		s.o.Logger.Info("drain ended; open sessions told 421", "listener", s.kind.String(), "sessions", told)
		err = nil
		for _, l := range s.listeners() {
			if e := l.waitIdle(ctx); e != nil {
				err = e
			}
		}
	}
	for _, l := range s.listeners() {
		if e := l.stop(); e != nil && !errors.Is(e, net.ErrClosed) && err == nil {
			err = e
		}
	}
	return err
}

// Draining reports whether Shutdown has begun.
func (s *Server) Draining() bool { return s.draining.Load() }

// errorLog receives go-smtp's internal errors; a recovered panic is
// counted, since a session panic is a bug (CONVENTIONS: tests fail on one).
type errorLog struct{ s *Server }

func (e errorLog) Printf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if strings.HasPrefix(msg, "panic") {
		e.s.m.panicked()
		e.s.o.Logger.Error("session panic recovered", "listener", e.s.kind.String(), "msg", msg)
		return
	}
	e.s.o.Logger.Debug("smtp connection ended with error", "listener", e.s.kind.String(), "msg", msg)
}

func (e errorLog) Println(v ...any) { e.Printf("%s", fmt.Sprintln(v...)) }

type backend struct{ s *Server }

func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return newSession(b.s, c), nil
}
