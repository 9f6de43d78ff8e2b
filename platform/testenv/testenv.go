// Package testenv gives integration tests their real dependencies:
// PostgreSQL, NATS with JetStream and an S3 server, as made reachable by
// scripts/test-deps.sh (which `make test` runs first).
//
// Each test package (one test binary, one process) gets its own database and
// bucket, created on first use and removed by Main when the package's tests
// end, so nothing is shared between packages or runs. A dependency whose
// setting is missing fails the test: integration tests never skip.
//
// Settings read from the environment:
//
//	PETREL_TEST_POSTGRES_URL   admin URL of a PostgreSQL server (trust auth)
//	PETREL_TEST_NATS_URL       URL of a NATS server with JetStream
//	PETREL_TEST_S3_ENDPOINT    host:port of an S3 server (plain HTTP)
//	PETREL_TEST_S3_ACCESS_KEY  its access key
//	PETREL_TEST_S3_SECRET_KEY  its secret key
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

const hint = "run the tests through `make test`, or first `eval \"$(scripts/test-deps.sh)\"`"

// S3Config is how to reach the test S3 server and the package's bucket.
type S3Config struct {
	Endpoint  string // host:port
	AccessKey string
	SecretKey string
	Bucket    string
	Region    string
	UseTLS    bool
}

var (
	mu        sync.Mutex
	runID     = newRunID()
	databases []string // created by this process, dropped by Main
	buckets   []string
	pgAdmin   string
	s3conf    S3Config
)

func newRunID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Main runs the package's tests and then removes the databases and buckets
// they created. Use it from TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	cleanup()
	os.Exit(code)
}

func need(tb testing.TB, name string) string {
	tb.Helper()
	v := os.Getenv(name)
	if v == "" {
		tb.Fatalf("testenv: %s is not set; %s", name, hint)
	}
	return v
}

// PostgresAdminURL returns the admin URL of the test PostgreSQL server.
func PostgresAdminURL(tb testing.TB) string {
	tb.Helper()
	return need(tb, "PETREL_TEST_POSTGRES_URL")
}

// NewDatabase creates a new, empty database for the calling test package and
// returns a URL for it. Every call gives a distinct database; all are dropped
// by Main.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	admin := PostgresAdminURL(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		tb.Fatalf("testenv: connect to PostgreSQL at %s: %v; %s", redact(admin), err, hint)
	}
	defer conn.Close(ctx)
	mu.Lock()
	name := fmt.Sprintf("petrel_test_%s_%d", runID, len(databases))
	databases = append(databases, name)
	pgAdmin = admin
	mu.Unlock()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE template0 ENCODING 'UTF8'"); err != nil {
		tb.Fatalf("testenv: create database: %v", err)
	}
	u, err := url.Parse(admin)
	if err != nil {
		tb.Fatalf("testenv: bad PETREL_TEST_POSTGRES_URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

var (
	pkgDBOnce sync.Once
	pkgDB     string
)

// Database returns the package's shared database (created on first use).
func Database(tb testing.TB) string {
	tb.Helper()
	pkgDBOnce.Do(func() { pkgDB = NewDatabase(tb) })
	if pkgDB == "" {
		tb.Fatal("testenv: package database could not be created")
	}
	return pkgDB
}

// NATSURL returns the URL of the test NATS server (JetStream enabled).
// Tests that share it must name their streams and subjects with Prefix.
func NATSURL(tb testing.TB) string {
	tb.Helper()
	return need(tb, "PETREL_TEST_NATS_URL")
}

// Prefix returns a name unique to this test process, for stream names,
// subjects and keys on shared servers.
func Prefix() string { return "t" + runID }

// NewBucket creates a new, empty bucket for the calling test package. All
// buckets are emptied and removed by Main.
func NewBucket(tb testing.TB) S3Config {
	tb.Helper()
	c := S3Config{
		Endpoint:  need(tb, "PETREL_TEST_S3_ENDPOINT"),
		AccessKey: need(tb, "PETREL_TEST_S3_ACCESS_KEY"),
		SecretKey: need(tb, "PETREL_TEST_S3_SECRET_KEY"),
		Region:    "us-east-1",
	}
	cl, err := s3client(c)
	if err != nil {
		tb.Fatalf("testenv: S3 client: %v", err)
	}
	mu.Lock()
	c.Bucket = fmt.Sprintf("petrel-test-%s-%d", runID, len(buckets))
	buckets = append(buckets, c.Bucket)
	s3conf = c
	mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.MakeBucket(ctx, c.Bucket, minio.MakeBucketOptions{Region: c.Region}); err != nil {
		tb.Fatalf("testenv: create bucket on %s: %v; %s", c.Endpoint, err, hint)
	}
	return c
}

func s3client(c S3Config) (*minio.Client, error) {
	return minio.New(c.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(c.AccessKey, c.SecretKey, ""),
		Secure: c.UseTLS,
		Region: c.Region,
	})
}

func cleanup() {
	mu.Lock()
	defer mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if len(databases) > 0 {
		if conn, err := pgx.Connect(ctx, pgAdmin); err == nil {
			for _, db := range databases {
				if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)"); err != nil {
					fmt.Fprintf(os.Stderr, "testenv: drop database %s: %v\n", db, err)
				}
			}
			conn.Close(ctx)
		}
	}
	if len(buckets) > 0 {
		if cl, err := s3client(s3conf); err == nil {
			for _, b := range buckets {
				objs := cl.ListObjects(ctx, b, minio.ListObjectsOptions{Recursive: true})
				for err := range cl.RemoveObjects(ctx, b, objs, minio.RemoveObjectsOptions{}) {
					fmt.Fprintf(os.Stderr, "testenv: remove object in %s: %v\n", b, err.Err)
				}
				if err := cl.RemoveBucket(ctx, b); err != nil {
					fmt.Fprintf(os.Stderr, "testenv: remove bucket %s: %v\n", b, err)
				}
			}
		}
	}
	databases, buckets = nil, nil
}

func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	if _, ok := p.User.Password(); ok {
		p.User = url.UserPassword(p.User.Username(), "xxx")
	}
	return strings.TrimSpace(p.String())
}
