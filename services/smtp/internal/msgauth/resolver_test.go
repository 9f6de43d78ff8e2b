package msgauth

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDNSResolver(t *testing.T) {
	d := newTestDNS(t)
	d.add(t,
		`multi.example.test. TXT "v=spf1 " "ip4:192.0.2.1 -all"`,
		`multi.example.test. TXT "second record"`,
		`example.test. MX 20 mx2.example.test.`,
		`example.test. MX 10 mx1.example.test.`,
		`host.example.test. A 192.0.2.7`,
		`host.example.test. AAAA 2001:db8::7`,
		`v4only.example.test. A 192.0.2.8`,
		`7.2.0.192.in-addr.arpa. PTR host.example.test.`,
	)
	d.fail("broken.example.test")
	big := strings.Repeat("x", 3000) // far over 1232 octets: truncated over UDP
	d.txt("big.example.test", big)
	r := d.resolver()
	ctx := context.Background()

	txts, err := r.LookupTXT(ctx, "multi.example.test")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(txts)
	if want := []string{"second record", "v=spf1 ip4:192.0.2.1 -all"}; !slices.Equal(txts, want) {
		t.Errorf("TXT = %q, want %q (strings of one record joined)", txts, want)
	}

	mxs, err := r.LookupMX(ctx, "EXAMPLE.test.")
	if err != nil {
		t.Fatal(err)
	}
	if len(mxs) != 2 || mxs[0].Host != "mx1.example.test." || mxs[1].Host != "mx2.example.test." {
		t.Errorf("MX = %v, want mx1 then mx2 by preference", mxs)
	}

	ips, err := r.LookupIPAddr(ctx, "host.example.test")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ip := range ips {
		got = append(got, ip.IP.String())
	}
	if want := []string{"192.0.2.7", "2001:db8::7"}; !slices.Equal(got, want) {
		t.Errorf("IPs = %v, want %v", got, want)
	}
	if ips, err := r.LookupIPAddr(ctx, "v4only.example.test"); err != nil || len(ips) != 1 {
		t.Errorf("A-only host: %v, %v; want one address (NODATA for AAAA is no error)", ips, err)
	}

	names, err := r.LookupAddr(ctx, "192.0.2.7")
	if err != nil || !slices.Equal(names, []string{"host.example.test."}) {
		t.Errorf("PTR = %v, %v", names, err)
	}

	_, err = r.LookupTXT(ctx, "nonexistent.example.test")
	var de *net.DNSError
	if !errors.As(err, &de) || !de.IsNotFound || de.Temporary() {
		t.Errorf("NXDOMAIN: err = %#v, want IsNotFound", err)
	}
	_, err = r.LookupTXT(ctx, "host.example.test") // exists, no TXT
	if !errors.As(err, &de) || !de.IsNotFound {
		t.Errorf("NODATA: err = %#v, want IsNotFound", err)
	}
	_, err = r.LookupTXT(ctx, "broken.example.test")
	if !errors.As(err, &de) || !de.Temporary() || de.IsNotFound {
		t.Errorf("SERVFAIL: err = %#v, want temporary", err)
	}
	// The SPF and DKIM libraries type-assert the error: it must not be wrapped.
	if _, ok := err.(*net.DNSError); !ok {
		t.Errorf("error is %T, want *net.DNSError unwrapped", err)
	}

	before := d.tcpQueries.Load()
	txts, err = r.LookupTXT(ctx, "big.example.test")
	if err != nil || len(txts) != 1 || txts[0] != big {
		t.Fatalf("big TXT: %d records, err %v; want the whole 3000 octets", len(txts), err)
	}
	if d.tcpQueries.Load() == before {
		t.Error("a truncated UDP answer was not retried over TCP")
	}
}

// A server that never answers gives a temporary error, not a hang and not
// "not found".
func TestDNSResolverTimeout(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	r := NewDNSResolver(pc.LocalAddr().String(), 100*time.Millisecond)
	_, err = r.LookupTXT(context.Background(), "example.test")
	var de *net.DNSError
	if !errors.As(err, &de) || !de.Temporary() || de.IsNotFound {
		t.Fatalf("err = %#v, want a temporary DNS error", err)
	}
}

func TestNewResolver(t *testing.T) {
	if r := NewResolver("", 0); r != net.DefaultResolver {
		t.Errorf("empty server: got %T, want the system resolver", r)
	}
	r, ok := NewResolver("127.0.0.1", 0).(*DNSResolver)
	if !ok || r.Server() != "127.0.0.1:53" {
		t.Errorf("host without port: got %#v, want 127.0.0.1:53", r)
	}
	if r := NewDNSResolver("[::1]:5353", 0); r.Server() != "[::1]:5353" {
		t.Errorf("server = %q", r.Server())
	}
}
