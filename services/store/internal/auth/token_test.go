package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestTokenRoundTrip(t *testing.T) {
	clock := newFakeClock()
	tok := newTestTokens(t, clock, mustKeyring(t, mustKey(t, "k1")))
	for _, p := range []Principal{
		{Kind: KindSession, TenantID: "t1", AccountID: "a1", Address: "alice@example.test", Service: "imap"},
		{Kind: KindService, Service: ServiceDelivery},
		{Kind: KindOperator},
		{Kind: KindTenantAdmin, TenantID: "t1"},
	} {
		token, exp, err := tok.Issue(p, time.Hour)
		if err != nil {
			t.Fatalf("Issue(%v): %v", p.Kind, err)
		}
		if !exp.Equal(clock.Now().Add(time.Hour)) {
			t.Errorf("expiry %v, want %v", exp, clock.Now().Add(time.Hour))
		}
		got, err := tok.Verify(token)
		if err != nil {
			t.Fatalf("Verify(%v): %v", p.Kind, err)
		}
		p.ExpiresAt = exp
		if got != p {
			t.Errorf("Verify = %+v, want %+v", got, p)
		}
	}
}

func TestSessionTokenDefaultTTL(t *testing.T) {
	clock := newFakeClock()
	tok := newTestTokens(t, clock, mustKeyring(t, mustKey(t, "k1")))
	token, exp, err := tok.IssueSession("t1", "a1", "alice@example.test", "pop3")
	if err != nil {
		t.Fatal(err)
	}
	if want := clock.Now().Add(DefaultSessionTTL); !exp.Equal(want) {
		t.Fatalf("session expiry %v, want %v", exp, want)
	}
	clock.Advance(DefaultSessionTTL - time.Second)
	if _, err := tok.Verify(token); err != nil {
		t.Fatalf("session token rejected a second before expiry: %v", err)
	}
	clock.Advance(time.Second)
	if _, err := tok.Verify(token); !errors.Is(err, ErrTokenExpired) || !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("expired session token: err = %v, want ErrTokenExpired matching ErrInvalidToken", err)
	}
}

