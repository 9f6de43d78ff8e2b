package proxyproto

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	pp "github.com/pires/go-proxyproto"
)

// All test traffic comes from 127.0.0.1: "trusted" and "untrusted" are made by
// choosing the trusted list.
var (
	trustLoopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	trustElsewere = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
)

// safety bounds a wait that should end quickly; reaching it means a hang.
const safety = 10 * time.Second

type harness struct {
	t        *testing.T
	l        *Listener
	accepted chan net.Conn
	rejected chan Rejection
}

func newHarness(t *testing.T, opts Options) *harness {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, accepted: make(chan net.Conn, 16), rejected: make(chan Rejection, 16)}
	opts.OnReject = func(r Rejection) { h.rejected <- r }
	h.l, err = NewListener(inner, opts)
	if err != nil {
		inner.Close()
		t.Fatal(err)
	}
	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		for {
			c, err := h.l.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("Accept: %v", err)
				}
				return
			}
			h.accepted <- c
		}
	}()
	t.Cleanup(func() {
		if err := h.l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		<-acceptDone
		close(h.accepted)
		for c := range h.accepted {
			c.Close()
		}
		if n := h.l.Stats().Rejected[ReasonPanic]; n != 0 {
			t.Errorf("%d handshakes panicked", n)
		}
	})
	return h
}

func (h *harness) dial() *net.TCPConn {
	h.t.Helper()
	c, err := net.Dial("tcp", h.l.Addr().String())
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// dialSend connects and writes b in one write, as balancers must (spec §2).
func (h *harness) dialSend(b []byte) *net.TCPConn {
	h.t.Helper()
	c := h.dial()
	if _, err := c.Write(b); err != nil {
		h.t.Fatal(err)
	}
	return c
}

func (h *harness) accept() *Conn {
	h.t.Helper()
	select {
	case c := <-h.accepted:
		h.t.Cleanup(func() { c.Close() })
		return c.(*Conn)
	case r := <-h.rejected:
		h.t.Fatalf("connection rejected (%v): %v", r.Reason, r.Err)
	case <-time.After(safety):
		h.t.Fatal("no connection accepted")
	}
	return nil
}

func (h *harness) expectReject(want Reason) Rejection {
	h.t.Helper()
	select {
	case r := <-h.rejected:
		if r.Reason != want {
			h.t.Fatalf("rejected with %v (%v), want %v", r.Reason, r.Err, want)
		}
		return r
	case c := <-h.accepted:
		h.t.Fatalf("connection from %v accepted, want rejection %v", c.RemoteAddr(), want)
	case <-time.After(safety):
		h.t.Fatalf("no rejection %v", want)
	}
	return Rejection{}
}

// expectClosedByServer reads until the server closes the connection.
func expectClosedByServer(t *testing.T, c net.Conn) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(safety)); err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("server did not close the connection")
	}
	if n != 0 {
		t.Fatalf("server sent %d bytes before closing", n)
	}
}

// converse proves the connection carries data both ways, starting with
// whatever the client sent after the header.
func converse(t *testing.T, server *Conn, client net.Conn, pipelined string) {
	t.Helper()
	if err := server.SetDeadline(time.Now().Add(safety)); err != nil {
		t.Fatal(err)
	}
	if err := client.SetDeadline(time.Now().Add(safety)); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Write([]byte("220 hello\r\n")); err != nil {
		t.Fatal(err)
	}
	greeting := make([]byte, len("220 hello\r\n"))
	if _, err := io.ReadFull(client, greeting); err != nil || string(greeting) != "220 hello\r\n" {
		t.Fatalf("client got %q, %v", greeting, err)
	}
	if _, err := client.Write([]byte("QUIT\r\n")); err != nil {
		t.Fatal(err)
	}
	want := pipelined + "QUIT\r\n"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(server, got); err != nil || string(got) != want {
		t.Fatalf("server read %q, %v; want %q", got, err, want)
	}
}

