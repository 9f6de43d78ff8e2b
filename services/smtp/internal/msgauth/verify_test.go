package msgauth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"

	"github.com/petrel-mail/petrel/services/smtp/internal/authcheck"
)

var (
	keysOnce sync.Once
	rsaKey   *rsa.PrivateKey
	edKey    ed25519.PrivateKey
)

// testKeys generates the signing keys once per test binary: RSA 2048 takes
// a while.
func testKeys(t testing.TB) (*rsa.PrivateKey, ed25519.PrivateKey) {
	keysOnce.Do(func() {
		var err error
		rsaKey, err = rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		_, edKey, err = ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
	})
	return rsaKey, edKey
}

func rsaKeyRecord(t testing.TB, k *rsa.PrivateKey) string {
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
}

func edKeyRecord(k ed25519.PrivateKey) string {
	return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(k.Public().(ed25519.PublicKey))
}

// world is the DNS of the test Internet:
//
//	example.test  SPF 192.0.2.0/24, DMARC p=reject sp=quarantine, keys
//	              sel (RSA), ed (Ed25519), bad (garbage), gone (no record),
//	              flaky (SERVFAIL)
//	other.test    a third party that signs with its own key
//	strict.test   DMARC p=reject, aspf=s adkim=s
//	quar.test     DMARC p=quarantine;  pnone.test  DMARC p=none
//	half.test     DMARC p=reject pct=50;  nodmarc.test  no record
//	tempdmarc.test  _dmarc SERVFAIL;  baddmarc.test  p=bogus
func world(t *testing.T) *testDNS {
	t.Helper()
	rk, ek := testKeys(t)
	d := newTestDNS(t)
	d.add(t,
		`example.test. TXT "v=spf1 ip4:192.0.2.0/24 -all"`,
		`example.test. MX 10 mx.example.test.`,
		`mx.example.test. A 192.0.2.25`,
		`_dmarc.example.test. TXT "v=DMARC1; p=reject; sp=quarantine; rua=mailto:d@example.test"`,
		`bad._domainkey.example.test. TXT "v=DKIM1; k=rsa; p=!!not-base64!!"`,
		`mail.example.test. TXT "v=spf1 ip4:192.0.2.0/24 -all"`,
		`other.test. TXT "v=spf1 ip4:198.51.100.0/24 -all"`,
		`strict.test. TXT "v=spf1 ip4:192.0.2.0/24 -all"`,
		`bounce.strict.test. TXT "v=spf1 ip4:192.0.2.0/24 -all"`,
		`_dmarc.strict.test. TXT "v=DMARC1; p=reject; aspf=s; adkim=s"`,
		`_dmarc.quar.test. TXT "v=DMARC1; p=quarantine"`,
		`_dmarc.pnone.test. TXT "v=DMARC1; p=none"`,
		`_dmarc.half.test. TXT "v=DMARC1; p=reject; pct=50"`,
		`nodmarc.test. TXT "v=spf1 -all"`,
		`_dmarc.baddmarc.test. TXT "v=DMARC1; p=bogus"`,
	)
	d.txt("sel._domainkey.example.test", rsaKeyRecord(t, rk))
	d.txt("ed._domainkey.example.test", edKeyRecord(ek))
	d.txt("sel._domainkey.other.test", rsaKeyRecord(t, rk))
	d.txt("sel._domainkey.strict.test", rsaKeyRecord(t, rk))
	d.txt("sel._domainkey.sub.strict.test", rsaKeyRecord(t, rk))
	d.fail("flaky._domainkey.example.test")
	d.fail("_dmarc.tempdmarc.test")
	return d
}

func message(from, subject, body string) []byte {
	return []byte("From: " + from + "\r\n" +
		"To: bob@petrel.test\r\n" +
		"Subject: " + subject + "\r\n" +
		"Date: Wed, 25 Nov 2026 10:00:00 +0000\r\n" +
		"Message-ID: <1@example.test>\r\n" +
		"\r\n" + body)
}

