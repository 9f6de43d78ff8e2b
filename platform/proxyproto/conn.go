package proxyproto

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"sync"
	"sync/atomic"

	pp "github.com/pires/go-proxyproto"
)

type connKind int

const (
	kindDirect connKind = iota
	kindProxied
	kindLocal
)

// Conn is a connection returned by Listener.Accept. RemoteAddr and LocalAddr
// report the addresses from the PROXY header when there was one.
type Conn struct {
	net.Conn // the raw socket; Write, Close and deadlines go straight to it

	// br holds bytes read past the header; Read drains it before going back
	// to the socket.
	br       *bufio.Reader
	listener *Listener
	kind     connKind
	header   *pp.Header
	remote   net.Addr // from the header; nil means the socket's own
	local    net.Addr

	// checkFirst is set on direct connections whose first bytes have not yet
	// been seen: the first Read refuses a PROXY signature (see
	// Options.UntrustedSniff).
	checkFirst atomic.Bool
	firstMu    sync.Mutex
}

var _ net.Conn = (*Conn)(nil)

func (c *Conn) count() {
	switch c.kind {
	case kindProxied:
		c.listener.proxied.Add(1)
	case kindLocal:
		c.listener.local.Add(1)
	default:
		c.listener.direct.Add(1)
	}
}

// RemoteAddr is the client's address: the header's source address for a
// proxied connection, otherwise the socket peer.
func (c *Conn) RemoteAddr() net.Addr {
	if c.remote != nil {
		return c.remote
	}
	return c.Conn.RemoteAddr()
}

// LocalAddr is the address the client connected to: the header's destination
// address for a proxied connection, otherwise the socket's own.
func (c *Conn) LocalAddr() net.Addr {
	if c.local != nil {
		return c.local
	}
	return c.Conn.LocalAddr()
}

// Header returns the PROXY header the connection began with, or nil for a
// direct connection. TLVs (e.g. the balancer's TLS details) are in it.
func (c *Conn) Header() *pp.Header { return c.header }

// Proxied reports whether RemoteAddr came from a PROXY header.
func (c *Conn) Proxied() bool { return c.kind == kindProxied }

// HealthCheck reports whether the balancer said, with a v2 LOCAL or v1
// UNKNOWN header, that it opened the connection for itself.
func (c *Conn) HealthCheck() bool { return c.kind == kindLocal }

// Raw returns the underlying socket, e.g. to set TCP options. Reading from
// it directly would skip bytes already buffered after the header.
func (c *Conn) Raw() net.Conn { return c.Conn }

// Read reads the client's data, starting with any bytes that arrived in the
// same segment as the PROXY header.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.checkFirst.Load() {
		if err := c.checkFirstBytes(); err != nil {
			return 0, err
		}
	}
	if c.br.Buffered() > 0 {
		return c.br.Read(p)
	}
	return c.Conn.Read(p)
}

// checkFirstBytes refuses a direct connection whose data opens with a PROXY
// signature. It only looks at what the first read delivered: a peer that
// splits the signature across segments gets through, which is harmless since
// a header from an untrusted peer is never interpreted, only passed on as
// data the protocol will reject. The check exists to make a balancer missing
// from TrustedCIDRs fail loudly.
func (c *Conn) checkFirstBytes() error {
	c.firstMu.Lock()
	defer c.firstMu.Unlock()
	if !c.checkFirst.Load() {
		return nil
	}
	if _, err := c.br.Peek(1); err != nil {
		// Nothing arrived (deadline, EOF): the check stays pending.
		return err
	}
	first, _ := c.br.Peek(c.br.Buffered())
	if classify(first) == isHeader {
		c.Conn.Close()
		c.listener.reject(ReasonUntrustedHeader, c.Conn.RemoteAddr(), ErrUntrustedHeader)
		return ErrUntrustedHeader
	}
	c.checkFirst.Store(false)
	return nil
}

type verdict int

const (
	notHeader   verdict = iota
	isHeader            // a complete v1 or v2 signature
	maybeHeader         // a strict prefix of a signature: need more bytes
)

var signatures = [][]byte{pp.SIGV1, pp.SIGV2}

func classify(b []byte) verdict {
	v := notHeader
	for _, sig := range signatures {
		n := min(len(b), len(sig))
		if bytes.Equal(b[:n], sig[:n]) {
			if n == len(sig) {
				return isHeader
			}
			v = maybeHeader
		}
	}
	return v
}

// sniff waits (until the read deadline set by the caller) for enough of an
// untrusted connection's first bytes to tell whether they are a PROXY
// signature. It returns maybeHeader when the deadline passed undecided.
func sniff(br *bufio.Reader) verdict {
	want := 1
	for {
		if _, err := br.Peek(want); err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return notHeader
			}
			return maybeHeader
		}
		b, _ := br.Peek(br.Buffered())
		v := classify(b)
		if v != maybeHeader {
			return v
		}
		want = len(b) + 1
	}
}
