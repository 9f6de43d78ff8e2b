package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// replyShuttingDown is sent to sessions still open when the drain ends and
// to connections that arrive during it (RFC 5321 §3.8: a server that must
// shut down answers 421 and closes).
const replyShuttingDown = "421 4.3.2 Service shutting down, try again later\r\n"

// timedConn renews the read deadline before every read (the idle timeout)
// and never lets it pass the end of the session, so a client can neither
// sit idle nor trickle bytes forever (SMTP-LESSONS 6). It sits under TLS
// (STARTTLS wraps it), so the deadlines apply to the raw socket. go-smtp's
// own ReadTimeout is not used: it sets one deadline per command line and
// would cut a large DATA transfer that is making progress.
type timedConn struct {
	net.Conn
	idle       time.Duration
	sessionEnd time.Time
	// handshakeEnd, while set, caps deadlines during an implicit TLS
	// handshake; only the preparing goroutine touches it, before the
	// connection is handed to the server.
	handshakeEnd time.Time
	release      func()
	closeOnce    sync.Once

	// top is the connection go-smtp talks through (the TLS connection
	// over this one after STARTTLS or on 465), so a reply of ours can be
	// written at the right layer; set by each new session.
	top atomic.Pointer[net.Conn]
	// hardEnd (Unix nanoseconds, 0: unset) caps every deadline: set when
	// the connection must end soon (drain), so a client that stops
	// reading cannot hold our last write.
	hardEnd atomic.Int64
	// closeAfterWrite makes the next write the last: the reply it carries
	// (a 421) ends the session.
	closeAfterWrite atomic.Bool

	// Command limit. go-smtp answers NOOP, VRFY, HELP and unknown
	// commands without calling the session, and reads commands through
	// TLS, so commands cannot be counted where they are parsed. Replies
	// can: go-smtp flushes every reply line with one Write, which is one
	// Write here in plaintext and one TLS record (one Write here) under
	// TLS. The session credits the lines its transaction commands and
	// greeting earn (credit); lines beyond credit+maxCommands are answers
	// to commands outside transactions, and the next read ends the
	// session with 421.
	writes      atomic.Int64
	credit      atomic.Int64
	maxCommands int64
	onLimit     func()
}

// replyTooManyCommands ends a session over its command limit.
const replyTooManyCommands = "421 4.7.0 Too many commands, closing connection\r\n"

// earn credits n reply lines to transaction work.
func (c *timedConn) earn(n int) { c.credit.Add(int64(n)) }

func (c *timedConn) overCommandLimit() bool {
	return c.maxCommands > 0 && c.writes.Load()-c.credit.Load() > c.maxCommands
}

// topConn is the connection to write a reply to.
func (c *timedConn) topConn() net.Conn {
	if t := c.top.Load(); t != nil {
		return *t
	}
	return c
}

// goodbye writes a final 421 through the top connection, with a short
// deadline, and closes it.
func (c *timedConn) goodbye(reply string) {
	c.hardEnd.Store(time.Now().Add(2 * time.Second).UnixNano())
	top := c.topConn()
	_ = top.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_, _ = top.Write([]byte(reply))
	_ = top.Close()
	_ = c.Close()
}

func (c *timedConn) deadline() time.Time {
	d := time.Now().Add(c.idle)
	if !c.sessionEnd.IsZero() && c.sessionEnd.Before(d) {
		d = c.sessionEnd
	}
	if !c.handshakeEnd.IsZero() && c.handshakeEnd.Before(d) {
		d = c.handshakeEnd
	}
	if h := c.hardEnd.Load(); h != 0 && time.Unix(0, h).Before(d) {
		d = time.Unix(0, h)
	}
	return d
}

func (c *timedConn) Read(p []byte) (int, error) {
	if c.overCommandLimit() {
		// Called from the session's goroutine while it waits for the
		// next command: the 421 comes after the last reply. Writing
		// through a TLS connection from inside its Read is safe (reads
		// and writes take separate locks once the handshake is done).
		if c.onLimit != nil {
			c.onLimit()
		}
		c.goodbye(replyTooManyCommands)
		return 0, net.ErrClosed
	}
	if c.idle > 0 {
		if err := c.Conn.SetReadDeadline(c.deadline()); err != nil {
			return 0, err
		}
	}
	return c.Conn.Read(p)
}

func (c *timedConn) Write(p []byte) (int, error) {
	if c.idle > 0 || c.hardEnd.Load() != 0 {
		if err := c.Conn.SetWriteDeadline(c.deadline()); err != nil {
			return 0, err
		}
	}
	n, err := c.Conn.Write(p)
	c.writes.Add(1)
	if c.closeAfterWrite.Load() {
		// The reply that ends the session has gone (one TLS record or
		// one plaintext line per reply: go-smtp flushes each line).
		c.Close()
	}
	return n, err
}

// SetReadDeadline ignores deadlines set from above (crypto/tls clears them
// after a handshake); Read sets its own.
func (c *timedConn) SetReadDeadline(t time.Time) error {
	if c.idle > 0 || c.hardEnd.Load() != 0 {
		return nil
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *timedConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		if c.release != nil {
			c.release()
		}
	})
	return err
}

