package server

// DKIM keys (RFC 6376): generated, listed and deleted through AdminService,
// handed to the delivery service through DKIMService. Private keys are
// sealed with AES-256-GCM under the operator's secrets key before they
// reach the repository (ARCHITECTURE "Trust"): a database dump alone does
// not give them away.

import (
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"time"

	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/petrel-mail/petrel/services/store/internal/repo"
)

// SecretsKeySize is the size of the secrets key: AES-256.
const SecretsKeySize = 32

// Sealer encrypts secrets at rest with AES-256-GCM. A sealed value is
// version (1) || nonce (12) || ciphertext+tag; the additional data binds it
// to what it belongs to (a DKIM key to its domain and selector), so a
// sealed value copied to another row does not open.
type Sealer struct {
	aead cipher.AEAD
}

// NewSealer returns a Sealer for a 32-byte key.
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) != SecretsKeySize {
		return nil, fmt.Errorf("server: secrets key is %d bytes, want %d", len(key), SecretsKeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("server: secrets key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("server: secrets key: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

// LoadSealer reads a secrets key file: the 32-byte key in standard base64
// on one line.
func LoadSealer(path string) (*Sealer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secrets key file: %w", err)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("secrets key file %s: not base64: %w", path, err)
	}
	return NewSealer(key)
}

// GenerateSecretsKey returns a new key in the secrets key file's format.
func GenerateSecretsKey() ([]byte, error) {
	key := make([]byte, SecretsKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	return []byte(base64.StdEncoding.EncodeToString(key) + "\n"), nil
}

const sealVersion = 1

// Seal encrypts plaintext bound to ad.
func (s *Sealer) Seal(plaintext, ad []byte) ([]byte, error) {
	out := make([]byte, 1+s.aead.NonceSize(), 1+s.aead.NonceSize()+len(plaintext)+s.aead.Overhead())
	out[0] = sealVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, err
	}
	return s.aead.Seal(out, out[1:], plaintext, ad), nil
}

// Open decrypts what Seal made with the same ad.
func (s *Sealer) Open(sealed, ad []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < 1+n || sealed[0] != sealVersion {
		return nil, errors.New("server: sealed value has an unknown format")
	}
	pt, err := s.aead.Open(nil, sealed[1:1+n], sealed[1+n:], ad)
	if err != nil {
		return nil, fmt.Errorf("server: sealed value does not open with this secrets key: %w", err)
	}
	return pt, nil
}

func dkimAD(domain, selector string) []byte {
	return []byte("petrel-dkim\x00" + domain + "\x00" + selector)
}

// selectorRE is one or more DNS labels (RFC 6376 §3.1: sub-domain).
var selectorRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)

func (s *AdminServer) sealer() (*Sealer, error) {
	if s.opts.Secrets == nil {
		return nil, failedPrecondition("the store has no secrets key (--secrets-key-file): DKIM keys are not available")
	}
	return s.opts.Secrets, nil
}

// GenerateDKIMKey makes a key for a domain and returns its DNS record.
func (s *AdminServer) GenerateDKIMKey(ctx context.Context, req *storev1.GenerateDKIMKeyRequest) (*storev1.GenerateDKIMKeyResponse, error) {
	sealer, err := s.sealer()
	if err != nil {
		return nil, err
	}
	sel := strings.ToLower(req.GetSelector())
	if sel == "" {
		sel = "petrel" + time.Now().UTC().Format("20060102")
	}
	if len(sel) > 253 || !selectorRE.MatchString(sel) {
		return nil, badArg("selector must be DNS labels (letters, digits, '-')")
	}
	d, err := s.domainNamed(ctx, req.GetDomain())
	if err != nil {
		return nil, err
	}
	var (
		priv crypto.Signer
		alg  string
		pub  []byte
	)
	switch req.GetAlgorithm() {
	case storev1.DKIMAlgorithm_DKIM_ALGORITHM_UNSPECIFIED, storev1.DKIMAlgorithm_DKIM_ALGORITHM_RSA_2048:
		k, err := rsa.GenerateKey(rand.Reader, 2048) // RFC 8301 §3.2
		if err != nil {
			return nil, s.status(ctx, "generate RSA key", err)
		}
		if pub, err = x509.MarshalPKIXPublicKey(&k.PublicKey); err != nil {
			return nil, s.status(ctx, "encode RSA public key", err)
		}
		priv, alg = k, "rsa"
	case storev1.DKIMAlgorithm_DKIM_ALGORITHM_ED25519:
		p, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, s.status(ctx, "generate Ed25519 key", err)
		}
		// RFC 8463 §4.2: p= is the raw public key, not SubjectPublicKeyInfo.
		priv, alg, pub = k, "ed25519", []byte(p)
	default:
		return nil, badArg("unknown DKIM algorithm")
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, s.status(ctx, "encode private key", err)
	}
	sealed, err := sealer.Seal(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), dkimAD(d.Name, sel))
	if err != nil {
		return nil, s.status(ctx, "seal private key", err)
	}
	k, err := s.opts.Repo.CreateDKIMKey(ctx, d.TenantID, repo.DKIMKey{
		Domain: d.Domain, Selector: sel, Algorithm: alg, PublicKey: pub, SealedPrivateKey: sealed,
	})
	if err != nil {
		return nil, s.status(ctx, "create DKIM key", err)
	}
	s.opts.Logger.Info("DKIM key generated", "domain", d.Name, "selector", sel, "algorithm", alg)
	return &storev1.GenerateDKIMKeyResponse{Key: dkimKeyProto(k, true)}, nil
}

