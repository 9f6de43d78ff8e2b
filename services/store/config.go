package store

import (
	"path/filepath"
	"time"

	"github.com/petrel-mail/petrel/platform/config"
	"github.com/petrel-mail/petrel/platform/lifecycle"
	"github.com/petrel-mail/petrel/platform/logging"
	"github.com/petrel-mail/petrel/services/store/internal/gc"
	"github.com/petrel-mail/petrel/services/store/internal/server"
)

// Name is the service name: it forms the PETREL_STORE_* variables,
// the binary's name and the service attribute of every log record.
const Name = "store"

// Config is petrel-store's configuration.
type Config struct {
	Log logging.Config
	// MetricsListen is where /metrics, /healthz and /readyz are served.
	MetricsListen string
	// GRPCListen is where the gRPC API and the gRPC health service listen.
	GRPCListen string
	// ShutdownGrace bounds the drain after SIGTERM.
	ShutdownGrace time.Duration
	// AddrFile, if set, receives the bound addresses as JSON once the
	// service listens, for tests and launchers that use port 0.
	AddrFile string

	// PostgresURL is the database (pgx URL or DSN); migrations run at start.
	PostgresURL string

	// Blob storage: an S3 bucket, or a directory (BlobDir) for a single
	// node and development.
	S3Endpoint     string
	S3Bucket       string
	S3AccessKey    string
	S3SecretKey    string
	S3Region       string
	S3TLS          bool
	S3CreateBucket bool
	BlobDir        string

	// NATSURLs are the NATS servers mailbox change events go to;
	// NATSPrefix prefixes every subject (tests on a shared server).
	NATSURLs   []string
	NATSPrefix string

	// TokenKeyFile holds the HMAC key ring that signs and verifies tokens
	// (see LoadKeyring for the format).
	TokenKeyFile string
	// SecretsKeyFile holds the AES-256 key (base64) that encrypts DKIM
	// private keys at rest; with DevGenerateSecrets it defaults to
	// <data-dir>/secrets-key, created when missing. Without one, DKIM keys
	// are unavailable.
	SecretsKeyFile string
	// DataDir receives generated secrets in development.
	DataDir string
	// DevGenerateSecrets creates a missing key ring and writes an operator
	// token and the service tokens into DataDir (mode 0600).
	DevGenerateSecrets bool
	// OperatorTokenFile is where the generated operator token is written.
	OperatorTokenFile string

	MaxMessageSize   int
	GCGrace          time.Duration
	GCInterval       time.Duration
	IndexInterval    time.Duration
	ExpungeRetention time.Duration
}

