// Package proxyproto wraps a net.Listener so that connections relayed by a
// TCP load balancer carry the real client address, using the PROXY protocol
// versions 1 and 2 (HAProxy's "The PROXY protocol" specification,
// https://www.haproxy.org/download/3.0/doc/proxy-protocol.txt). Header parsing
// is done by github.com/pires/go-proxyproto; this package adds Petrel's trust
// policy and keeps slow or hostile handshakes from stalling Accept.
//
// Trust policy:
//
//   - A connection from a trusted address (Options.TrustedCIDRs) must begin
//     with a valid v1 or v2 header within Options.HeaderTimeout, else it is
//     closed. Its RemoteAddr and LocalAddr are the header's source and
//     destination. A v2 LOCAL header or a v1 "PROXY UNKNOWN" line is the
//     balancer talking for itself (a health check), so the real socket
//     addresses are kept (spec §2.1, §2.2).
//   - A connection from any other address is never believed: if it opens with
//     a PROXY signature it is closed (this is almost always a balancer missing
//     from the trusted list, and failing loudly beats serving with the
//     balancer's address), otherwise it is passed through with its real
//     address, unless Options.Required refuses direct connections entirely.
//
// Each new connection is handshaken in its own goroutine and handed to Accept
// through a channel once ready, so one slow peer never delays another.
// The number of connections in handshake or waiting for Accept is bounded by
// Options.MaxPending; beyond it new connections are closed at once.
//
// Lock order: Listener.mu is a leaf lock; nothing else is locked while it is
// held. A handshake goroutine holds one slot of Listener.slots from the
// moment its connection is accepted until the connection is handed to
// Accept or closed.
package proxyproto

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	pp "github.com/pires/go-proxyproto"
)

// Defaults for zero Options fields.
const (
	DefaultHeaderTimeout = 5 * time.Second
	DefaultMaxPending    = 1024
)

// Reason says why a connection was refused. It is meant as a metrics label.
type Reason int

// Reasons for refusing a connection.
const (
	// ReasonUntrustedHeader: a PROXY header from an address not in
	// TrustedCIDRs.
	ReasonUntrustedHeader Reason = iota
	// ReasonUntrustedDirect: Required is set and the peer is not trusted.
	ReasonUntrustedDirect
	// ReasonMissingHeader: a trusted peer sent something that is not a PROXY
	// header, or closed before sending one.
	ReasonMissingHeader
	// ReasonTimeout: a trusted peer did not complete its header within
	// HeaderTimeout.
	ReasonTimeout
	// ReasonMalformed: a PROXY signature followed by an invalid header.
	ReasonMalformed
	// ReasonUnsupported: a valid header for a transport a TCP listener does
	// not serve (UDP, Unix sockets).
	ReasonUnsupported
	// ReasonOverload: MaxPending connections were already in handshake.
	ReasonOverload
	// ReasonPanic: the handshake panicked; always a bug in this package or
	// the parser.
	ReasonPanic

	numReasons
)

var reasonNames = [numReasons]string{
	ReasonUntrustedHeader: "untrusted_header",
	ReasonUntrustedDirect: "untrusted_direct",
	ReasonMissingHeader:   "missing_header",
	ReasonTimeout:         "timeout",
	ReasonMalformed:       "malformed",
	ReasonUnsupported:     "unsupported",
	ReasonOverload:        "overload",
	ReasonPanic:           "panic",
}

// String returns a short snake_case name suitable as a metrics label value.
func (r Reason) String() string {
	if r < 0 || r >= numReasons {
		return fmt.Sprintf("reason(%d)", int(r))
	}
	return reasonNames[r]
}

// Reasons lists every Reason, so a caller can pre-register metric labels.
func Reasons() []Reason {
	rs := make([]Reason, numReasons)
	for i := range rs {
		rs[i] = Reason(i)
	}
	return rs
}

// Errors given in a Rejection or returned by Conn.Read.
var (
	ErrUntrustedHeader = errors.New("proxyproto: PROXY header from an untrusted address")
	ErrUntrustedDirect = errors.New("proxyproto: direct connection from an untrusted address while PROXY protocol is required")
	ErrOverload        = errors.New("proxyproto: too many pending PROXY handshakes")
)

