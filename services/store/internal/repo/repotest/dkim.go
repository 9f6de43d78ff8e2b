package repotest

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/petrel-mail/petrel/services/store/internal/repo"
)

// testDKIM checks repo.DKIMKeys: keys per domain and selector, newest
// signs, tenant scoping, deletion with the domain.
func testDKIM(t *testing.T, f Factory) {
	e := newEnv(t, f)
	ctx := context.Background()
	_, err := e.r.SigningDKIMKey(ctx, e.domain.Name)
	wantErr(t, "signing key of a domain without keys", err, repo.ErrNotFound)
	k1, err := e.r.CreateDKIMKey(ctx, e.tenant.ID, repo.DKIMKey{Domain: e.domain, Selector: "S1", Algorithm: "rsa", PublicKey: []byte("pub1"), SealedPrivateKey: []byte("sealed1")})
	if err != nil {
		t.Fatal(err)
	}
	if k1.Selector != "s1" || k1.Domain.Name != e.domain.Name || k1.CreatedAt.IsZero() || !bytes.Equal(k1.SealedPrivateKey, []byte("sealed1")) {
		t.Fatalf("created key: %+v", k1)
	}
	_, err = e.r.CreateDKIMKey(ctx, e.tenant.ID, repo.DKIMKey{Domain: e.domain, Selector: "s1", Algorithm: "rsa", PublicKey: []byte("x"), SealedPrivateKey: []byte("x")})
	wantErr(t, "duplicate selector", err, repo.ErrExists)
	_, err = e.r.CreateDKIMKey(ctx, e.tenant.ID, repo.DKIMKey{Domain: e.domain, Selector: "bad selector", Algorithm: "rsa", PublicKey: []byte("x"), SealedPrivateKey: []byte("x")})
	wantErr(t, "bad selector", err, repo.ErrInvalidName)
	other, err := e.r.CreateTenant(ctx, "other-"+t.Name())
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.r.CreateDKIMKey(ctx, other.ID, repo.DKIMKey{Domain: e.domain, Selector: "s9", Algorithm: "rsa", PublicKey: []byte("x"), SealedPrivateKey: []byte("x")})
	wantErr(t, "another tenant's domain", err, repo.ErrNotFound)

	k2, err := e.r.CreateDKIMKey(ctx, e.tenant.ID, repo.DKIMKey{Domain: e.domain, Selector: "s2", Algorithm: "ed25519", PublicKey: []byte("pub2"), SealedPrivateKey: []byte("sealed2")})
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.r.SigningDKIMKey(ctx, strings.ToUpper(e.domain.Name))
	if err != nil || got.Selector != "s2" || got.Algorithm != "ed25519" || !bytes.Equal(got.PublicKey, []byte("pub2")) {
		t.Fatalf("signing key: %+v %v (want the newest, s2)", got, err)
	}
	list, err := e.r.ListDKIMKeys(ctx, e.tenant.ID, 0)
	if err != nil || len(list) != 2 || list[0].Selector != k2.Selector || list[1].Selector != k1.Selector {
		t.Fatalf("list: %+v %v", list, err)
	}
	if list, err := e.r.ListDKIMKeys(ctx, other.ID, 0); err != nil || len(list) != 0 {
		t.Fatalf("another tenant's list: %+v %v", list, err)
	}
	wantErr(t, "delete another tenant's key", e.r.DeleteDKIMKey(ctx, other.ID, e.domain.ID, "s2"), repo.ErrNotFound)
	if err := e.r.DeleteDKIMKey(ctx, e.tenant.ID, e.domain.ID, "S2"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "delete twice", e.r.DeleteDKIMKey(ctx, e.tenant.ID, e.domain.ID, "s2"), repo.ErrNotFound)
	if got, err := e.r.SigningDKIMKey(ctx, e.domain.Name); err != nil || got.Selector != "s1" {
		t.Fatalf("signing key after deleting s2: %+v %v", got, err)
	}
	// The domain's keys go with it.
	if err := e.r.DeleteDomain(ctx, e.tenant.ID, e.domain.ID); err != nil {
		t.Fatal(err)
	}
	if list, err := e.r.ListDKIMKeys(ctx, 0, e.domain.ID); err != nil || len(list) != 0 {
		t.Fatalf("keys of a deleted domain: %+v %v", list, err)
	}
}
