package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"
)

// Token errors. ErrTokenExpired and ErrTokenNotYetValid also match
// ErrInvalidToken with errors.Is, so callers that do not care why can test
// for one error.
var (
	ErrInvalidToken     = errors.New("auth: invalid token")
	ErrTokenExpired     = fmt.Errorf("%w: expired", ErrInvalidToken)
	ErrTokenNotYetValid = fmt.Errorf("%w: not yet valid", ErrInvalidToken)
)

// Token layout: "pt1.<key id>.<claims>.<mac>", claims and mac unpadded
// base64url (RFC 4648 §5), mac = HMAC-SHA256(key, "pt1.<key id>.<claims>").
// The version prefix is under the MAC so a future format cannot be confused
// with this one.
const (
	tokenPrefix = "pt1"
	// maxTokenLen bounds the work done for garbage in a header.
	maxTokenLen = 4096
	// minSecretLen: HMAC keys shorter than the hash output weaken it
	// (RFC 2104 §3).
	minSecretLen = sha256.Size
)

// DefaultSessionTTL is how long a session token lasts: longer than any
// IMAP session a client keeps open in one go, short enough that a leaked
// token is soon worthless.
const DefaultSessionTTL = 12 * time.Hour

// Key is one HMAC key with the id written into tokens signed by it.
type Key struct {
	ID     string
	Secret []byte
}

// GenerateKey returns a new random key with the given id.
func GenerateKey(id string) (Key, error) {
	secret := make([]byte, 32)
	if _, err := io.ReadFull(rand.Reader, secret); err != nil {
		return Key{}, fmt.Errorf("auth: generate token key: %w", err)
	}
	return Key{ID: id, Secret: secret}, nil
}

func validKeyID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Keyring is the set of keys tokens are checked with: the current key signs
// new tokens, previous keys still verify tokens issued before a rotation
// until those expire. A Keyring never changes; rotate by building a new one
// and passing it to Tokens.SetKeyring.
type Keyring struct {
	current Key
	byID    map[string][]byte
}