// Rejection describes a refused connection, for logging.
type Rejection struct {
	Reason Reason
	// Remote is the real peer address of the refused socket.
	Remote net.Addr
	// Err has the details; it is for logs, never for the peer.
	Err error
}

// Options configure a Listener. The zero value trusts nobody and passes
// every connection through with its real address.
type Options struct {
	// TrustedCIDRs are the load balancers allowed to send a PROXY header.
	// Connections from them must send one. See ParseCIDRs.
	TrustedCIDRs []netip.Prefix
	// Required refuses connections from untrusted addresses, so the service
	// is reachable only through the balancers.
	Required bool
	// HeaderTimeout bounds how long a trusted peer has to send its header
	// (DefaultHeaderTimeout if zero).
	HeaderTimeout time.Duration
	// UntrustedSniff is how long to wait for the first bytes of an untrusted
	// connection before handing it to Accept, so one that opens with a PROXY
	// header is refused before the server ever sees it. Zero hands untrusted
	// connections over at once, which is right for protocols where the
	// server speaks first (SMTP, IMAP, POP3): their clients send nothing
	// before the greeting, so any wait would delay every direct client. The
	// check then happens on the connection's first Read instead, which fails
	// with ErrUntrustedHeader.
	UntrustedSniff time.Duration
	// MaxPending bounds connections in handshake or waiting for Accept
	// (DefaultMaxPending if zero).
	MaxPending int
	// OnReject, if set, is called for every refused connection, from the
	// goroutine that refused it; it must be safe for concurrent use and
	// should not block.
	OnReject func(Rejection)
}

// Validate reports every problem with o at once.
func (o Options) Validate() error {
	var errs []error
	if o.Required && len(o.TrustedCIDRs) == 0 {
		errs = append(errs, errors.New("Required is set but TrustedCIDRs is empty: every connection would be refused"))
	}
	for _, p := range o.TrustedCIDRs {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("invalid trusted prefix %v", p))
		}
	}
	if o.HeaderTimeout < 0 {
		errs = append(errs, errors.New("HeaderTimeout is negative"))
	}
	if o.UntrustedSniff < 0 {
		errs = append(errs, errors.New("UntrustedSniff is negative"))
	}
	if o.MaxPending < 0 {
		errs = append(errs, errors.New("MaxPending is negative"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("proxyproto: invalid options: %w", errors.Join(errs...))
	}
	return nil
}

// Stats are the listener's counters since it was created.
type Stats struct {
	// Proxied connections carry the client address from a PROXY header.
	Proxied uint64
	// Local connections had a v2 LOCAL or v1 UNKNOWN header: the balancer's
	// own connections, typically health checks.
	Local uint64
	// Direct connections came from untrusted addresses without a header.
	Direct uint64
	// Rejected counts refused connections by reason.
	Rejected map[Reason]uint64
}

// Listener is a net.Listener that applies the PROXY protocol trust policy.
// Its Accept returns *Conn values.
type Listener struct {
	inner net.Listener
	opts  Options

	ready    chan acceptResult
	done     chan struct{} // closed by Close
	loopDone chan struct{} // closed when the accept loop has stopped
	loopErr  error         // why the accept loop stopped; read after loopDone
	slots    chan struct{} // one token per pending connection
	wg       sync.WaitGroup

	closeOnce sync.Once
	closeErr  error

	mu      sync.Mutex
	closed  bool
	pending map[net.Conn]struct{} // raw conns in handshake, closed by Close

	proxied, local, direct atomic.Uint64
	rejected               [numReasons]atomic.Uint64
}

type acceptResult struct {
	conn *Conn
	err  error
}

var _ net.Listener = (*Listener)(nil)

// NewListener wraps inner, which it takes ownership of: Close closes it.
func NewListener(inner net.Listener, opts Options) (*Listener, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.TrustedCIDRs = append([]netip.Prefix(nil), opts.TrustedCIDRs...)
	if opts.HeaderTimeout == 0 {
		opts.HeaderTimeout = DefaultHeaderTimeout
	}
	if opts.MaxPending == 0 {
		opts.MaxPending = DefaultMaxPending
	}
	l := &Listener{
		inner:    inner,
		opts:     opts,
		ready:    make(chan acceptResult),
		done:     make(chan struct{}),
		loopDone: make(chan struct{}),
		slots:    make(chan struct{}, opts.MaxPending),
		pending:  make(map[net.Conn]struct{}),
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l, nil
}

// Accept waits for the next connection that has passed the trust policy.
// It returns a *Conn. After Close it returns an error matching net.ErrClosed.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case r := <-l.ready:
		if r.err != nil {
			return nil, r.err
		}
		return r.conn, nil
	case <-l.done:
		return nil, fmt.Errorf("proxyproto: accept: %w", net.ErrClosed)
	case <-l.loopDone:
		return nil, l.loopErr
	}
}