// RegisterFlags declares every setting with its default.
func (c *Config) RegisterFlags(f *config.FlagSet) {
	c.Log.RegisterFlags(f)
	f.String(&c.MetricsListen, "metrics-listen", "127.0.0.1:9105", "address of the HTTP server for /metrics, /healthz and /readyz (host:port)")
	f.String(&c.GRPCListen, "grpc-listen", "127.0.0.1:7070", "address of the gRPC API and health service (host:port)")
	f.Duration(&c.ShutdownGrace, "shutdown-grace", lifecycle.DefaultGrace, "how long to let work in flight finish after SIGTERM before stopping it")
	f.String(&c.AddrFile, "addr-file", "", "file to write the bound listen addresses to, as JSON (for port 0)")

	f.String(&c.PostgresURL, "postgres-url", "", "PostgreSQL connection URL (required), e.g. postgres://petrel:secret@db:5432/petrel")

	f.String(&c.S3Endpoint, "s3-endpoint", "", "S3 endpoint host:port (without scheme)")
	f.String(&c.S3Bucket, "s3-bucket", "", "S3 bucket holding the raw messages")
	f.String(&c.S3AccessKey, "s3-access-key", "", "S3 access key")
	f.String(&c.S3SecretKey, "s3-secret-key", "", "S3 secret key")
	f.String(&c.S3Region, "s3-region", "", "S3 region (empty: discovered)")
	f.Bool(&c.S3TLS, "s3-tls", true, "use HTTPS to reach S3")
	f.Bool(&c.S3CreateBucket, "s3-create-bucket", false, "create the bucket if it does not exist (development)")
	f.String(&c.BlobDir, "blob-dir", "", "store raw messages in this directory instead of S3 (single node, development)")

	f.StringList(&c.NATSURLs, "nats-url", []string{"nats://127.0.0.1:4222"}, "NATS server URL for mailbox change events (repeat or comma-separate for a cluster)")
	f.String(&c.NATSPrefix, "nats-subject-prefix", "", "prefix of every NATS subject (letters, digits, '-', '_'; for shared test servers)")

	f.String(&c.TokenKeyFile, "token-key-file", "", "file with the HMAC keys that sign tokens, one \"<id> <base64 secret>\" per line, current first (default <data-dir>/token-keys with --dev-generate-secrets)")
	f.String(&c.SecretsKeyFile, "secrets-key-file", "", "file with the 32-byte AES-256 key, base64, that encrypts DKIM private keys at rest (default <data-dir>/secrets-key with --dev-generate-secrets; none: no DKIM keys)")
	f.String(&c.DataDir, "data-dir", "", "directory for generated secrets (--dev-generate-secrets)")
	f.Bool(&c.DevGenerateSecrets, "dev-generate-secrets", false, "development: create a missing token key file and write operator and service tokens (0600) into --data-dir")
	f.String(&c.OperatorTokenFile, "operator-token-file", "", "where --dev-generate-secrets writes the operator token (default <data-dir>/operator.token)")

	f.Int(&c.MaxMessageSize, "max-message-size", server.DefaultMaxMessageSize, "largest message APPEND accepts, in bytes")
	f.Duration(&c.GCGrace, "gc-grace", gc.DefaultGrace, "how long an unreferenced message object is kept before it is deleted (sessions may still read an expunged message)")
	f.Duration(&c.GCInterval, "gc-interval", gc.DefaultInterval, "how often the collector runs")
	f.Duration(&c.IndexInterval, "search-index-interval", gc.DefaultIndexInterval, "how often new SEARCH index entries are merged into the index in the background")
	f.Duration(&c.ExpungeRetention, "expunge-retention", gc.DefaultRetention, "how long expunged UIDs are remembered for QRESYNC VANISHED")
}

// Validate reports every problem in c at once.
func (c Config) Validate() error {
	var v config.Validator
	v.Join(c.Log.Validate())
	v.ListenAddr("metrics-listen", c.MetricsListen)
	v.ListenAddr("grpc-listen", c.GRPCListen)
	v.Positive("shutdown-grace", c.ShutdownGrace)
	v.Check(c.PostgresURL != "", "postgres-url", "a PostgreSQL URL is required")
	switch {
	case c.BlobDir != "" && c.S3Bucket != "":
		v.Add("blob-dir", "set either --blob-dir or --s3-bucket, not both")
	case c.BlobDir == "":
		v.Check(c.S3Bucket != "", "s3-bucket", "a bucket is required (or --blob-dir)")
		v.Check(c.S3Endpoint != "", "s3-endpoint", "an endpoint is required with --s3-bucket")
		v.Check(c.S3AccessKey != "" && c.S3SecretKey != "", "s3-access-key", "--s3-access-key and --s3-secret-key are required with --s3-bucket")
	}
	v.Check(len(c.NATSURLs) > 0, "nats-url", "a NATS URL is required")
	if c.TokenKeyFile == "" && !(c.DevGenerateSecrets && c.DataDir != "") {
		v.Add("token-key-file", "a token key file is required (or --dev-generate-secrets with --data-dir)")
	}
	v.Check(!c.DevGenerateSecrets || c.DataDir != "", "data-dir", "--dev-generate-secrets needs --data-dir")
	v.Check(c.MaxMessageSize > 0, "max-message-size", "must be positive")
	v.Check(c.GCGrace >= 0, "gc-grace", "must not be negative")
	v.Positive("gc-interval", c.GCInterval)
	v.Positive("search-index-interval", c.IndexInterval)
	v.Positive("expunge-retention", c.ExpungeRetention)
	return v.Err()
}

// keyFile is the token key file in use.
func (c Config) keyFile() string {
	if c.TokenKeyFile != "" {
		return c.TokenKeyFile
	}
	return filepath.Join(c.DataDir, "token-keys")
}

func (c Config) operatorTokenFile() string {
	if c.OperatorTokenFile != "" {
		return c.OperatorTokenFile
	}
	return filepath.Join(c.DataDir, "operator.token")
}
