package dnsx_test

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mail/petrel/services/delivery/internal/dnsx"
	"github.com/petrel-mail/petrel/services/delivery/internal/dnsx/dnstest"
)

func setup(t *testing.T) (*dnstest.Server, *dnsx.Client) {
	srv := dnstest.Start(t)
	srv.Add(t,
		"example.org. 300 IN MX 20 mx2.example.org.",
		"example.org. 300 IN MX 10 MX1.Example.org.",
		"mx1.example.org. 300 IN A 127.0.0.2",
		"mx1.example.org. 300 IN A 127.0.0.3",
		"mx1.example.org. 300 IN AAAA 2001:db8::25",
		"nomx.example. 300 IN A 127.0.0.4",
		"null.example. 300 IN MX 0 .",
	)
	return srv, &dnsx.Client{Server: srv.Addr, Timeout: 2 * time.Second}
}

func TestClientAnswers(t *testing.T) {
	_, c := setup(t)
	ctx := context.Background()

	mxs, err := c.LookupMX(ctx, "example.org")
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(mxs, func(a, b dnsx.MX) int { return int(a.Pref) - int(b.Pref) })
	want := []dnsx.MX{{Host: "mx1.example.org", Pref: 10}, {Host: "mx2.example.org", Pref: 20}}
	if !slices.Equal(mxs, want) {
		t.Errorf("MX = %v, want %v", mxs, want)
	}

	a, err := c.LookupA(ctx, "mx1.example.org")
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(a, netip.Addr.Compare)
	if !slices.Equal(a, []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")}) {
		t.Errorf("A = %v", a)
	}
	aaaa, err := c.LookupAAAA(ctx, "mx1.example.org.")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(aaaa, []netip.Addr{netip.MustParseAddr("2001:db8::25")}) {
		t.Errorf("AAAA = %v", aaaa)
	}

	null, err := c.LookupMX(ctx, "null.example")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(null, []dnsx.MX{{Host: ".", Pref: 0}}) {
		t.Errorf("null MX = %v", null)
	}
}

func TestClientNegativeAnswersArePermanent(t *testing.T) {
	_, c := setup(t)
	ctx := context.Background()

	_, err := c.LookupMX(ctx, "nonexistent.example")
	if !dnsx.IsNXDomain(err) || !dnsx.IsNotFound(err) || dnsx.IsTemporary(err) {
		t.Errorf("NXDOMAIN: got %v", err)
	}
	_, err = c.LookupMX(ctx, "nomx.example")
	if !dnsx.IsNoData(err) || !dnsx.IsNotFound(err) || dnsx.IsTemporary(err) {
		t.Errorf("no data: got %v", err)
	}
	_, err = c.LookupAAAA(ctx, "nomx.example")
	if !dnsx.IsNoData(err) {
		t.Errorf("AAAA no data: got %v", err)
	}
}

func TestClientServFailIsTemporary(t *testing.T) {
	srv, c := setup(t)
	srv.ServFail("broken.example")
	_, err := c.LookupMX(context.Background(), "broken.example")
	if !dnsx.IsTemporary(err) || dnsx.IsNotFound(err) {
		t.Fatalf("SERVFAIL: got %v", err)
	}
	if !strings.Contains(err.Error(), "SERVFAIL") {
		t.Errorf("error %q does not name the RCODE", err)
	}
}

func TestClientTimeoutIsTemporary(t *testing.T) {
	// A UDP socket that never answers, and nothing listening on TCP.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	c := &dnsx.Client{Server: pc.LocalAddr().String(), Timeout: 100 * time.Millisecond, Attempts: 1}
	_, err = c.LookupA(context.Background(), "example.org")
	if !dnsx.IsTemporary(err) {
		t.Fatalf("timeout: got %v", err)
	}
}

func TestClientTruncatedAnswerRetriesOverTCP(t *testing.T) {
	srv, c := setup(t)
	long := strings.Repeat("x", 200)
	for i := range 10 {
		srv.AddTXT("big.example", long, strings.Repeat(string(rune('a'+i)), 50))
	}
	srv.TruncateUDP("big.example")
	txts, err := c.LookupTXT(context.Background(), "big.example")
	if err != nil {
		t.Fatal(err)
	}
	if len(txts) != 10 || len(txts[0]) != 250 {
		t.Fatalf("got %d TXT records, first %d octets; want 10 of 250", len(txts), len(txts[0]))
	}
	if srv.Queries("big.example", "TXT", "udp") == 0 || srv.Queries("big.example", "TXT", "tcp") != 1 {
		t.Errorf("queries udp=%d tcp=%d, want UDP then one TCP",
			srv.Queries("big.example", "TXT", "udp"), srv.Queries("big.example", "TXT", "tcp"))
	}
}

func TestSystemResolverClassifiesErrors(t *testing.T) {
	// The system resolver pointed at the loopback server through a custom
	// dialer: same server, standard library parsing.
	srv, _ := setup(t)
	r := dnsx.System{Resolver: &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, srv.Addr)
	}}}
	ctx := context.Background()
	mxs, err := r.LookupMX(ctx, "example.org")
	if err != nil || len(mxs) != 2 {
		t.Fatalf("MX = %v, %v", mxs, err)
	}
	a, err := r.LookupA(ctx, "mx1.example.org")
	if err != nil || len(a) != 2 || !a[0].Is4() {
		t.Fatalf("A = %v, %v", a, err)
	}
	if _, err := r.LookupMX(ctx, "nonexistent.example"); !dnsx.IsNotFound(err) {
		t.Errorf("NXDOMAIN through system resolver: %v", err)
	}
	srv.ServFail("broken.example")
	if _, err := r.LookupMX(ctx, "broken.example"); !dnsx.IsTemporary(err) {
		t.Errorf("SERVFAIL through system resolver: %v", err)
	}
}
