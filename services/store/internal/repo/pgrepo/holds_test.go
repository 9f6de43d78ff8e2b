package pgrepo

import (
	"context"
	"testing"
	"time"

	"github.com/petrel-mail/petrel/platform/testenv"
	"github.com/petrel-mail/petrel/services/store/internal/mimeparse"
)

// TestExpiredHoldLetsGo: a hold older than HoldLifetime (its release was
// lost) no longer keeps the object, and the collector forgets it.
func TestExpiredHoldLetsGo(t *testing.T) {
	ctx := context.Background()
	r := open(t, testenv.NewDatabase(t))
	defer r.Close()
	tenant, err := r.CreateTenant(ctx, "holds")
	if err != nil {
		t.Fatal(err)
	}
	key := "msg/1/2026/11/26/held"
	if _, err := r.CreateObject(ctx, tenant.ID, key, &mimeparse.Parsed{Size: 10, Header: []byte("Subject: x\r\n\r\n")}); err != nil {
		t.Fatal(err)
	}
	if err := r.HoldObject(ctx, tenant.ID, key, "Q1"); err != nil {
		t.Fatal(err)
	}
	var deleted []string
	del := func(_ context.Context, _ int64, k string) error { deleted = append(deleted, k); return nil }
	if n, err := r.Collect(ctx, 0, del); err != nil || n != 0 {
		t.Fatalf("collected %d (%v) while held", n, err)
	}
	if _, err := r.pool.Exec(ctx, `UPDATE object_holds SET created_at = now() - make_interval(secs => $1)`,
		(HoldLifetime + time.Hour).Seconds()); err != nil {
		t.Fatal(err)
	}
	if n, err := r.Collect(ctx, 0, del); err != nil || n != 1 || len(deleted) != 1 || deleted[0] != key {
		t.Fatalf("with an expired hold: collected %d (%v), deleted %v", n, err, deleted)
	}
	var holds int
	if err := r.pool.QueryRow(ctx, `SELECT count(*) FROM object_holds`).Scan(&holds); err != nil || holds != 0 {
		t.Fatalf("%d holds left (%v), want the expired one gone", holds, err)
	}
}
