package repo

import (
	"context"
	"time"
)

// DKIMKeys keeps the DKIM signing keys of domains (RFC 6376). The private
// key arrives sealed: the repository stores opaque bytes and never sees
// the secrets key that encrypts them (server.Sealer does). A domain may
// hold several keys under different selectors (a rotation publishes the
// new one before it signs); the newest signs. Deleting a domain deletes
// its keys.
type DKIMKeys interface {
	// CreateDKIMKey stores k (Domain.ID, Selector, Algorithm, PublicKey,
	// SealedPrivateKey); ErrExists if the domain has the selector,
	// ErrNotFound if the domain is not the tenant's.
	CreateDKIMKey(ctx context.Context, tenantID int64, k DKIMKey) (DKIMKey, error)
	// ListDKIMKeys lists keys newest first: of a domain (domainID > 0),
	// else of a tenant (tenantID > 0), else all.
	ListDKIMKeys(ctx context.Context, tenantID, domainID int64) ([]DKIMKey, error)
	// DeleteDKIMKey deletes one key; ErrNotFound if there is none.
	DeleteDKIMKey(ctx context.Context, tenantID, domainID int64, selector string) error
	// SigningDKIMKey is the newest key of a domain by name
	// (case-insensitive); ErrNotFound if the domain has none.
	SigningDKIMKey(ctx context.Context, domain string) (DKIMKey, error)
}

// DKIMKey is one stored key.
type DKIMKey struct {
	Domain    Domain
	Selector  string
	Algorithm string // "rsa" or "ed25519": the k= tag
	// PublicKey is the p= value's bytes: the DER SubjectPublicKeyInfo for
	// RSA, the raw 32-byte key for Ed25519 (RFC 8463 §4.2).
	PublicKey []byte
	// SealedPrivateKey is the encrypted PKCS #8 key.
	SealedPrivateKey []byte
	CreatedAt        time.Time
}