// sign prepends a real DKIM signature made with go-msgauth.
func sign(t testing.TB, msg []byte, domain, selector string, key crypto.Signer, identifier string) []byte {
	t.Helper()
	var out bytes.Buffer
	err := dkim.Sign(&out, bytes.NewReader(msg), &dkim.SignOptions{
		Domain:                 domain,
		Selector:               selector,
		Identifier:             identifier,
		Signer:                 key,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             []string{"From", "To", "Subject", "Date", "Message-ID"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// spfFor runs CheckSPF as the SMTP session would at MAIL FROM.
func spfFor(t *testing.T, v *Verifier, ip, mailFrom string) SPFResult {
	return v.CheckSPF(context.Background(), netip.MustParseAddr(ip), "client.other.test", mailFrom)
}

func verify(t *testing.T, v *Verifier, msg []byte, spf SPFResult) Result {
	t.Helper()
	res, err := v.Verify(context.Background(), bytes.NewReader(msg), spf)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	checkHeaderWellFormed(t, res.Header)
	return res
}

// checkHeaderWellFormed asserts what every Authentication-Results field we
// write must satisfy: CRLF only, folded lines start with white space, no
// line over 78 octets, and it parses back (go-msgauth authres).
func checkHeaderWellFormed(t *testing.T, h string) {
	t.Helper()
	if !strings.HasPrefix(h, "Authentication-Results: ") || !strings.HasSuffix(h, "\r\n") {
		t.Fatalf("header %q: wrong name or no final CRLF", h)
	}
	for i := 0; i < len(h); i++ {
		switch h[i] {
		case '\r':
			if i+1 >= len(h) || h[i+1] != '\n' {
				t.Fatalf("bare CR at %d in %q", i, h)
			}
		case '\n':
			if i == 0 || h[i-1] != '\r' {
				t.Fatalf("bare LF at %d in %q", i, h)
			}
		}
	}
	lines := strings.Split(strings.TrimSuffix(h, "\r\n"), "\r\n")
	for i, l := range lines {
		if i > 0 && !strings.HasPrefix(l, "\t") {
			t.Fatalf("continuation line %q does not start with white space", l)
		}
		if len(l) > 998 {
			t.Fatalf("line of %d octets", len(l))
		}
	}
	value := strings.TrimPrefix(unfold(strings.Join(lines, " ")), "Authentication-Results:")
	if _, _, err := authres.Parse(value); err != nil {
		t.Fatalf("our header does not parse: %v\n%s", err, h)
	}
}

func TestVerifyDKIM(t *testing.T) {
	d := world(t)
	rk, ek := testKeys(t)
	v := newTestVerifier(t, d, Options{})
	plain := message("Alice <alice@example.test>", "Hello", "Hi Bob.\r\n")
	noSPF := SPFResult{}

	t.Run("pass rsa", func(t *testing.T) {
		res := verify(t, v, sign(t, plain, "example.test", "sel", rk, ""), noSPF)
		if len(res.DKIM) != 1 || res.DKIM[0].Result != "pass" || res.DKIM[0].Domain != "example.test" ||
			res.DKIM[0].Selector != "sel" || res.DKIM[0].Algorithm != "rsa-sha256" || res.DKIM[0].Identifier != "@example.test" {
			t.Fatalf("DKIM = %+v", res.DKIM)
		}
	})
	t.Run("pass ed25519 with AUID", func(t *testing.T) {
		res := verify(t, v, sign(t, plain, "example.test", "ed", ek, "alice@example.test"), noSPF)
		if len(res.DKIM) != 1 || res.DKIM[0].Result != "pass" || res.DKIM[0].Algorithm != "ed25519-sha256" ||
			res.DKIM[0].Identifier != "alice@example.test" {
			t.Fatalf("DKIM = %+v", res.DKIM)
		}
	})
	t.Run("two signatures", func(t *testing.T) {
		msg := sign(t, sign(t, plain, "example.test", "ed", ek, ""), "other.test", "sel", rk, "")
		res := verify(t, v, msg, noSPF)
		if len(res.DKIM) != 2 {
			t.Fatalf("DKIM = %+v, want two", res.DKIM)
		}
		// Header order: the last signature added is first.
		if res.DKIM[0].Domain != "other.test" || res.DKIM[1].Domain != "example.test" ||
			res.DKIM[0].Result != "pass" || res.DKIM[1].Result != "pass" {
			t.Fatalf("DKIM = %+v", res.DKIM)
		}
		if strings.Count(res.Header, "dkim=pass") != 2 {
			t.Errorf("header does not report both: %s", res.Header)
		}
	})
	t.Run("body modified", func(t *testing.T) {
		msg := sign(t, plain, "example.test", "sel", rk, "")
		msg = bytes.Replace(msg, []byte("Hi Bob."), []byte("Hi Eve."), 1)
		res := verify(t, v, msg, noSPF)
		if res.DKIM[0].Result != "fail" {
			t.Fatalf("DKIM = %+v, want fail", res.DKIM)
		}
	})
	t.Run("header modified", func(t *testing.T) {
		msg := sign(t, plain, "example.test", "sel", rk, "")
		msg = bytes.Replace(msg, []byte("Subject: Hello"), []byte("Subject: Pay now"), 1)
		res := verify(t, v, msg, noSPF)
		if res.DKIM[0].Result != "fail" {
			t.Fatalf("DKIM = %+v, want fail", res.DKIM)
		}
	})
	t.Run("unsigned", func(t *testing.T) {
		res := verify(t, v, plain, noSPF)
		if len(res.DKIM) != 0 || !strings.Contains(res.Header, "dkim=none") {
			t.Fatalf("DKIM = %+v, header %s", res.DKIM, res.Header)
		}
	})
	t.Run("bad key record", func(t *testing.T) {
		res := verify(t, v, sign(t, plain, "example.test", "bad", rk, ""), noSPF)
		if res.DKIM[0].Result != "permerror" {
			t.Fatalf("DKIM = %+v, want permerror", res.DKIM)
		}
	})
	t.Run("no key record", func(t *testing.T) {
		res := verify(t, v, sign(t, plain, "example.test", "gone", rk, ""), noSPF)
		if res.DKIM[0].Result != "permerror" {
			t.Fatalf("DKIM = %+v, want permerror", res.DKIM)
		}
	})
	t.Run("key lookup SERVFAIL", func(t *testing.T) {
		res := verify(t, v, sign(t, plain, "example.test", "flaky", rk, ""), noSPF)
		if res.DKIM[0].Result != "temperror" {
			t.Fatalf("DKIM = %+v, want temperror", res.DKIM)
		}
	})
	t.Run("wrong key", func(t *testing.T) {
		// Signed with the Ed25519 key, published RSA key: bad algorithm.
		res := verify(t, v, sign(t, plain, "example.test", "sel", ek, ""), noSPF)
		if res.DKIM[0].Result == "pass" {
			t.Fatalf("DKIM = %+v, want no pass", res.DKIM)
		}
	})
	t.Run("too many signatures", func(t *testing.T) {
		v := newTestVerifier(t, d, Options{MaxSignatures: 2})
		msg := plain
		for range 4 {
			msg = sign(t, msg, "example.test", "ed", ek, "")
		}
		res := verify(t, v, msg, noSPF)
		if len(res.DKIM) != 2 {
			t.Fatalf("got %d results, want 2 (the limit)", len(res.DKIM))
		}
	})
}

func TestVerifyDMARC(t *testing.T) {
	d := world(t)
	rk, _ := testKeys(t)
	v := newTestVerifier(t, d, Options{})
	const good, bad = "192.0.2.10", "203.0.113.66"

	tests := []struct {
		name     string
		msg      []byte
		spf      SPFResult
		opts     Options
		want     string // DMARC result
		policy   string
		dispo    string
		recordAt string
	}{
		{
			name: "pass via SPF alignment, relaxed",
			msg:  message("alice@example.test", "s", "b\r\n"),
			spf:  spfFor(t, v, good, "bounce@mail.example.test"),
			want: DMARCPass, policy: PolicyReject, dispo: PolicyNone, recordAt: "example.test",
		},
		{
			name: "pass via DKIM alignment, SPF fails",
			msg:  sign(t, message("alice@example.test", "s", "b\r\n"), "example.test", "sel", rk, ""),
			spf:  spfFor(t, v, bad, "alice@example.test"),
			want: DMARCPass, policy: PolicyReject, dispo: PolicyNone, recordAt: "example.test",
		},
		{
			name: "fail p=reject: unaligned third-party signature, SPF fail",
			msg:  sign(t, message("alice@example.test", "s", "b\r\n"), "other.test", "sel", rk, ""),
			spf:  spfFor(t, v, bad, "alice@example.test"),
			want: DMARCFail, policy: PolicyReject, dispo: PolicyReject, recordAt: "example.test",
		},
		{
			name: "fail: SPF passes for another domain",
			msg:  message("alice@example.test", "s", "b\r\n"),
			spf:  spfFor(t, v, "198.51.100.1", "list@other.test"),
			want: DMARCFail, policy: PolicyReject, dispo: PolicyReject, recordAt: "example.test",
		},
		{
			name: "subdomain uses sp= of the organizational domain",
			msg:  message("alice@sub.example.test", "s", "b\r\n"),
			spf:  spfFor(t, v, bad, "alice@sub.example.test"),
			want: DMARCFail, policy: PolicyQuarantine, dispo: PolicyQuarantine, recordAt: "example.test",
		},
		{
			name: "strict SPF alignment refuses a subdomain",
			msg:  message("alice@strict.test", "s", "b\r\n"),
			spf:  spfFor(t, v, good, "x@bounce.strict.test"),
			want: DMARCFail, policy: PolicyReject, dispo: PolicyReject, recordAt: "strict.test",
		},
		{
			name: "strict SPF alignment, exact domain",
			msg:  message("alice@strict.test", "s", "b\r\n"),
			spf:  spfFor(t, v, good, "x@strict.test"),
			want: DMARCPass, policy: PolicyReject, dispo: PolicyNone, recordAt: "strict.test",
		},
		{
			name: "strict DKIM alignment refuses a subdomain signature",
			msg:  sign(t, message("alice@strict.test", "s", "b\r\n"), "sub.strict.test", "sel", rk, ""),
			spf:  spfFor(t, v, bad, "x@strict.test"),
			want: DMARCFail, policy: PolicyReject, dispo: PolicyReject, recordAt: "strict.test",
		},
		{
			name: "strict DKIM alignment, exact domain",
			msg:  sign(t, message("alice@strict.test", "s", "b\r\n"), "strict.test", "sel", rk, ""),
			spf:  spfFor(t, v, bad, "x@strict.test"),
			want: DMARCPass, policy: PolicyReject, dispo: PolicyNone, recordAt: "strict.test",
		},
		{
			name: "p=quarantine",
			msg:  message("alice@quar.test", "s", "b\r\n"),
			spf:  spfFor(t, v, bad, "alice@quar.test"),
			want: DMARCFail, policy: PolicyQuarantine, dispo: PolicyQuarantine, recordAt: "quar.test",
		},
		{
			name: "p=none",
			msg:  message("alice@pnone.test", "s", "b\r\n"),
			spf:  spfFor(t, v, bad, "alice@pnone.test"),
			want: DMARCFail, policy: PolicyNone, dispo: PolicyNone, recordAt: "pnone.test",
		},
		{
			name: "pct=50, sampled in",
			msg:  message("alice@half.test", "s", "b\r\n"),
			spf:  spfFor(t, v, bad, "alice@half.test"),
			opts: Options{Percent: func() int { return 49 }},
			want: DMARCFail, policy: PolicyReject, dispo: PolicyReject, recordAt: "half.test",
		},
		{
			name: "pct=50, sampled out: next milder policy",
			msg:  message("alice@half.test", "s", "b\r\n"),
			spf:  spfFor(t, v, bad, "alice@half.test"),
			opts: Options{Percent: func() int { return 50 }},
			want: DMARCFail, policy: PolicyReject, dispo: PolicyQuarantine, recordAt: "half.test",
		},
		{
			name: "no DMARC record",
			msg:  message("alice@nodmarc.test", "s", "b\r\n"),
			spf:  spfFor(t, v, bad, "alice@nodmarc.test"),
			want: DMARCNone,
		},
		{
			name: "DMARC lookup SERVFAIL",
			msg:  message("alice@tempdmarc.test", "s", "b\r\n"),
			spf:  spfFor(t, v, bad, "alice@tempdmarc.test"),
			want: DMARCTempError,
		},
		{
			name: "malformed DMARC record",
			msg:  message("alice@baddmarc.test", "s", "b\r\n"),
			spf:  spfFor(t, v, bad, "alice@baddmarc.test"),
			want: DMARCPermError,
		},
		{
			name: "no From",
			msg:  []byte("Subject: x\r\n\r\nbody\r\n"),
			spf:  spfFor(t, v, good, "alice@example.test"),
			want: DMARCPermError,
		},
		{
			name: "second From hides a forged author",
			msg:  []byte("From: alice@nodmarc.test\r\nFrom: ceo@example.test\r\nSubject: x\r\n\r\nbody\r\n"),
			spf:  spfFor(t, v, bad, "alice@nodmarc.test"),
			want: DMARCFail, policy: PolicyReject, dispo: PolicyReject, recordAt: "example.test",
		},
		{
			name: "two authors in one From",
			msg:  []byte("From: alice@nodmarc.test, ceo@example.test\r\nSubject: x\r\n\r\nbody\r\n"),
			spf:  spfFor(t, v, bad, "alice@nodmarc.test"),
			want: DMARCFail, policy: PolicyReject, dispo: PolicyReject, recordAt: "example.test",
		},
		{
			name: "malformed From still yields its domain",
			msg:  []byte("From: =?x-unknown?q?A?= \"broken <ceo@Example.Test>\r\nSubject: x\r\n\r\nbody\r\n"),
			spf:  spfFor(t, v, bad, "alice@nodmarc.test"),
			want: DMARCFail, policy: PolicyReject, dispo: PolicyReject, recordAt: "example.test",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := v
			if tt.opts.Percent != nil {
				v = newTestVerifier(t, d, tt.opts)
			}
			res := verify(t, v, tt.msg, tt.spf)
			got := res.DMARC
			if got.Result != tt.want || got.Policy != tt.policy || got.RecordDomain != tt.recordAt ||
				(tt.want == DMARCFail || tt.want == DMARCPass) && got.Disposition != tt.dispo {
				t.Fatalf("DMARC = %+v\nwant result %s policy %q disposition %q record at %q\n%s",
					got, tt.want, tt.policy, tt.dispo, tt.recordAt, res.Header)
			}
			wantReject := tt.want == DMARCFail && tt.dispo == PolicyReject
			if res.Reject() != wantReject {
				t.Errorf("Reject() = %v, want %v", res.Reject(), wantReject)
			}
			wantQuarantine := tt.want == DMARCFail && tt.dispo == PolicyQuarantine
			if res.Quarantine() != wantQuarantine {
				t.Errorf("Quarantine() = %v, want %v", res.Quarantine(), wantQuarantine)
			}
			if !strings.Contains(res.Header, "dmarc="+tt.want) {
				t.Errorf("header lacks dmarc=%s: %s", tt.want, res.Header)
			}
		})
	}
}

// The exact text of the field, for a few representative cases.
func TestAuthenticationResultsText(t *testing.T) {
	d := world(t)
	rk, ek := testKeys(t)
	v := newTestVerifier(t, d, Options{})

	signed := sign(t, message("Alice <alice@example.test>", "Hello", "Hi Bob.\r\n"), "example.test", "sel", rk, "")
	b := base64Prefix(t, signed, 0)
	res := verify(t, v, signed, spfFor(t, v, "192.0.2.10", "alice@example.test"))
	want := "Authentication-Results: mx.petrel.test;\r\n" +
		"\tspf=pass smtp.mailfrom=alice@example.test;\r\n" +
		"\tdkim=pass header.d=example.test header.i=@example.test header.s=sel\r\n" +
		"\theader.a=rsa-sha256 header.b=" + formatPvalue(b) + ";\r\n" +
		"\tdmarc=pass (p=reject dis=none) header.from=example.test\r\n"
	if res.Header != want {
		t.Errorf("signed, SPF pass:\n got %q\nwant %q", res.Header, want)
	}

	res = verify(t, v, message("ceo@example.test", "Pay", "now\r\n"),
		v.CheckSPF(context.Background(), netip.MustParseAddr("203.0.113.9"), "evil.test", ""))
	want = "Authentication-Results: mx.petrel.test;\r\n" +
		"\tspf=none smtp.helo=evil.test;\r\n" +
		"\tdkim=none;\r\n" +
		"\tdmarc=fail (p=reject dis=reject) header.from=example.test\r\n"
	if res.Header != want {
		t.Errorf("forged, null sender:\n got %q\nwant %q", res.Header, want)
	}

	// Two signatures, one broken; a hostile MAIL FROM with CR LF and quotes.
	two := sign(t, sign(t, message("alice@example.test", "Hi", "x\r\n"), "example.test", "ed", ek, ""), "example.test", "gone", rk, "")
	spf := spfFor(t, v, "203.0.113.9", "\"odd\\\"\r\nX-Evil: 1\"@other.test")
	res = verify(t, v, two, spf)
	want = "Authentication-Results: mx.petrel.test;\r\n" +
		"\tspf=fail smtp.mailfrom=\"\\\"odd\\\\\\\"X-Evil: 1\\\"@other.test\";\r\n" +
		"\tdkim=permerror\r\n" +
		"\treason=\"no key for signature: lookup gone._domainkey.example.test: no such host\"\r\n" +
		"\theader.d=example.test header.i=@example.test header.s=gone\r\n" +
		"\theader.a=rsa-sha256 header.b=" + formatPvalue(base64Prefix(t, two, 0)) + ";\r\n" +
		"\tdkim=pass header.d=example.test header.i=@example.test header.s=ed\r\n" +
		"\theader.a=ed25519-sha256 header.b=" + formatPvalue(base64Prefix(t, two, 1)) + ";\r\n" +
		"\tdmarc=pass (p=reject dis=none) header.from=example.test\r\n"
	if res.Header != want {
		t.Errorf("two signatures:\n got %q\nwant %q", res.Header, want)
	}
}

// base64Prefix returns the first 8 characters of the b= tag of the n-th
// DKIM-Signature field of msg, found independently of the code under test.
func base64Prefix(t *testing.T, msg []byte, n int) string {
	t.Helper()
	s := string(msg)
	for i := 0; ; i++ {
		j := strings.Index(s, "DKIM-Signature:")
		if j < 0 {
			t.Fatalf("signature %d not found", n)
		}
		s = s[j+len("DKIM-Signature:"):]
		if i < n {
			continue
		}
		k := strings.Index(s, " b=")
		if k < 0 {
			k = strings.Index(s, ";b=")
		}
		sig := strings.NewReplacer("\r\n", "", " ", "", "\t", "").Replace(s[k+3:])
		return sig[:8]
	}
}

func TestVerifyReadsWholeMessage(t *testing.T) {
	d := world(t)
	rk, _ := testKeys(t)
	v := newTestVerifier(t, d, Options{})
	body := strings.Repeat("line of body text\r\n", 10000)
	for _, msg := range [][]byte{
		message("a@example.test", "s", body),
		sign(t, message("a@example.test", "s", body), "example.test", "sel", rk, ""),
	} {
		var seen bytes.Buffer
		if _, err := v.Verify(context.Background(), io.TeeReader(bytes.NewReader(msg), &seen), SPFResult{}); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(seen.Bytes(), msg) {
			t.Fatalf("Verify read %d of %d bytes: a tee'd copy would be cut short", seen.Len(), len(msg))
		}
	}
}

type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if errors.Is(err, io.EOF) {
		return n, f.err
	}
	return n, err
}

func TestVerifyErrors(t *testing.T) {
	d := world(t)
	rk, _ := testKeys(t)
	v := newTestVerifier(t, d, Options{MaxHeaderBytes: 4096})
	boom := errors.New("connection reset")

	for _, msg := range [][]byte{
		message("a@example.test", "s", "partial body"),
		sign(t, message("a@example.test", "s", "partial body"), "example.test", "sel", rk, ""),
		[]byte("From: a@example.test\r\nSubj"),
	} {
		_, err := v.Verify(context.Background(), &failingReader{bytes.NewReader(msg), boom}, SPFResult{})
		if !errors.Is(err, boom) {
			t.Errorf("read error: got %v, want it passed on", err)
		}
	}

	huge := append([]byte("X-Big: "+strings.Repeat("a", 5000)+"\r\n"), message("a@example.test", "s", "b\r\n")...)
	if _, err := v.Verify(context.Background(), bytes.NewReader(huge), SPFResult{}); !errors.Is(err, ErrHeaderTooLarge) {
		t.Errorf("huge header: got %v, want ErrHeaderTooLarge", err)
	}

	// A message that is all header (no empty line) is a result, not an error.
	res, err := v.Verify(context.Background(), strings.NewReader("From: a@example.test\r\nSubject: x\r\n"), SPFResult{})
	if err != nil || res.DMARC.Domain != "example.test" {
		t.Errorf("header-only message: %+v, %v", res.DMARC, err)
	}
}

func TestOptionsValidate(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Error("empty AuthServID accepted")
	}
	if _, err := New(Options{AuthServID: "mx.test;evil", MaxHeaderBytes: -1}); err == nil ||
		!strings.Contains(err.Error(), "token") || !strings.Contains(err.Error(), "MaxHeaderBytes") {
		t.Errorf("want both problems reported, got %v", err)
	}
	if _, err := New(Options{AuthServID: "mx.petrel.test"}); err != nil {
		t.Error(err)
	}
}

func TestStripOwnResults(t *testing.T) {
	v, err := New(Options{AuthServID: "mx.petrel.test"})
	if err != nil {
		t.Fatal(err)
	}
	in := "Authentication-Results: mx.petrel.test; dkim=pass header.d=bank.test\r\n" +
		"Received: from a\r\n" +
		"Authentication-Results: (forged) MX.Petrel.Test.;\r\n\tspf=pass\r\n" +
		"authentication-results : \"mx.petrel.test\"; dmarc=pass\r\n" +
		"Authentication-Results: mx.other.test; spf=fail\r\n" +
		"Authentication-Results: mx.petrel.test.example; spf=fail\r\n" +
		"Subject: hi\r\n" +
		"\r\n" +
		"Authentication-Results: mx.petrel.test; body text stays\r\n"
	want := "Received: from a\r\n" +
		"Authentication-Results: mx.other.test; spf=fail\r\n" +
		"Authentication-Results: mx.petrel.test.example; spf=fail\r\n" +
		"Subject: hi\r\n" +
		"\r\n" +
		"Authentication-Results: mx.petrel.test; body text stays\r\n"
	got, err := io.ReadAll(v.StripOwnResults(strings.NewReader(in)))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
}

func TestAuthenticator(t *testing.T) {
	d := world(t)
	rk, _ := testKeys(t)
	v := newTestVerifier(t, d, Options{})
	forged := message("ceo@example.test", "Pay", "now\r\n")
	in := func(msg []byte) authcheck.CheckInput {
		return authcheck.CheckInput{
			ClientIP: netip.MustParseAddr("203.0.113.9"), HELO: "evil.test",
			MailFrom: "ceo@example.test", Message: bytes.NewReader(msg),
		}
	}

	res, err := Authenticator{Verifier: v, RejectDMARC: true}.Check(context.Background(), in(forged))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Reject || res.RejectReason != "Message rejected by the DMARC policy of example.test" ||
		!strings.Contains(res.Header, "spf=fail smtp.mailfrom=ceo@example.test") {
		t.Fatalf("forged, enforcing: %+v", res)
	}
	checkHeaderWellFormed(t, res.Header)

	res, err = Authenticator{Verifier: v}.Check(context.Background(), in(forged))
	if err != nil || res.Reject || !strings.Contains(res.Header, "dmarc=fail") {
		t.Fatalf("forged, not enforcing: %+v, %v", res, err)
	}

	signed := sign(t, forged, "example.test", "sel", rk, "")
	res, err = Authenticator{Verifier: v, RejectDMARC: true}.Check(context.Background(), in(signed))
	if err != nil || res.Reject || !strings.Contains(res.Header, "dmarc=pass") {
		t.Fatalf("signed: %+v, %v", res, err)
	}
}