func TestTokenNotYetValid(t *testing.T) {
	clock := newFakeClock()
	kr := mustKeyring(t, mustKey(t, "k1"))
	tok := newTestTokens(t, clock, kr)
	token, _, err := tok.Issue(Principal{Kind: KindOperator}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// Another replica whose clock is a minute behind.
	behind := &fakeClock{t: clock.Now().Add(-time.Minute)}
	if _, err := newTestTokens(t, behind, kr).Verify(token); !errors.Is(err, ErrTokenNotYetValid) {
		t.Fatalf("token from the future: err = %v, want ErrTokenNotYetValid", err)
	}
	lenient, err := NewTokens(TokenOptions{Keyring: kr, Now: behind.Now, Leeway: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lenient.Verify(token); err != nil {
		t.Fatalf("leeway does not cover skew: %v", err)
	}
}

func TestTokenRejectsForgeries(t *testing.T) {
	clock := newFakeClock()
	k1 := mustKey(t, "k1")
	tok := newTestTokens(t, clock, mustKeyring(t, k1))
	token, _, err := tok.Issue(Principal{Kind: KindSession, TenantID: "t1", AccountID: "a1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(token, ".")

	// Claims rewritten to another account and re-signed with a key the
	// store does not have.
	forge := func(kid string, secret []byte, c claims) string {
		payload, _ := json.Marshal(c)
		signed := "pt1." + kid + "." + base64.RawURLEncoding.EncodeToString(payload)
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(signed))
		return signed + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}
	now := clock.Now().Unix()
	operator := claims{Kind: "operator", IssuedAt: now, NotBefore: now, Expires: now + 3600, ID: "x"}
	var claimsOf claims
	raw, _ := base64.RawURLEncoding.DecodeString(parts[2])
	if err := json.Unmarshal(raw, &claimsOf); err != nil {
		t.Fatal(err)
	}
	claimsOf.AccountID = "a2"
	tampered, _ := json.Marshal(claimsOf)

	flipped := []byte(parts[3])
	flipped[0] ^= 1

	cases := map[string]string{
		"wrong key, same id":     forge("k1", mustKey(t, "k1").Secret, operator),
		"unknown key id":         forge("k9", k1.Secret, operator),
		"tampered claims":        strings.Join([]string{parts[0], parts[1], base64.RawURLEncoding.EncodeToString(tampered), parts[3]}, "."),
		"swapped key id":         strings.Join([]string{parts[0], "k2", parts[2], parts[3]}, "."),
		"flipped signature bit":  strings.Join([]string{parts[0], parts[1], parts[2], string(flipped)}, "."),
		"no signature":           strings.Join(parts[:3], ".") + ".",
		"other version":          "pt2." + strings.Join(parts[1:], "."),
		"too few parts":          strings.Join(parts[:3], "."),
		"empty":                  "",
		"garbage":                "not a token",
		"huge":                   strings.Repeat("a", maxTokenLen+1),
		"unknown kind, signed":   forge("k1", k1.Secret, claims{Kind: "root", IssuedAt: now, NotBefore: now, Expires: now + 60}),
		"session without tenant": forge("k1", k1.Secret, claims{Kind: "session", AccountID: "a1", IssuedAt: now, NotBefore: now, Expires: now + 60}),
		"unknown service":        forge("k1", k1.Secret, claims{Kind: "service", Service: "mallory", IssuedAt: now, NotBefore: now, Expires: now + 60}),
	}
	// The forging helper itself must produce tokens the store accepts when
	// the key is right, or the cases above prove nothing.
	if _, err := tok.Verify(forge("k1", k1.Secret, operator)); err != nil {
		t.Fatalf("control token signed with the real key rejected: %v", err)
	}
	for name, bad := range cases {
		t.Run(name, func(t *testing.T) {
			if p, err := tok.Verify(bad); !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("Verify = %+v, %v; want ErrInvalidToken", p, err)
			}
		})
	}
}

func TestKeyRotation(t *testing.T) {
	clock := newFakeClock()
	k1, k2 := mustKey(t, "k1"), mustKey(t, "k2")
	tok := newTestTokens(t, clock, mustKeyring(t, k1))
	old, _, err := tok.Issue(Principal{Kind: KindTenantAdmin, TenantID: "t1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	// Rotate: k2 signs, k1 still verifies.
	tok.SetKeyring(mustKeyring(t, k2, k1))
	if _, err := tok.Verify(old); err != nil {
		t.Fatalf("token signed with the previous key rejected after rotation: %v", err)
	}
	fresh, _, err := tok.Issue(Principal{Kind: KindOperator}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(fresh, "pt1.k2.") {
		t.Fatalf("new token %q not signed with the current key", fresh)
	}
	// A replica that has not rotated yet does not know k2.
	if _, err := newTestTokens(t, clock, mustKeyring(t, k1)).Verify(fresh); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("token of an unknown key accepted: %v", err)
	}

	// Retire k1.
	tok.SetKeyring(mustKeyring(t, k2))
	if _, err := tok.Verify(old); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("token of a retired key accepted: %v", err)
	}
	if _, err := tok.Verify(fresh); err != nil {
		t.Fatalf("current token rejected: %v", err)
	}
}

func TestKeyringValidation(t *testing.T) {
	good := mustKey(t, "good")
	for name, keys := range map[string][]Key{
		"empty id":     {{ID: "", Secret: good.Secret}},
		"dot in id":    {{ID: "a.b", Secret: good.Secret}},
		"short secret": {{ID: "k", Secret: []byte("short")}},
		"duplicate":    {good, good},
	} {
		if _, err := NewKeyring(keys[0], keys[1:]...); err == nil {
			t.Errorf("%s: NewKeyring accepted it", name)
		}
	}
	if _, err := NewTokens(TokenOptions{}); err == nil {
		t.Error("NewTokens without keyring accepted")
	}
}

func TestIssueRejectsIncompletePrincipals(t *testing.T) {
	tok := newTestTokens(t, newFakeClock(), mustKeyring(t, mustKey(t, "k1")))
	for _, p := range []Principal{
		{},
		{Kind: KindSession, TenantID: "t1"},
		{Kind: KindTenantAdmin},
		{Kind: KindService, Service: "mallory"},
	} {
		if _, _, err := tok.Issue(p, time.Hour); err == nil {
			t.Errorf("Issue(%+v) succeeded", p)
		}
	}
	if _, _, err := tok.Issue(Principal{Kind: KindOperator}, 0); err == nil {
		t.Error("Issue with zero lifetime succeeded")
	}
}

func TestPrincipalPermissions(t *testing.T) {
	session := Principal{Kind: KindSession, TenantID: "t1", AccountID: "a1"}
	tenantAdmin := Principal{Kind: KindTenantAdmin, TenantID: "t1"}
	operator := Principal{Kind: KindOperator}
	smtp := Principal{Kind: KindService, Service: ServiceSMTP}
	delivery := Principal{Kind: KindService, Service: ServiceDelivery}
	imap := Principal{Kind: KindService, Service: ServiceIMAP}

	for _, c := range []struct {
		p    Principal
		cap  Capability
		want bool
	}{
		{smtp, CapResolveRecipient, true}, {smtp, CapAuthenticate, true}, {smtp, CapDeliver, false},
		{delivery, CapResolveRecipient, true}, {delivery, CapDeliver, true}, {delivery, CapAuthenticate, false},
		{imap, CapAuthenticate, true}, {imap, CapDeliver, false}, {imap, CapResolveRecipient, false},
		{operator, CapDeliver, true},
		{session, CapAuthenticate, false}, {tenantAdmin, CapDeliver, false},
	} {
		if got := c.p.Has(c.cap); got != c.want {
			t.Errorf("%s/%s Has(%s) = %v, want %v", c.p.Kind, c.p.Service, c.cap, got, c.want)
		}
	}

	for _, c := range []struct {
		p               Principal
		tenant, account string
		want            bool
	}{
		{session, "t1", "a1", true},
		{session, "t1", "a2", false},
		{session, "t2", "a1", false},
		{tenantAdmin, "t1", "a9", true},
		{tenantAdmin, "t2", "a9", false},
		{operator, "t2", "a9", true},
		{delivery, "t1", "a1", false},
		{Principal{Kind: KindSession}, "", "", false},
	} {
		if got := c.p.CanAccessAccount(c.tenant, c.account); got != c.want {
			t.Errorf("%s(%s/%s) CanAccessAccount(%s, %s) = %v, want %v", c.p.Kind, c.p.TenantID, c.p.AccountID, c.tenant, c.account, got, c.want)
		}
	}
	if (Principal{Kind: KindTenantAdmin}).CanAccessTenant("") {
		t.Error("tenant admin without tenant may access the empty tenant")
	}
	if got := ServiceCapabilities("smtp"); len(got) != 2 {
		t.Errorf("ServiceCapabilities(smtp) = %v", got)
	}
}