// ListDKIMKeys lists the keys of a domain, or of every visible domain.
func (s *AdminServer) ListDKIMKeys(ctx context.Context, req *storev1.ListDKIMKeysRequest) (*storev1.ListDKIMKeysResponse, error) {
	tenant, err := visibleTenant(ctx)
	if err != nil {
		return nil, err
	}
	var domainID int64
	if req.GetDomain() != "" {
		d, err := s.domainNamed(ctx, req.GetDomain())
		if err != nil {
			return nil, err
		}
		tenant, domainID = d.TenantID, d.ID
	}
	keys, err := s.opts.Repo.ListDKIMKeys(ctx, tenant, domainID)
	if err != nil {
		return nil, s.status(ctx, "list DKIM keys", err)
	}
	resp := &storev1.ListDKIMKeysResponse{}
	// Keys come newest first per domain: the first of each domain signs.
	for i, k := range keys {
		active := i == 0 || keys[i-1].Domain.ID != k.Domain.ID
		resp.Keys = append(resp.Keys, dkimKeyProto(k, active))
	}
	return resp, nil
}

// DeleteDKIMKey deletes one key of a domain.
func (s *AdminServer) DeleteDKIMKey(ctx context.Context, req *storev1.DeleteDKIMKeyRequest) (*storev1.DeleteDKIMKeyResponse, error) {
	d, err := s.domainNamed(ctx, req.GetDomain())
	if err != nil {
		return nil, err
	}
	if err := s.opts.Repo.DeleteDKIMKey(ctx, d.TenantID, d.ID, req.GetSelector()); err != nil {
		return nil, s.status(ctx, "delete DKIM key", err)
	}
	return &storev1.DeleteDKIMKeyResponse{}, nil
}

func dkimKeyProto(k repo.DKIMKey, active bool) *storev1.DKIMKey {
	alg := storev1.DKIMAlgorithm_DKIM_ALGORITHM_RSA_2048
	if k.Algorithm == "ed25519" {
		alg = storev1.DKIMAlgorithm_DKIM_ALGORITHM_ED25519
	}
	record := "v=DKIM1; k=" + k.Algorithm + "; p=" + base64.StdEncoding.EncodeToString(k.PublicKey)
	return &storev1.DKIMKey{
		Domain:     k.Domain.Name,
		Selector:   k.Selector,
		Algorithm:  alg,
		RecordName: k.Selector + "._domainkey." + k.Domain.Name,
		Record:     record,
		ZoneText:   zoneText(record),
		CreatedAt:  timestamppb.New(k.CreatedAt),
		Active:     active,
	}
}

// zoneText quotes a TXT value as zone-file character-strings of at most
// 255 octets each (RFC 1035 §3.3.14; RFC 6376 §3.6.2.2 joins them).
func zoneText(v string) string {
	var parts []string
	for len(v) > 255 {
		parts = append(parts, `"`+v[:255]+`"`)
		v = v[255:]
	}
	parts = append(parts, `"`+v+`"`)
	return strings.Join(parts, " ")
}

// DKIMOptions configure NewDKIMServer. Repo is required; without Secrets
// every call fails with FAILED_PRECONDITION.
type DKIMOptions struct {
	Repo    repo.Repository
	Secrets *Sealer
	Logger  *slog.Logger
}

// DKIMServer implements storev1.DKIMServiceServer for the delivery
// service (the auth rules admit only its token).
type DKIMServer struct {
	storev1.UnimplementedDKIMServiceServer
	opts DKIMOptions
}

// NewDKIMServer returns the DKIMService handlers.
func NewDKIMServer(opts DKIMOptions) (*DKIMServer, error) {
	if opts.Repo == nil {
		return nil, errors.New("server: DKIM needs Repo")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &DKIMServer{opts: opts}, nil
}

// GetSigningKey returns the newest key of a domain, opened.
func (s *DKIMServer) GetSigningKey(ctx context.Context, req *storev1.GetSigningKeyRequest) (*storev1.GetSigningKeyResponse, error) {
	k, err := s.opts.Repo.SigningDKIMKey(ctx, req.GetDomain())
	if errors.Is(err, repo.ErrInvalidName) {
		return nil, withReason(codes.NotFound, "not found", storev1.Reason_REASON_NOT_FOUND)
	}
	if err != nil {
		return nil, toStatus(ctx, s.opts.Logger, "get DKIM key", err)
	}
	if s.opts.Secrets == nil {
		return nil, failedPrecondition("the store has no secrets key (--secrets-key-file)")
	}
	pemKey, err := s.opts.Secrets.Open(k.SealedPrivateKey, dkimAD(k.Domain.Name, k.Selector))
	if err != nil {
		return nil, toStatus(ctx, s.opts.Logger, "open DKIM key", err)
	}
	alg := storev1.DKIMAlgorithm_DKIM_ALGORITHM_RSA_2048
	if k.Algorithm == "ed25519" {
		alg = storev1.DKIMAlgorithm_DKIM_ALGORITHM_ED25519
	}
	return &storev1.GetSigningKeyResponse{Domain: k.Domain.Name, Selector: k.Selector, Algorithm: alg, PrivateKeyPem: pemKey}, nil
}