// remoteIP is the client address of c (the PROXY header's source when
// proxied: every wrapper delegates RemoteAddr).
func remoteIP(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// listener wraps the listener main gives Serve: it applies the per-network
// connection limit, the timeouts, and for implicit TLS (465) the TLS
// handshake, each connection in its own goroutine with its own deadline so
// a slow handshake never holds up Accept.
//
// Draining: Close (which go-smtp's Shutdown calls) stops handing
// connections to the server, but the socket stays open and each new
// connection is greeted with 421 and closed, until stop. Every connection
// handed to the server is tracked until it closes, so the drain can say
// goodbye to those still open at its end.
type listener struct {
	net.Listener
	s     *Server
	ready chan net.Conn
	errc  chan error
	done  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup

	stopOnce sync.Once
	stopErr  error

	mu    sync.Mutex
	conns map[*timedConn]struct{}
}

func newListener(inner net.Listener, s *Server) *listener {
	l := &listener{Listener: inner, s: s, ready: make(chan net.Conn), errc: make(chan error, 1), done: make(chan struct{}), conns: make(map[*timedConn]struct{})}
	go l.acceptLoop()
	return l
}

// closing reports whether Close was called.
func (l *listener) closing() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// refuse answers a connection that arrived while draining.
func (l *listener) refuse(c net.Conn) {
	l.s.m.tempfail(l.s.kind, "shutting_down")
	_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_, _ = c.Write([]byte(replyShuttingDown))
	_ = c.Close()
}

func (l *listener) track(c *timedConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.conns[c] = struct{}{}
}

func (l *listener) untrack(c *timedConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.conns, c)
}

// open returns the connections handed to the server and not yet closed.
func (l *listener) open() []*timedConn {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*timedConn, 0, len(l.conns))
	for c := range l.conns {
		out = append(out, c)
	}
	return out
}

func (l *listener) acceptLoop() {
	var tempDelay time.Duration
	for {
		raw, err := l.Listener.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				tempDelay = min(max(2*tempDelay, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(tempDelay):
					continue
				case <-l.done:
					return
				}
			}
			select {
			case l.errc <- err:
			case <-l.done:
			}
			return
		}
		tempDelay = 0
		if l.closing() {
			l.refuse(raw)
			continue
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			if c := l.prepare(raw); c != nil {
				select {
				case l.ready <- c:
				case <-l.done:
					// Prepared but never served: the server will not
					// greet it, so we refuse it here.
					l.refuse(c)
				}
			}
		}()
	}
}

func (l *listener) prepare(raw net.Conn) net.Conn {
	o := &l.s.o
	ip := remoteIP(raw.RemoteAddr())
	l.s.m.connections.WithLabelValues(l.s.kind.String()).Inc()
	release, ok := o.Limits.Conns.Acquire(ip)
	if !ok {
		l.s.m.tempfail(l.s.kind, "connection_limit")
		_ = raw.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = raw.Write([]byte("421 4.7.0 Too many connections from your network, try again later\r\n"))
		raw.Close()
		return nil
	}
	var end time.Time
	if o.SessionTimeout > 0 {
		end = time.Now().Add(o.SessionTimeout)
	}
	tc := &timedConn{Conn: raw, idle: o.IdleTimeout, sessionEnd: end, maxCommands: int64(o.MaxCommands)}
	tc.onLimit = func() { l.s.m.tempfail(l.s.kind, "command_limit") }
	// The greeting is not a command.
	tc.earn(1)
	tc.release = func() {
		release()
		l.untrack(tc)
	}
	l.track(tc)
	if l.s.kind != Submissions {
		return tc
	}
	// RFC 8314 §3.3: implicit TLS from the first byte; the handshake
	// has its own, short, deadline.
	tc.handshakeEnd = time.Now().Add(o.TLSHandshakeTimeout)
	tlsConn := tls.Server(tc, o.TLSConfig)
	err := tlsConn.Handshake()
	tc.handshakeEnd = time.Time{}
	var top net.Conn = tlsConn
	tc.top.Store(&top)
	if err != nil {
		l.s.o.Logger.Debug("TLS handshake failed", "listener", l.s.kind.String(), "client_ip", ip.String(), "err", err)
		l.s.m.tempfail(l.s.kind, "tls_handshake")
		tlsConn.Close()
		return nil
	}
	return tlsConn
}

func (l *listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case err := <-l.errc:
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops handing connections to the server. While the server
// drains the socket stays open (new connections get 421); otherwise it is
// closed at once.
func (l *listener) Close() error {
	l.once.Do(func() { close(l.done) })
	if l.s.draining.Load() {
		return nil
	}
	return l.stop()
}

// stop closes the socket and waits for connections in preparation.
func (l *listener) stop() error {
	l.once.Do(func() { close(l.done) })
	l.stopOnce.Do(func() {
		l.stopErr = l.Listener.Close()
		l.wg.Wait()
	})
	return l.stopErr
}

// baseConn finds our timedConn under what go-smtp holds (itself, or a TLS
// connection over it); nil if there is none (not served by a listener of
// ours).
func baseConn(nc net.Conn) *timedConn {
	for range 4 {
		switch c := nc.(type) {
		case *timedConn:
			return c
		case interface{ NetConn() net.Conn }:
			nc = c.NetConn()
		default:
			return nil
		}
	}
	return nil
}

// waitIdle waits until every tracked connection has closed or ctx ends.
func (l *listener) waitIdle(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		l.mu.Lock()
		n := len(l.conns)
		l.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d connections still open: %w", n, ctx.Err())
		case <-t.C:
		}
	}
}
