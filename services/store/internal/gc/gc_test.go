package gc

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/petrel-mail/petrel/platform/blob"
	"github.com/petrel-mail/petrel/platform/blob/fsblob"
	"github.com/petrel-mail/petrel/platform/testenv"
	"github.com/petrel-mail/petrel/services/store/internal/mimeparse"
	"github.com/petrel-mail/petrel/services/store/internal/repo/pgrepo"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestServeCollectsAndStops: the loop deletes an object recorded but never
// referenced once its grace is over, and Shutdown ends it.
func TestServeCollectsAndStops(t *testing.T) {
	ctx := context.Background()
	r, err := pgrepo.Open(ctx, testenv.NewDatabase(t), pgrepo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	blobs, err := fsblob.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tenant, err := r.CreateTenant(ctx, "gc")
	if err != nil {
		t.Fatal(err)
	}
	raw := []byte("Subject: orphan\r\n\r\nbody\r\n")
	key := "msg/1/2026/11/25/orphan"
	if _, err := blobs.Put(ctx, key, bytes.NewReader(raw)); err != nil {
		t.Fatal(err)
	}
	p, err := mimeparse.Parse(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateObject(ctx, tenant.ID, key, p); err != nil {
		t.Fatal(err)
	}
	c, err := New(Options{Repo: r, Blobs: blobs, Grace: 0, Interval: 10 * time.Millisecond, IndexInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- c.Serve(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := blobs.Stat(ctx, key)
		if errors.Is(err, blob.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("orphan object not collected: %v", err)
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
	// The object's words went to the SEARCH index's pending list; the
	// index loop merges them.
	for testutil.ToFloat64(c.indexed) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("search index never cleaned")
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
	if n, err := r.CleanSearchIndex(ctx); err != nil || n != 0 {
		t.Errorf("pending pages left after the loop's clean-up: %d %v", n, err)
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}
