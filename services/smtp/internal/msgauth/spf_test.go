package msgauth

import (
	"context"
	"net/netip"
	"strings"
	"testing"
)

func newTestVerifier(t *testing.T, d *testDNS, opts Options) *Verifier {
	t.Helper()
	if opts.AuthServID == "" {
		opts.AuthServID = "mx.petrel.test"
	}
	opts.Resolver = d.resolver()
	v, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestCheckSPF(t *testing.T) {
	d := newTestDNS(t)
	d.add(t,
		`pass.test. TXT "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all"`,
		`soft.test. TXT "v=spf1 ip4:192.0.2.10 ~all"`,
		`neutral.test. TXT "v=spf1 ?all"`,
		`nospf.test. A 192.0.2.1`,
		`perm.test. TXT "v=spf1 ip4:999.0.2.1 -all"`,
		`twice.test. TXT "v=spf1 -all"`,
		`twice.test. TXT "v=spf1 +all"`,
		`mx.test. TXT "v=spf1 mx a:web.mx.test -all"`,
		`mx.test. MX 10 mail.mx.test.`,
		`mail.mx.test. A 198.51.100.25`,
		`web.mx.test. AAAA 2001:db8:1::80`,
		`incl.test. TXT "v=spf1 include:broken.test -all"`,
		`helo.test. TXT "v=spf1 ip4:203.0.113.5 -all"`,
	)
	d.fail("tempfail.test")
	d.fail("broken.test")
	v := newTestVerifier(t, d, Options{})

	tests := []struct {
		name, ip, helo, from string
		want, wantDomain     string
	}{
		{"pass", "192.0.2.10", "client.test", "alice@pass.test", SPFPass, "pass.test"},
		{"pass ipv6", "2001:db8::1", "client.test", "alice@pass.test", SPFPass, "pass.test"},
		{"v4-mapped v6 client", "::ffff:192.0.2.10", "client.test", "alice@pass.test", SPFPass, "pass.test"},
		{"domain case and dot", "192.0.2.10", "client.test", "alice@PASS.Test.", SPFPass, "pass.test"},
		{"fail", "198.51.100.1", "client.test", "alice@pass.test", SPFFail, "pass.test"},
		{"softfail", "198.51.100.1", "client.test", "bob@soft.test", SPFSoftFail, "soft.test"},
		{"neutral", "198.51.100.1", "client.test", "bob@neutral.test", SPFNeutral, "neutral.test"},
		{"none: no record", "198.51.100.1", "client.test", "bob@nospf.test", SPFNone, "nospf.test"},
		{"none: no domain", "198.51.100.1", "client.test", "bob@nxdomain.test", SPFNone, "nxdomain.test"},
		{"temperror: SERVFAIL", "198.51.100.1", "client.test", "bob@tempfail.test", SPFTempError, "tempfail.test"},
		{"temperror: SERVFAIL in include", "198.51.100.1", "client.test", "bob@incl.test", SPFTempError, "incl.test"},
		{"permerror: bad record", "198.51.100.1", "client.test", "bob@perm.test", SPFPermError, "perm.test"},
		{"permerror: two records", "198.51.100.1", "client.test", "bob@twice.test", SPFPermError, "twice.test"},
		{"mx mechanism", "198.51.100.25", "client.test", "bob@mx.test", SPFPass, "mx.test"},
		{"a mechanism over AAAA", "2001:db8:1::80", "client.test", "bob@mx.test", SPFPass, "mx.test"},
		{"mx mechanism miss", "198.51.100.26", "client.test", "bob@mx.test", SPFFail, "mx.test"},
		{"null sender uses HELO", "203.0.113.5", "helo.test", "", SPFPass, "helo.test"},
		{"null sender HELO fail", "203.0.113.6", "helo.test", "", SPFFail, "helo.test"},
		{"null sender, address literal HELO", "203.0.113.6", "[203.0.113.6]", "", SPFNone, ""},
		{"address literal sender domain", "203.0.113.6", "helo.test", "x@[203.0.113.6]", SPFNone, ""},
		{"quoted local part with @", "192.0.2.10", "helo.test", `"a@b"@pass.test`, SPFNone, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := v.CheckSPF(context.Background(), netip.MustParseAddr(tt.ip), tt.helo, tt.from)
			if got.Result != tt.want || got.Domain != tt.wantDomain {
				t.Errorf("CheckSPF(%s, %q, %q) = %s for %q (err %v), want %s for %q",
					tt.ip, tt.helo, tt.from, got.Result, got.Domain, got.Err, tt.want, tt.wantDomain)
			}
			if got.Result != SPFPass && got.Err == nil {
				t.Error("a result other than pass carries no explanation")
			}
		})
	}
}

// Values from the client never carry CR or LF into our results.
func TestCheckSPFCleansEnvelope(t *testing.T) {
	d := newTestDNS(t)
	v := newTestVerifier(t, d, Options{})
	got := v.CheckSPF(context.Background(), netip.MustParseAddr("192.0.2.1"),
		"evil.test\r\nX-Injected: yes", "a@b.test\r\nX-Injected: yes")
	if strings.ContainsAny(got.HELO+got.MailFrom, "\r\n") {
		t.Fatalf("CR/LF kept: %q %q", got.HELO, got.MailFrom)
	}
}

func TestCheckSPFInvalidIP(t *testing.T) {
	d := newTestDNS(t)
	v := newTestVerifier(t, d, Options{})
	got := v.CheckSPF(context.Background(), netip.Addr{}, "client.test", "a@pass.test")
	if got.Result != SPFPermError {
		t.Fatalf("zero IP: %s, want permerror", got.Result)
	}
}