// Close stops accepting, closes the wrapped listener and every connection
// still in handshake, and waits for the handshake goroutines to end.
// Connections already returned by Accept are the caller's and stay open.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		for c := range l.pending {
			c.Close()
		}
		clear(l.pending)
		l.mu.Unlock()
		close(l.done)
		l.closeErr = l.inner.Close()
		l.wg.Wait()
	})
	return l.closeErr
}

// Addr returns the wrapped listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// Stats returns a snapshot of the counters.
func (l *Listener) Stats() Stats {
	s := Stats{
		Proxied:  l.proxied.Load(),
		Local:    l.local.Load(),
		Direct:   l.direct.Load(),
		Rejected: make(map[Reason]uint64, numReasons),
	}
	for i := range l.rejected {
		s.Rejected[Reason(i)] = l.rejected[i].Load()
	}
	return s
}

func (l *Listener) acceptLoop() {
	defer l.wg.Done()
	defer close(l.loopDone)
	for {
		raw, err := l.inner.Accept()
		if err != nil {
			select {
			case <-l.done:
				l.loopErr = fmt.Errorf("proxyproto: accept: %w", net.ErrClosed)
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				l.loopErr = fmt.Errorf("proxyproto: accept: %w", err)
				return
			}
			// Other errors (EMFILE, ECONNABORTED) are handed to the caller one
			// for one, so its Serve loop applies its own back-off, as it would
			// with a plain listener.
			select {
			case l.ready <- acceptResult{err: err}:
				continue
			case <-l.done:
				l.loopErr = fmt.Errorf("proxyproto: accept: %w", net.ErrClosed)
				return
			}
		}
		select {
		case l.slots <- struct{}{}:
		default:
			raw.Close()
			l.reject(ReasonOverload, raw.RemoteAddr(), ErrOverload)
			continue
		}
		if !l.track(raw) {
			raw.Close()
			<-l.slots
			continue // Close has run; the next Accept fails and we return
		}
		l.wg.Add(1)
		go l.handshake(raw)
	}
}

func (l *Listener) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.pending[c] = struct{}{}
	return true
}

func (l *Listener) untrack(c net.Conn) {
	l.mu.Lock()
	delete(l.pending, c)
	l.mu.Unlock()
}

func (l *Listener) reject(r Reason, remote net.Addr, err error) {
	l.rejected[r].Add(1)
	if l.opts.OnReject != nil {
		l.opts.OnReject(Rejection{Reason: r, Remote: remote, Err: err})
	}
}

func (l *Listener) handshake(raw net.Conn) {
	defer l.wg.Done()
	defer func() { <-l.slots }()

	conn, reason, err := l.prepareRecovered(raw)
	l.untrack(raw)
	if err != nil {
		raw.Close()
		l.reject(reason, raw.RemoteAddr(), err)
		return
	}
	// Counted before the hand-over so Stats is current when Accept returns.
	conn.count()
	select {
	case l.ready <- acceptResult{conn: conn}:
	case <-l.done:
		raw.Close()
	}
}

