package smtpout

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/textproto"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/petrel-mail/petrel/services/delivery/internal/route"
)

// session is one SMTP connection, owned by one delivery at a time or idle
// in the pool.
type session struct {
	client   *smtp.Client
	conn     net.Conn // the TCP connection, closed to abort anything
	host     string
	addr     string
	tls      bool
	messages int
	timer    *time.Timer // idle expiry while pooled
}

func (s *session) close() { s.conn.Close() }

// quit ends the session politely but without waiting long.
func (s *session) quit() {
	s.client.CommandTimeout = 10 * time.Second
	s.client.Quit()
	s.conn.Close()
}

func (t *Transport) tlsConfig(req TLSRequirement, serverName string) *tls.Config {
	var cfg *tls.Config
	if req.Config != nil {
		cfg = req.Config.Clone()
	} else {
		cfg = &tls.Config{}
		// RFC 7435: unauthenticated encryption beats plaintext; most MX
		// certificates do not match the MX name.
		cfg.InsecureSkipVerify = req.Mode == TLSOpportunistic
	}
	if cfg.ServerName == "" {
		cfg.ServerName = serverName
	}
	return cfg
}

// connect opens a session: TCP, greeting, EHLO, STARTTLS as the policy
// says, then go-smtp's client (EHLO again) and AUTH towards a smarthost.
func (t *Transport) connect(ctx context.Context, rt route.Route, host route.Host, hostport string, req TLSRequirement, noTLS bool) (*session, *hostFailure) {
	o := &t.opts
	fail := func(enhanced, detail string, reply *Reply) *hostFailure {
		return &hostFailure{enhanced: enhanced, detail: detail, reply: reply, host: host.Name, addr: hostport}
	}
	replyFail := func(err error, enhanced, what string) *hostFailure {
		var pe *textproto.Error
		if errors.As(err, &pe) {
			r := parseReply(pe.Code, pe.Msg)
			return fail(enhancedOf(r), what+" refused", &r)
		}
		return fail(enhanced, what+": "+err.Error(), nil)
	}

	dctx, cancel := context.WithTimeout(ctx, o.DialTimeout)
	raw, err := o.Dialer.DialContext(dctx, "tcp", hostport)
	cancel()
	if err != nil {
		hf := fail("4.4.1", "connect: "+err.Error(), nil)
		hf.silent = true
		return nil, hf
	}
	ok := false
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer func() {
		stop()
		if !ok {
			raw.Close()
		}
	}()

	var conn net.Conn = &deadlineConn{Conn: raw, block: o.DataBlockTimeout}
	cfg := t.tlsConfig(req, host.Name)
	tlsOn := false
	handshake := func() error {
		tc := tls.Client(conn, cfg)
		tc.SetDeadline(time.Now().Add(o.CommandTimeout))
		if err := tc.HandshakeContext(ctx); err != nil {
			return err
		}
		conn, tlsOn = tc, true
		return nil
	}
	if rt.Smarthost != nil && rt.Smarthost.ImplicitTLS {
		if err := handshake(); err != nil {
			return nil, fail("4.7.5", "TLS handshake: "+err.Error(), nil)
		}
	}

	br := bufio.NewReader(conn)
	tr := textproto.NewReader(br)
	conn.SetDeadline(time.Now().Add(o.CommandTimeout))
	_, greeting, err := tr.ReadResponse(220)
	if err != nil {
		hf := replyFail(err, "4.4.2", "greeting")
		hf.silent = true
		return nil, hf
	}
	if _, err := io.WriteString(conn, "EHLO "+o.EHLOName+"\r\n"); err != nil {
		return nil, fail("4.4.2", "EHLO: "+err.Error(), nil)
	}
	_, ehlo, err := tr.ReadResponse(250)
	starttls := false
	if err != nil {
		var pe *textproto.Error
		if !errors.As(err, &pe) || (pe.Code != 500 && pe.Code != 502) {
			return nil, replyFail(err, "4.4.2", "EHLO")
		}
		// An RFC 821 server: go-smtp falls back to HELO below.
	} else {
		for _, line := range strings.Split(ehlo, "\n")[1:] {
			if kw, _, _ := strings.Cut(strings.TrimSpace(line), " "); strings.EqualFold(kw, "STARTTLS") {
				starttls = true
			}
		}
	}

	if !tlsOn {
		switch {
		case req.Mode == TLSRequired && !starttls:
			return nil, fail("4.7.4", "TLS is required but the server does not offer STARTTLS", nil)
		case req.Mode != TLSDisabled && starttls && !noTLS:
			if _, err := io.WriteString(conn, "STARTTLS\r\n"); err != nil {
				return nil, fail("4.4.2", "STARTTLS: "+err.Error(), nil)
			}
			if _, _, err := tr.ReadResponse(220); err != nil {
				var pe *textproto.Error
				if req.Mode == TLSRequired || !errors.As(err, &pe) {
					return nil, replyFail(err, "4.7.5", "STARTTLS")
				}
				// Opportunistic: the session goes on in plaintext.
				break
			}
			// Bytes that arrived with the 220 were sent before TLS and
			// would be read as if protected (CVE-2011-0411).
			if br.Buffered() > 0 {
				return nil, fail("4.5.0", "the server sent data after its STARTTLS reply", nil)
			}
			if err := handshake(); err != nil {
				if req.Mode == TLSRequired {
					return nil, fail("4.7.5", "TLS handshake: "+err.Error(), nil)
				}
				return nil, fail(errTLSFallback, err.Error(), nil)
			}
		}
	}
	if br.Buffered() > 0 {
		return nil, fail("4.5.0", "the server sent unsolicited data", nil)
	}
	conn.SetDeadline(time.Time{})

	greetLine, _, _ := strings.Cut(greeting, "\n")
	c := smtp.NewClient(&replayConn{Conn: conn, pending: []byte("220 " + greetLine + "\r\n")})
	c.CommandTimeout = o.CommandTimeout
	c.SubmissionTimeout = o.FinalDotTimeout
	if err := c.Hello(o.EHLOName); err != nil {
		return nil, smtpFail(fail, err, "EHLO")
	}
	if sh := rt.Smarthost; sh != nil && sh.Username != "" {
		if err := c.Auth(sasl.NewPlainClient("", sh.Username, sh.Password)); err != nil {
			// Our credentials are wrong: an operator must fix them, so
			// defer rather than bounce.
			hf := smtpFail(fail, err, "AUTH at smarthost")
			hf.enhanced = "4" + hf.enhanced[1:]
			return nil, hf
		}
	}
	ok = true
	return &session{client: c, conn: raw, host: host.Name, addr: hostport, tls: tlsOn}, nil
}

func smtpFail(fail func(string, string, *Reply) *hostFailure, err error, what string) *hostFailure {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		r := replyOf(se)
		return fail(enhancedOf(r), what+" refused", &r)
	}
	return fail("4.4.2", what+": "+err.Error(), nil)
}

// replayConn hands go-smtp the greeting we already read, so that it can
// start its session on a connection that is past the greeting (and maybe
// past STARTTLS).
type replayConn struct {
	net.Conn
	pending []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// deadlineConn bounds every write, so a peer that stops reading the
// message body cannot stall us (RFC 5321 §4.5.3.2.5: 3 minutes per data
// block). go-smtp sets deadlines only around commands.
type deadlineConn struct {
	net.Conn
	block time.Duration
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(c.block))
	return c.Conn.Write(p)
}

// errReader remembers a read error, to tell a failing source (our blob
// store) from a failing destination (the network).
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}
