package route_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/petrel-mail/petrel/services/delivery/internal/dnsx"
	"github.com/petrel-mail/petrel/services/delivery/internal/dnsx/dnstest"
	"github.com/petrel-mail/petrel/services/delivery/internal/route"
)

func newRouter(t *testing.T, records ...string) (*route.Router, *dnstest.Server) {
	t.Helper()
	srv := dnstest.Start(t)
	srv.Add(t, records...)
	return &route.Router{Resolver: &dnsx.Client{Server: srv.Addr, Timeout: 2 * time.Second}, Port: 2525}, srv
}

func names(rt route.Route) []string {
	var out []string
	for _, h := range rt.Hosts {
		out = append(out, h.Name)
	}
	return out
}

func wantErr(t *testing.T, err error, status string, temporary bool) {
	t.Helper()
	var re *route.Error
	if !errors.As(err, &re) {
		t.Fatalf("error %v is not a *route.Error", err)
	}
	if re.Status != status || re.Temporary() != temporary {
		t.Fatalf("got status %s temporary=%v (%v), want %s temporary=%v", re.Status, re.Temporary(), err, status, temporary)
	}
}

func TestMXPreferenceOrderAndAllAddresses(t *testing.T) {
	r, _ := newRouter(t,
		"example.org. IN MX 30 mx3.example.org.",
		"example.org. IN MX 10 mx1.example.org.",
		"example.org. IN MX 20 mx2.example.org.",
		"mx1.example.org. IN A 127.0.0.2",
		"mx1.example.org. IN AAAA 2001:db8::1",
		"mx2.example.org. IN A 127.0.0.3",
		"mx3.example.org. IN AAAA 2001:db8::3",
	)
	rt, err := r.Route(context.Background(), "Example.ORG")
	if err != nil {
		t.Fatal(err)
	}
	if rt.Domain != "example.org" || rt.ImplicitMX || rt.Smarthost != nil {
		t.Errorf("route = %+v", rt)
	}
	if got := names(rt); !slices.Equal(got, []string{"mx1.example.org", "mx2.example.org", "mx3.example.org"}) {
		t.Fatalf("hosts = %v", got)
	}
	if got := rt.Hosts[0].Addrs; !slices.Equal(got, []netip.Addr{netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("127.0.0.2")}) {
		t.Errorf("mx1 addrs = %v, want IPv6 then IPv4", got)
	}
	if rt.Hosts[0].Port != 2525 || rt.Hosts[0].Pref != 10 {
		t.Errorf("mx1 = %+v", rt.Hosts[0])
	}

	r.PreferIPv4 = true
	rt, err = r.Route(context.Background(), "example.org")
	if err != nil {
		t.Fatal(err)
	}
	if got := rt.Hosts[0].Addrs; got[0] != netip.MustParseAddr("127.0.0.2") {
		t.Errorf("PreferIPv4: mx1 addrs = %v", got)
	}
}

func TestEqualPreferenceIsRandomized(t *testing.T) {
	r, _ := newRouter(t,
		"example.org. IN MX 10 a.example.org.",
		"example.org. IN MX 10 b.example.org.",
		"example.org. IN MX 5 first.example.org.",
		"a.example.org. IN A 127.0.0.2",
		"b.example.org. IN A 127.0.0.3",
		"first.example.org. IN A 127.0.0.4",
	)
	seen := map[string]bool{}
	for seed := range uint64(40) {
		r.Rand = rand.New(rand.NewPCG(seed, seed))
		rt, err := r.Route(context.Background(), "example.org")
		if err != nil {
			t.Fatal(err)
		}
		got := names(rt)
		if got[0] != "first.example.org" {
			t.Fatalf("lowest preference not first: %v", got)
		}
		seen[got[1]] = true
	}
	if !seen["a.example.org"] || !seen["b.example.org"] {
		t.Errorf("equal-preference MX order never varied over 40 seeds: %v", seen)
	}
}

func TestNullMXFailsPermanently(t *testing.T) {
	r, srv := newRouter(t, "null.example. IN MX 0 .", "null.example. IN A 127.0.0.2")
	_, err := r.Route(context.Background(), "null.example")
	wantErr(t, err, "5.1.10", false)
	if n := srv.Queries("null.example", "A", "udp"); n != 0 {
		t.Errorf("null MX still looked up A (%d queries)", n)
	}
}

func TestImplicitMX(t *testing.T) {
	r, _ := newRouter(t, "nomx.example. IN A 127.0.0.5", "nomx.example. IN TXT \"v=spf1 -all\"")
	rt, err := r.Route(context.Background(), "nomx.example")
	if err != nil {
		t.Fatal(err)
	}
	if !rt.ImplicitMX || len(rt.Hosts) != 1 || rt.Hosts[0].Name != "nomx.example" ||
		!slices.Equal(rt.Hosts[0].Addrs, []netip.Addr{netip.MustParseAddr("127.0.0.5")}) {
		t.Fatalf("route = %+v", rt)
	}
}

