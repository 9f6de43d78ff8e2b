package s3blob_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/petrel-mail/petrel/platform/blob"
	"github.com/petrel-mail/petrel/platform/blob/blobtest"
	"github.com/petrel-mail/petrel/platform/blob/s3blob"
	"github.com/petrel-mail/petrel/platform/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var (
	bucketOnce sync.Once
	bucket     testenv.S3Config
)

// config returns the package's bucket (one per test binary, removed by
// testenv.Main) with the default 8 MiB parts that production uses: the
// suite's 20 MiB and 100 MiB objects go through several of them.
func config(t *testing.T) s3blob.Config {
	t.Helper()
	bucketOnce.Do(func() { bucket = testenv.NewBucket(t) })
	if bucket.Bucket == "" {
		t.Fatal("no test bucket")
	}
	return s3blob.Config{
		Endpoint:  bucket.Endpoint,
		AccessKey: bucket.AccessKey,
		SecretKey: bucket.SecretKey,
		Bucket:    bucket.Bucket,
		Region:    bucket.Region,
		UseTLS:    bucket.UseTLS,
	}
}

func newStore(t *testing.T, cfg s3blob.Config) *s3blob.Store {
	t.Helper()
	s, err := s3blob.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestContract(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store { return newStore(t, config(t)) })
}

func TestConfigValidate(t *testing.T) {
	err := s3blob.Config{PartSize: 1 << 20}.Validate()
	if err == nil {
		t.Fatal("empty config validated")
	}
	for _, want := range []string{"Endpoint", "Bucket", "AccessKey", "PartSize"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error %q does not mention %s", err, want)
		}
	}
	if _, err := s3blob.New(s3blob.Config{}); err == nil {
		t.Error("New accepted an empty config")
	}
}

func TestCheckMissingBucket(t *testing.T) {
	cfg := config(t)
	cfg.Bucket = cfg.Bucket + "-missing"
	s, err := s3blob.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(t.Context()); err == nil {
		t.Fatal("Check succeeded on a missing bucket")
	}
	// A missing bucket is a fault, not a missing object.
	if _, err := s.Stat(t.Context(), "x"); err == nil || strings.Contains(err.Error(), blob.ErrNotFound.Error()) {
		t.Fatalf("Stat in a missing bucket = %v, want an error other than ErrNotFound", err)
	}
}