func TestProxiedV1(t *testing.T) {
	for _, tc := range []struct {
		name, header, remote, local string
	}{
		{"tcp4", "PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\n", "192.0.2.1:56324", "198.51.100.2:25"},
		{"tcp6", "PROXY TCP6 2001:db8::1 2001:db8::2 4000 993\r\n", "[2001:db8::1]:4000", "[2001:db8::2]:993"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{TrustedCIDRs: trustLoopback, Required: true})
			// The client's first bytes ride in the same segment as the header
			// and must not be lost.
			client := h.dialSend([]byte(tc.header + "EHLO a\r\n"))
			server := h.accept()
			if got := server.RemoteAddr().String(); got != tc.remote {
				t.Errorf("RemoteAddr = %s, want %s", got, tc.remote)
			}
			if got := server.LocalAddr().String(); got != tc.local {
				t.Errorf("LocalAddr = %s, want %s", got, tc.local)
			}
			if !server.Proxied() || server.HealthCheck() || server.Header().Version != 1 {
				t.Errorf("Proxied=%v HealthCheck=%v Header=%+v", server.Proxied(), server.HealthCheck(), server.Header())
			}
			converse(t, server, client, "EHLO a\r\n")
			if s := h.l.Stats(); s.Proxied != 1 || s.Direct != 0 || s.Local != 0 {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

func TestProxiedV2(t *testing.T) {
	for _, tc := range []struct {
		name     string
		src, dst *net.TCPAddr
		tp       pp.AddressFamilyAndProtocol
	}{
		{"tcp4", &net.TCPAddr{IP: net.ParseIP("203.0.113.9").To4(), Port: 40000}, &net.TCPAddr{IP: net.ParseIP("198.51.100.7").To4(), Port: 587}, pp.TCPv4},
		{"tcp6", &net.TCPAddr{IP: net.ParseIP("2001:db8::9"), Port: 40001}, &net.TCPAddr{IP: net.ParseIP("2001:db8::7"), Port: 465}, pp.TCPv6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{TrustedCIDRs: trustLoopback})
			hdr := &pp.Header{Version: 2, Command: pp.PROXY, TransportProtocol: tc.tp, SourceAddr: tc.src, DestinationAddr: tc.dst}
			// A TLV, as balancers send (PP2_TYPE_AUTHORITY), must be skipped.
			if err := hdr.SetTLVs([]pp.TLV{{Type: pp.PP2_TYPE_AUTHORITY, Value: []byte("mx.example")}}); err != nil {
				t.Fatal(err)
			}
			raw, err := hdr.Format()
			if err != nil {
				t.Fatal(err)
			}
			client := h.dialSend(append(raw, "a001 CAPABILITY\r\n"...))
			server := h.accept()
			if got := server.RemoteAddr().String(); got != tc.src.String() {
				t.Errorf("RemoteAddr = %s, want %s", got, tc.src)
			}
			if got := server.LocalAddr().String(); got != tc.dst.String() {
				t.Errorf("LocalAddr = %s, want %s", got, tc.dst)
			}
			tlvs, err := server.Header().TLVs()
			if err != nil || len(tlvs) != 1 || string(tlvs[0].Value) != "mx.example" {
				t.Errorf("TLVs = %v, %v", tlvs, err)
			}
			converse(t, server, client, "a001 CAPABILITY\r\n")
		})
	}
}

func TestHealthCheckKeepsRealAddress(t *testing.T) {
	v2Local, err := (&pp.Header{Version: 2, Command: pp.LOCAL, TransportProtocol: pp.UNSPEC}).Format()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		header []byte
	}{
		{"v2 LOCAL", v2Local},
		{"v1 UNKNOWN", []byte("PROXY UNKNOWN\r\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{TrustedCIDRs: trustLoopback, Required: true})
			client := h.dialSend(tc.header)
			server := h.accept()
			if got, want := server.RemoteAddr().String(), client.LocalAddr().String(); got != want {
				t.Errorf("RemoteAddr = %s, want the real peer %s", got, want)
			}
			if got, want := server.LocalAddr().String(), client.RemoteAddr().String(); got != want {
				t.Errorf("LocalAddr = %s, want the real socket %s", got, want)
			}
			if !server.HealthCheck() || server.Proxied() {
				t.Errorf("HealthCheck=%v Proxied=%v", server.HealthCheck(), server.Proxied())
			}
			converse(t, server, client, "")
			if s := h.l.Stats(); s.Local != 1 {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

// TestUntrustedHeaderRefusedBeforeAccept: with UntrustedSniff, a header from
// an address outside the trusted list never reaches the server.
func TestUntrustedHeaderRefusedBeforeAccept(t *testing.T) {
	v2, err := pp.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1}, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 2), Port: 25}).Format()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		header []byte
	}{
		{"v1", []byte("PROXY TCP4 192.0.2.1 192.0.2.2 1 25\r\n")},
		{"v2", v2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{TrustedCIDRs: trustElsewere, UntrustedSniff: safety})
			spoofer := h.dialSend(tc.header)
			expectClosedByServer(t, spoofer)
			r := h.expectReject(ReasonUntrustedHeader)
			if !errors.Is(r.Err, ErrUntrustedHeader) {
				t.Errorf("rejection error %v", r.Err)
			}
			// The next connection is the first one Accept returns: the
			// spoofer's never got there.
			client := h.dialSend([]byte("HELLO\r\n"))
			server := h.accept()
			if got, want := server.RemoteAddr().String(), client.LocalAddr().String(); got != want {
				t.Fatalf("accepted %s, want the second client %s", got, want)
			}
			converse(t, server, client, "HELLO\r\n")
			if s := h.l.Stats(); s.Rejected[ReasonUntrustedHeader] != 1 || s.Direct != 1 {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

// TestUntrustedHeaderRefusedOnFirstRead: without sniffing (the setting for
// server-speaks-first protocols) the server gets the connection but its first
// read fails and the client is disconnected.
func TestUntrustedHeaderRefusedOnFirstRead(t *testing.T) {
	h := newHarness(t, Options{TrustedCIDRs: trustElsewere})
	spoofer := h.dialSend([]byte("PROXY TCP4 192.0.2.1 192.0.2.2 1 25\r\n"))
	server := h.accept()
	if err := server.SetReadDeadline(time.Now().Add(safety)); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Read(make([]byte, 1)); !errors.Is(err, ErrUntrustedHeader) {
		t.Fatalf("first Read: %v, want ErrUntrustedHeader", err)
	}
	expectClosedByServer(t, spoofer)
	h.expectReject(ReasonUntrustedHeader)
}

func TestUntrustedDirectPassesThrough(t *testing.T) {
	for _, sniff := range []time.Duration{0, safety} {
		t.Run("sniff="+sniff.String(), func(t *testing.T) {
			h := newHarness(t, Options{TrustedCIDRs: trustElsewere, UntrustedSniff: sniff})
			// A client that speaks first (e.g. a TLS ClientHello on 993),
			// so a sniffing listener decides at once.
			client := h.dialSend([]byte("\x16\x03\x01 hello"))
			server := h.accept()
			if got, want := server.RemoteAddr().String(), client.LocalAddr().String(); got != want {
				t.Errorf("RemoteAddr = %s, want %s", got, want)
			}
			if server.Proxied() || server.Header() != nil {
				t.Error("direct connection reported as proxied")
			}
			converse(t, server, client, "\x16\x03\x01 hello")
			if s := h.l.Stats(); s.Direct != 1 {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

// TestServerSpeaksFirst: an untrusted client that waits for the greeting is
// handed over at once when not sniffing.
func TestServerSpeaksFirst(t *testing.T) {
	h := newHarness(t, Options{TrustedCIDRs: trustElsewere})
	client := h.dial()
	server := h.accept()
	converse(t, server, client, "")
}

func TestRequiredRefusesUntrustedDirect(t *testing.T) {
	h := newHarness(t, Options{TrustedCIDRs: trustElsewere, Required: true})
	client := h.dial()
	expectClosedByServer(t, client)
	h.expectReject(ReasonUntrustedDirect)
}

func TestTrustedRefusals(t *testing.T) {
	udp, err := (&pp.Header{Version: 2, Command: pp.PROXY, TransportProtocol: pp.UDPv4,
		SourceAddr:      &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1).To4(), Port: 1},
		DestinationAddr: &net.UDPAddr{IP: net.IPv4(192, 0, 2, 2).To4(), Port: 2}}).Format()
	if err != nil {
		t.Fatal(err)
	}
	badVersion := append(append([]byte(nil), pp.SIGV2...), 0x31, 0x11, 0, 12)
	badLength := append(append([]byte(nil), pp.SIGV2...), 0x21, 0x11, 0, 4, 1, 2, 3, 4)
	for _, tc := range []struct {
		name string
		data []byte
		want Reason
	}{
		{"v1 bad address", []byte("PROXY TCP4 999.0.2.1 192.0.2.2 1 25\r\n"), ReasonMalformed},
		{"v1 missing ports", []byte("PROXY TCP4 192.0.2.1 192.0.2.2\r\n"), ReasonMalformed},
		{"v1 family mismatch", []byte("PROXY TCP4 2001:db8::1 2001:db8::2 1 2\r\n"), ReasonMalformed},
		{"v1 no CRLF", []byte("PROXY TCP4 192.0.2.1 192.0.2.2 1 25\n"), ReasonMalformed},
		{"v1 too long", []byte("PROXY TCP4 " + strings.Repeat("1", 120) + "\r\n"), ReasonMalformed},
		{"v2 bad version", badVersion, ReasonMalformed},
		{"v2 bad length", badLength, ReasonMalformed},
		{"v2 UDP", udp, ReasonUnsupported},
		{"no header", []byte("EHLO spoof.example\r\n"), ReasonMissingHeader},
		{"closed before header", nil, ReasonMissingHeader},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{TrustedCIDRs: trustLoopback, HeaderTimeout: safety})
			c := h.dialSend(tc.data)
			if tc.data == nil {
				if err := c.CloseWrite(); err != nil {
					t.Fatal(err)
				}
			}
			expectClosedByServer(t, c)
			h.expectReject(tc.want)
			if s := h.l.Stats(); s.Rejected[tc.want] != 1 || s.Proxied+s.Direct+s.Local != 0 {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

func TestTrustedWithoutHeaderTimesOut(t *testing.T) {
	h := newHarness(t, Options{TrustedCIDRs: trustLoopback, HeaderTimeout: 100 * time.Millisecond})
	silent := h.dial()
	expectClosedByServer(t, silent)
	r := h.expectReject(ReasonTimeout)
	if !errors.Is(r.Err, os.ErrDeadlineExceeded) {
		t.Errorf("rejection error %v", r.Err)
	}
	// A partial v2 header is a timeout too: the parser waits for the rest.
	partial := h.dialSend(pp.SIGV2[:8])
	expectClosedByServer(t, partial)
	h.expectReject(ReasonTimeout)
}

// waitPending waits until n connections are in handshake.
func waitPending(t *testing.T, l *Listener, n int) {
	t.Helper()
	deadline := time.Now().Add(safety)
	for {
		l.mu.Lock()
		got := len(l.pending)
		l.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections in handshake, want %d", got, n)
		}
		time.Sleep(time.Millisecond) // polling interval, not a wait for an event
	}
}

func TestSlowHandshakeDoesNotBlockAccept(t *testing.T) {
	h := newHarness(t, Options{TrustedCIDRs: trustLoopback, HeaderTimeout: time.Hour})
	slow := h.dialSend(pp.SIGV2[:4]) // a header that never completes
	waitPending(t, h.l, 1)

	fast := h.dialSend([]byte("PROXY TCP4 192.0.2.5 192.0.2.6 5555 25\r\n"))
	server := h.accept()
	if got := server.RemoteAddr().String(); got != "192.0.2.5:5555" {
		t.Fatalf("accepted %s, want the fast client", got)
	}
	converse(t, server, fast, "")
	waitPending(t, h.l, 1) // the slow one is still in handshake

	// Close ends the slow handshake instead of leaving it to the timeout.
	if err := h.l.Close(); err != nil {
		t.Fatal(err)
	}
	expectClosedByServer(t, slow)
	if _, err := h.l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
}

func TestOverload(t *testing.T) {
	h := newHarness(t, Options{TrustedCIDRs: trustLoopback, HeaderTimeout: time.Hour, MaxPending: 1})
	slow := h.dial()
	waitPending(t, h.l, 1)
	extra := h.dial()
	expectClosedByServer(t, extra)
	h.expectReject(ReasonOverload)
	slow.Close()
	h.expectReject(ReasonMissingHeader)

	// The slot is free again.
	client := h.dialSend([]byte("PROXY TCP4 192.0.2.5 192.0.2.6 5555 25\r\n"))
	converse(t, h.accept(), client, "")
}

func TestOptionsValidate(t *testing.T) {
	err := Options{Required: true, HeaderTimeout: -1, MaxPending: -1}.Validate()
	if err == nil {
		t.Fatal("invalid options accepted")
	}
	for _, want := range []string{"TrustedCIDRs is empty", "HeaderTimeout", "MaxPending"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if err := (Options{}).Validate(); err != nil {
		t.Errorf("zero options: %v", err)
	}
}

func TestParseCIDRs(t *testing.T) {
	got, err := ParseCIDRs(" 10.0.0.0/8, 192.168.1.7 ,fd00::/8,::1")
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("192.168.1.7/32"),
		netip.MustParsePrefix("fd00::/8"),
		netip.MustParsePrefix("::1/128"),
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d = %v, want %v", i, got[i], want[i])
		}
	}
	if got, err := ParseCIDRs("  "); err != nil || got != nil {
		t.Errorf("blank list: %v, %v", got, err)
	}

	_, err = ParseCIDRs("10.1.2.3/8,,bogus,10.0.0.0/33,::ffff:10.0.0.0/104")
	if err == nil {
		t.Fatal("bad list accepted")
	}
	for _, want := range []string{
		`entry 1 "10.1.2.3/8": host bits set; did you mean 10.0.0.0/8?`,
		"entry 2: empty",
		`entry 3 "bogus": not an IP address`,
		`entry 4 "10.0.0.0/33": not a valid CIDR prefix`,
		`entry 5 "::ffff:10.0.0.0/104": IPv4-mapped`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want verdict
	}{
		{[]byte("PROXY TCP4"), isHeader},
		{[]byte("PRO"), maybeHeader},
		{[]byte("POST / HTTP/1.1"), notHeader},
		{pp.SIGV2, isHeader},
		{pp.SIGV2[:5], maybeHeader},
		{[]byte("\r\nQUIT"), notHeader},
		{[]byte{}, maybeHeader},
	} {
		if got := classify(tc.in); got != tc.want {
			t.Errorf("classify(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