func TestNegativeAndTemporaryDNS(t *testing.T) {
	r, srv := newRouter(t,
		"noaddr.example. IN TXT \"exists\"",
		"deadmx.example. IN MX 10 gone.example.",
		"halfdead.example. IN MX 10 gone.example.",
		"halfdead.example. IN MX 20 broken.example.",
		"flaky.example. IN MX 10 broken.example.",
	)
	srv.ServFail("servfail.example")
	srv.ServFail("broken.example")
	ctx := context.Background()

	_, err := r.Route(ctx, "nonexistent.example")
	wantErr(t, err, "5.1.2", false)
	_, err = r.Route(ctx, "noaddr.example")
	wantErr(t, err, "5.4.4", false)
	_, err = r.Route(ctx, "deadmx.example")
	wantErr(t, err, "5.4.4", false)
	_, err = r.Route(ctx, "servfail.example")
	wantErr(t, err, "4.4.3", true)
	_, err = r.Route(ctx, "flaky.example")
	wantErr(t, err, "4.4.3", true)
	// One MX host gone for good, another temporarily unresolvable: retry.
	_, err = r.Route(ctx, "halfdead.example")
	wantErr(t, err, "4.4.3", true)
}

func TestUnresolvableMXIsSkipped(t *testing.T) {
	r, _ := newRouter(t,
		"example.org. IN MX 10 gone.example.org.",
		"example.org. IN MX 20 mx2.example.org.",
		"mx2.example.org. IN A 127.0.0.3",
	)
	rt, err := r.Route(context.Background(), "example.org")
	if err != nil {
		t.Fatal(err)
	}
	if got := names(rt); !slices.Equal(got, []string{"mx2.example.org"}) {
		t.Fatalf("hosts = %v", got)
	}
}

func TestLoopDetection(t *testing.T) {
	r, _ := newRouter(t,
		// We are the backup MX (20) for backup.example: only the primary
		// stays.
		"backup.example. IN MX 10 primary.example.",
		"backup.example. IN MX 20 us.example.",
		"backup.example. IN MX 30 other.example.",
		"primary.example. IN A 127.0.0.2",
		"us.example. IN A 127.0.0.9",
		"other.example. IN A 127.0.0.3",
		// We are the only MX of loop.example.
		"loop.example. IN MX 10 us.example.",
		"loop.example. IN MX 10 same.example.",
		"same.example. IN A 127.0.0.4",
	)
	r.LocalAddrs = []netip.Addr{netip.MustParseAddr("127.0.0.9")}
	rt, err := r.Route(context.Background(), "backup.example")
	if err != nil {
		t.Fatal(err)
	}
	if got := names(rt); !slices.Equal(got, []string{"primary.example"}) {
		t.Fatalf("hosts = %v, want only the better-preference MX", got)
	}
	_, err = r.Route(context.Background(), "loop.example")
	wantErr(t, err, "4.4.6", true)
}

func TestSmarthostOverridesRouting(t *testing.T) {
	r, _ := newRouter(t,
		"example.org. IN MX 0 .",
		"relay.example.net. IN A 127.0.0.7",
	)
	sh := &route.Smarthost{Host: "relay.example.net", Port: 465, Username: "u", Password: "p", ImplicitTLS: true}
	r.Smarthost = sh
	rt, err := r.Route(context.Background(), "example.org")
	if err != nil {
		t.Fatal(err)
	}
	if rt.Smarthost != sh || len(rt.Hosts) != 1 || rt.Hosts[0].Port != 465 ||
		rt.Hosts[0].Addrs[0] != netip.MustParseAddr("127.0.0.7") {
		t.Fatalf("route = %+v", rt)
	}
	r.Smarthost = &route.Smarthost{Host: "127.0.0.8", Port: 587}
	rt, err = r.Route(context.Background(), "anything.example")
	if err != nil || rt.Hosts[0].Addrs[0] != netip.MustParseAddr("127.0.0.8") {
		t.Fatalf("IP smarthost: %+v %v", rt, err)
	}
	r.Smarthost = &route.Smarthost{Host: "missing.example.net", Port: 587}
	_, err = r.Route(context.Background(), "example.org")
	wantErr(t, err, "4.4.3", true)
}

func TestAddressLiteral(t *testing.T) {
	r, _ := newRouter(t, "x.example. IN A 127.0.0.1")
	rt, err := r.Route(context.Background(), "[127.0.0.6]")
	if err != nil || rt.Hosts[0].Addrs[0] != netip.MustParseAddr("127.0.0.6") {
		t.Fatalf("literal: %+v %v", rt, err)
	}
	_, err = r.Route(context.Background(), "[not-an-ip]")
	wantErr(t, err, "5.1.2", false)
}
