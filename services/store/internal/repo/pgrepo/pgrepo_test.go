package pgrepo

import (
	"context"
	"sync"
	"testing"

	"github.com/petrel-mail/petrel/platform/testenv"
	"github.com/petrel-mail/petrel/services/store/internal/repo"
	"github.com/petrel-mail/petrel/services/store/internal/repo/repotest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func open(t testing.TB, url string) *Repo {
	t.Helper()
	r, err := Open(context.Background(), url, Options{MaxConns: 60})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestConformance(t *testing.T) {
	repotest.Run(t, func(t *testing.T) repo.Repository {
		return open(t, testenv.NewDatabase(t))
	})
}

// TestConcurrentMigrate starts five "replicas" at once on an empty
// database: all succeed and the migrations are applied exactly once.
func TestConcurrentMigrate(t *testing.T) {
	url := testenv.NewDatabase(t)
	r, err := Open(context.Background(), url, Options{SkipMigrations: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var wg sync.WaitGroup
	applied := make([][]int, 5)
	errs := make([]error, 5)
	for i := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			applied[i], errs[i] = Migrate(context.Background(), r.Pool())
		}()
	}
	wg.Wait()
	ms, _ := migrations()
	total := 0
	for i := range 5 {
		if errs[i] != nil {
			t.Fatalf("migrate %d: %v", i, errs[i])
		}
		total += len(applied[i])
	}
	if total != len(ms) {
		t.Fatalf("%d migrations applied in total, want %d", total, len(ms))
	}
	var n int
	if err := r.Pool().QueryRow(context.Background(), "SELECT count(*) FROM schema_migrations").Scan(&n); err != nil || n != len(ms) {
		t.Fatalf("schema_migrations has %d rows (%v), want %d", n, err, len(ms))
	}
}
