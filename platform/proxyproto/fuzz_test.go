package proxyproto

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	pp "github.com/pires/go-proxyproto"
)

// FuzzHeader feeds arbitrary bytes as the start of a connection from a
// trusted balancer. Whatever arrives, the listener must either hand over a
// connection with usable addresses or refuse it, never panic, and never hang
// (the client half-closes, so no input can make it wait for the timeout).
func FuzzHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\nEHLO a\r\n"))
	f.Add([]byte("PROXY TCP6 2001:db8::1 2001:db8::2 4000 993\r\n"))
	f.Add([]byte("PROXY UNKNOWN ffff:f::f ffff:f::f 65535 65535\r\n"))
	f.Add([]byte("PROXY TCP4 192.0.2.1\r\n"))
	f.Add([]byte("EHLO client.example\r\n"))
	f.Add([]byte{})
	for _, h := range []*pp.Header{
		pp.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1).To4(), Port: 1}, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 2).To4(), Port: 25}),
		pp.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 1}, &net.TCPAddr{IP: net.ParseIP("2001:db8::2"), Port: 993}),
		pp.HeaderProxyFromAddrs(2, &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1).To4(), Port: 1}, &net.UDPAddr{IP: net.IPv4(192, 0, 2, 2).To4(), Port: 53}),
		pp.HeaderProxyFromAddrs(2, &net.UnixAddr{Net: "unix", Name: "/a"}, &net.UnixAddr{Net: "unix", Name: "/b"}),
		{Version: 2, Command: pp.LOCAL, TransportProtocol: pp.UNSPEC},
	} {
		b, err := h.Format()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(append(b, "a1 LOGIN\r\n"...))
		f.Add(b[:len(b)/2])
	}

	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	rejected := make(chan Rejection, 1)
	l, err := NewListener(inner, Options{
		TrustedCIDRs:  trustLoopback,
		HeaderTimeout: safety,
		OnReject:      func(r Rejection) { rejected <- r },
	})
	if err != nil {
		f.Fatal(err)
	}
	accepted := make(chan net.Conn)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	f.Cleanup(func() { l.Close() })

	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 8192 {
			return // keep it one write; the spec requires headers to arrive at once
		}
		nc, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		client := nc.(*net.TCPConn)
		defer client.Close()
		if _, err := client.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := client.CloseWrite(); err != nil {
			t.Fatal(err)
		}

		select {
		case r := <-rejected:
			if r.Reason == ReasonPanic {
				t.Fatalf("handshake panicked: %v", r.Err)
			}
			if r.Err == nil {
				t.Fatal("rejection without an error")
			}
			expectClosedByServer(t, client)
		case c := <-accepted:
			defer c.Close()
			// Addresses must be usable (a nil one would panic here).
			_ = c.RemoteAddr().String() + c.LocalAddr().String()
			if err := c.SetReadDeadline(time.Now().Add(safety)); err != nil {
				t.Fatal(err)
			}
			rest, err := io.ReadAll(c)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("reading the data after the header hung")
			}
			// What follows the header is exactly the rest of what was sent.
			if !bytes.HasSuffix(data, rest) {
				t.Fatalf("read %q after the header, not a suffix of %q", rest, data)
			}
		case <-time.After(safety):
			t.Fatal("connection neither accepted nor refused")
		}
	})
}
