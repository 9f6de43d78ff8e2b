package server

import (
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"
)

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
}

func (c *timedConn) deadline() time.Time {
	d := time.Now().Add(c.idle)
	if !c.sessionEnd.IsZero() && c.sessionEnd.Before(d) {
		d = c.sessionEnd
	}
	if !c.handshakeEnd.IsZero() && c.handshakeEnd.Before(d) {
		d = c.handshakeEnd
	}
	return d
}

func (c *timedConn) Read(p []byte) (int, error) {
	if c.idle > 0 {
		if err := c.Conn.SetReadDeadline(c.deadline()); err != nil {
			return 0, err
		}
	}
	return c.Conn.Read(p)
}

func (c *timedConn) Write(p []byte) (int, error) {
	if c.idle > 0 {
		if err := c.Conn.SetWriteDeadline(c.deadline()); err != nil {
			return 0, err
		}
	}
	return c.Conn.Write(p)
}

// SetReadDeadline ignores deadlines set from above (crypto/tls clears them
// after a handshake); Read sets its own.
func (c *timedConn) SetReadDeadline(t time.Time) error {
	if c.idle > 0 {
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
type listener struct {
	net.Listener
	s     *Server
	ready chan net.Conn
	errc  chan error
	done  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
}

func newListener(inner net.Listener, s *Server) *listener {
	l := &listener{Listener: inner, s: s, ready: make(chan net.Conn), errc: make(chan error, 1), done: make(chan struct{})}
	go l.acceptLoop()
	return l
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
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			if c := l.prepare(raw); c != nil {
				select {
				case l.ready <- c:
				case <-l.done:
					c.Close()
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
	tc := &timedConn{Conn: raw, idle: o.IdleTimeout, sessionEnd: end, release: release}
	if l.s.kind != Submissions {
		return tc
	}
	// RFC 8314 §3.3: implicit TLS from the first byte; the handshake
	// has its own, short, deadline.
	tc.handshakeEnd = time.Now().Add(o.TLSHandshakeTimeout)
	tlsConn := tls.Server(tc, o.TLSConfig)
	err := tlsConn.Handshake()
	tc.handshakeEnd = time.Time{}
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

func (l *listener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.Listener.Close()
		l.wg.Wait()
	})
	return err
}
