package admin

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"

	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/petrel-mail/petrel/services/store/storeclient"
)

// Verifier decides whether a bearer token is an operator's. It returns a
// gRPC status error (UNAUTHENTICATED, PERMISSION_DENIED, UNAVAILABLE).
type Verifier interface {
	VerifyOperator(ctx context.Context, token string) error
}

// StoreVerifier checks operator tokens with the store, which alone holds
// the keys that sign them: the token must claim the operator kind, and the
// store must accept it for an admin call (ListTenants, which every
// operator may make and which changes nothing). The claim can be read here
// because the store's signature covers it: a token whose claims were
// changed is refused by the store. Accepted tokens are remembered for TTL,
// so a revoked key stops working here at most TTL later.
type StoreVerifier struct {
	Admin storev1.AdminServiceClient
	TTL   time.Duration
	Now   func() time.Time

	mu   sync.Mutex
	good map[[32]byte]time.Time
}

// DefaultVerifyTTL is how long a StoreVerifier trusts a checked token.
const DefaultVerifyTTL = 30 * time.Second

// maxCached bounds the cache; it is cleared when full (a handful of
// operators use the API).
const maxCached = 1024

// VerifyOperator implements Verifier.
func (v *StoreVerifier) VerifyOperator(ctx context.Context, token string) error {
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	ttl := v.TTL
	if ttl <= 0 {
		ttl = DefaultVerifyTTL
	}
	kind, exp, ok := claims(token)
	if !ok {
		return status.Error(codes.Unauthenticated, "invalid token")
	}
	if kind != "operator" {
		return status.Error(codes.PermissionDenied, "queue administration needs an operator token")
	}
	if !exp.IsZero() && !now().Before(exp) {
		return status.Error(codes.Unauthenticated, "token expired")
	}
	key := sha256.Sum256([]byte(token))
	v.mu.Lock()
	until, cached := v.good[key]
	v.mu.Unlock()
	if cached && now().Before(until) {
		return nil
	}
	_, err := v.Admin.ListTenants(storeclient.WithToken(ctx, token), &storev1.ListTenantsRequest{})
	switch {
	case err == nil:
	case errors.Is(err, storeclient.ErrAuthFailed):
		return status.Error(codes.Unauthenticated, "invalid token")
	case errors.Is(err, storeclient.ErrPermissionDenied):
		return status.Error(codes.PermissionDenied, "queue administration needs an operator token")
	case errors.Is(err, storeclient.ErrUnavailable):
		return status.Error(codes.Unavailable, "cannot check the token: store unavailable")
	default:
		if status.Code(err) == codes.Unauthenticated {
			return status.Error(codes.Unauthenticated, "invalid token")
		}
		return status.Error(codes.Unavailable, "cannot check the token")
	}
	validUntil := now().Add(ttl)
	if !exp.IsZero() && exp.Before(validUntil) {
		validUntil = exp
	}
	v.mu.Lock()
	if v.good == nil || len(v.good) >= maxCached {
		v.good = map[[32]byte]time.Time{}
	}
	v.good[key] = validUntil
	v.mu.Unlock()
	return nil
}

// claims reads the kind and expiry of a store token,
// "pt1.<key id>.<base64url JSON claims>.<mac>", without checking the MAC
// (the store does).
func claims(token string) (kind string, exp time.Time, ok bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 4 || parts[0] != "pt1" {
		return "", time.Time{}, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return "", time.Time{}, false
	}
	var c struct {
		Kind    string `json:"knd"`
		Expires int64  `json:"exp"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return "", time.Time{}, false
	}
	if c.Expires > 0 {
		exp = time.Unix(c.Expires, 0)
	}
	return c.Kind, exp, true
}

// bearer extracts the token of "authorization: Bearer <token>" (RFC 6750
// §2.1).
func bearer(ctx context.Context) (string, bool) {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
			return strings.TrimSpace(v[7:]), true
		}
	}
	return "", false
}