// NewKeyring builds a keyring. Key ids must be unique, of letters, digits,
// '-' and '_', and secrets at least 32 bytes.
func NewKeyring(current Key, previous ...Key) (*Keyring, error) {
	kr := &Keyring{byID: make(map[string][]byte)}
	var errs []error
	for _, k := range append([]Key{current}, previous...) {
		switch {
		case !validKeyID(k.ID):
			errs = append(errs, fmt.Errorf("token key id %q: want 1-64 of [A-Za-z0-9_-]", k.ID))
		case len(k.Secret) < minSecretLen:
			errs = append(errs, fmt.Errorf("token key %q: secret is %d bytes, want at least %d", k.ID, len(k.Secret), minSecretLen))
		case kr.byID[k.ID] != nil:
			errs = append(errs, fmt.Errorf("token key id %q used twice", k.ID))
		default:
			kr.byID[k.ID] = bytes.Clone(k.Secret)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	kr.current = Key{ID: current.ID, Secret: kr.byID[current.ID]}
	return kr, nil
}

// CurrentKeyID is the id of the key new tokens are signed with.
func (kr *Keyring) CurrentKeyID() string { return kr.current.ID }

// TokenOptions configure Tokens.
type TokenOptions struct {
	Keyring *Keyring
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// SessionTTL is the lifetime of session tokens; DefaultSessionTTL when
	// zero.
	SessionTTL time.Duration
	// Leeway tolerates clock skew between store replicas when checking
	// not-before and expiry.
	Leeway time.Duration
}

// Tokens issues and verifies signed tokens. It is safe for concurrent use.
type Tokens struct {
	keys       atomic.Pointer[Keyring]
	now        func() time.Time
	sessionTTL time.Duration
	leeway     time.Duration
}

// NewTokens returns a token issuer and verifier.
func NewTokens(opts TokenOptions) (*Tokens, error) {
	if opts.Keyring == nil {
		return nil, errors.New("auth: token keyring is required")
	}
	if opts.SessionTTL < 0 || opts.Leeway < 0 {
		return nil, errors.New("auth: token lifetimes must not be negative")
	}
	t := &Tokens{now: opts.Now, sessionTTL: opts.SessionTTL, leeway: opts.Leeway}
	if t.now == nil {
		t.now = time.Now
	}
	if t.sessionTTL == 0 {
		t.sessionTTL = DefaultSessionTTL
	}
	t.keys.Store(opts.Keyring)
	return t, nil
}

// SetKeyring replaces the keyring, for key rotation without a restart.
func (t *Tokens) SetKeyring(kr *Keyring) {
	if kr != nil {
		t.keys.Store(kr)
	}
}

// claims is the signed payload. Names are short because the token travels
// with every call.
type claims struct {
	Kind      string `json:"knd"`
	TenantID  string `json:"ten,omitempty"`
	AccountID string `json:"acc,omitempty"`
	Address   string `json:"adr,omitempty"`
	Service   string `json:"svc,omitempty"`
	IssuedAt  int64  `json:"iat"`
	NotBefore int64  `json:"nbf"`
	Expires   int64  `json:"exp"`
	// ID makes every token unique, which lets logs tell tokens apart
	// without printing them.
	ID string `json:"jti"`
}

// IssueSession issues a session token for an account, valid for the
// configured session lifetime.
func (t *Tokens) IssueSession(tenantID, accountID, address, service string) (string, time.Time, error) {
	return t.Issue(Principal{Kind: KindSession, TenantID: tenantID, AccountID: accountID, Address: address, Service: service}, t.sessionTTL)
}

// Issue signs a token for p valid from now for ttl. It returns the token and
// its expiry.
func (t *Tokens) Issue(p Principal, ttl time.Duration) (string, time.Time, error) {
	if err := p.validate(); err != nil {
		return "", time.Time{}, fmt.Errorf("auth: issue token: %w", err)
	}
	if ttl <= 0 {
		return "", time.Time{}, errors.New("auth: issue token: lifetime must be positive")
	}
	var id [12]byte
	if _, err := io.ReadFull(rand.Reader, id[:]); err != nil {
		return "", time.Time{}, fmt.Errorf("auth: issue token: %w", err)
	}
	now := t.now()
	// Whole seconds: the expiry reported to the caller must be the one
	// in the token.
	exp := now.Add(ttl).Truncate(time.Second).UTC()
	c := claims{
		Kind: p.Kind.String(), TenantID: p.TenantID, AccountID: p.AccountID,
		Address: p.Address, Service: p.Service,
		IssuedAt: now.Unix(), NotBefore: now.Unix(), Expires: exp.Unix(),
		ID: base64.RawURLEncoding.EncodeToString(id[:]),
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("auth: issue token: %w", err)
	}
	kr := t.keys.Load()
	signed := tokenPrefix + "." + kr.current.ID + "." + base64.RawURLEncoding.EncodeToString(payload)
	return signed + "." + base64.RawURLEncoding.EncodeToString(mac(kr.current.Secret, signed)), exp, nil
}

func mac(key []byte, signed string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(signed))
	return m.Sum(nil)
}

// Verify checks a token's signature and validity period and returns the
// principal it stands for. Every failure matches ErrInvalidToken.
func (t *Tokens) Verify(token string) (Principal, error) {
	if len(token) > maxTokenLen {
		return Principal{}, fmt.Errorf("%w: too long", ErrInvalidToken)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 4 || parts[0] != tokenPrefix {
		return Principal{}, fmt.Errorf("%w: malformed", ErrInvalidToken)
	}
	key := t.keys.Load().byID[parts[1]]
	if key == nil {
		return Principal{}, fmt.Errorf("%w: unknown key id", ErrInvalidToken)
	}
	sig, err := base64.RawURLEncoding.Strict().DecodeString(parts[3])
	if err != nil {
		return Principal{}, fmt.Errorf("%w: malformed signature", ErrInvalidToken)
	}
	if !hmac.Equal(sig, mac(key, token[:len(token)-len(parts[3])-1])) {
		return Principal{}, fmt.Errorf("%w: bad signature", ErrInvalidToken)
	}
	// Only signed bytes are parsed from here on.
	payload, err := base64.RawURLEncoding.Strict().DecodeString(parts[2])
	if err != nil {
		return Principal{}, fmt.Errorf("%w: malformed claims", ErrInvalidToken)
	}
	var c claims
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Principal{}, fmt.Errorf("%w: malformed claims", ErrInvalidToken)
	}
	now := t.now()
	if now.Add(t.leeway).Unix() < c.NotBefore {
		return Principal{}, ErrTokenNotYetValid
	}
	if now.Add(-t.leeway).Unix() >= c.Expires {
		return Principal{}, ErrTokenExpired
	}
	p := Principal{
		Kind: parseKind(c.Kind), TenantID: c.TenantID, AccountID: c.AccountID,
		Address: c.Address, Service: c.Service, ExpiresAt: time.Unix(c.Expires, 0).UTC(),
	}
	if err := p.validate(); err != nil {
		return Principal{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	return p, nil
}

func parseKind(s string) Kind {
	for k := KindSession; k <= KindTenantAdmin; k++ {
		if k.String() == s {
			return k
		}
	}
	return KindInvalid
}