// prepareRecovered turns a parser panic into a refused connection: one
// peer's bytes must never bring the whole server down.
func (l *Listener) prepareRecovered(raw net.Conn) (conn *Conn, reason Reason, err error) {
	defer func() {
		if p := recover(); p != nil {
			conn, reason, err = nil, ReasonPanic, fmt.Errorf("proxyproto: panic in handshake: %v", p)
		}
	}()
	return l.prepare(raw)
}

func (l *Listener) trusted(addr net.Addr) bool {
	ap, ok := addrPort(addr)
	if !ok {
		return false
	}
	ip := ap.Addr().Unmap()
	for _, p := range l.opts.TrustedCIDRs {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func addrPort(a net.Addr) (netip.AddrPort, bool) {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort(), true
	case interface{ AddrPort() netip.AddrPort }:
		return a.AddrPort(), true
	}
	if a == nil {
		return netip.AddrPort{}, false
	}
	ap, err := netip.ParseAddrPort(a.String())
	return ap, err == nil
}

// readerSize leaves room for the largest v2 header the parser accepts plus
// the first bytes of the client's own data that may arrive with it.
const readerSize = 4096 + 16 + 512

func (l *Listener) prepare(raw net.Conn) (*Conn, Reason, error) {
	br := bufio.NewReaderSize(raw, readerSize)
	remote := raw.RemoteAddr()
	if l.trusted(remote) {
		return l.readHeader(raw, br)
	}
	if l.opts.Required {
		return nil, ReasonUntrustedDirect, ErrUntrustedDirect
	}
	c := &Conn{Conn: raw, br: br, listener: l, kind: kindDirect}
	c.checkFirst.Store(true)
	if l.opts.UntrustedSniff > 0 {
		if err := raw.SetReadDeadline(time.Now().Add(l.opts.UntrustedSniff)); err != nil {
			return nil, ReasonMissingHeader, fmt.Errorf("proxyproto: set sniff deadline: %w", err)
		}
		v := sniff(br)
		if err := raw.SetReadDeadline(time.Time{}); err != nil {
			return nil, ReasonMissingHeader, fmt.Errorf("proxyproto: clear sniff deadline: %w", err)
		}
		switch v {
		case isHeader:
			return nil, ReasonUntrustedHeader, ErrUntrustedHeader
		case notHeader:
			c.checkFirst.Store(false)
		}
	}
	return c, 0, nil
}

func (l *Listener) readHeader(raw net.Conn, br *bufio.Reader) (*Conn, Reason, error) {
	if err := raw.SetReadDeadline(time.Now().Add(l.opts.HeaderTimeout)); err != nil {
		return nil, ReasonMissingHeader, fmt.Errorf("proxyproto: set header deadline: %w", err)
	}
	h, err := pp.Read(br)
	if err != nil {
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			return nil, ReasonTimeout, fmt.Errorf("proxyproto: no complete header within %v: %w", l.opts.HeaderTimeout, err)
		case errors.Is(err, pp.ErrNoProxyProtocol):
			return nil, ReasonMissingHeader, fmt.Errorf("proxyproto: trusted peer sent no header: %w", err)
		default:
			return nil, ReasonMalformed, fmt.Errorf("proxyproto: read header: %w", err)
		}
	}
	if err := raw.SetReadDeadline(time.Time{}); err != nil {
		return nil, ReasonMissingHeader, fmt.Errorf("proxyproto: clear header deadline: %w", err)
	}
	c := &Conn{Conn: raw, br: br, listener: l, header: h}
	if h.Command.IsLocal() {
		// Spec §2.2: for LOCAL the receiver must use the real connection
		// endpoints and ignore any address block.
		c.kind = kindLocal
		return c, 0, nil
	}
	src, dst, ok := h.TCPAddrs()
	if !ok || src == nil || dst == nil {
		return nil, ReasonUnsupported, fmt.Errorf("proxyproto: header for transport %#x on a TCP listener", byte(h.TransportProtocol))
	}
	c.kind = kindProxied
	c.remote, c.local = src, dst
	return c, 0, nil
}
