package store

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/petrel-mail/petrel/platform/blob"
	"github.com/petrel-mail/petrel/platform/blob/fsblob"
	"github.com/petrel-mail/petrel/platform/blob/s3blob"
	"github.com/petrel-mail/petrel/platform/grpcx"
	"github.com/petrel-mail/petrel/platform/natsx"
	"github.com/petrel-mail/petrel/platform/telemetry"
	"github.com/petrel-mail/petrel/services/store/internal/auth"
	"github.com/petrel-mail/petrel/services/store/internal/gc"
	"github.com/petrel-mail/petrel/services/store/internal/repo/pgrepo"
	"github.com/petrel-mail/petrel/services/store/internal/server"
)

// Service is the assembled store: the repository, blob storage, the NATS
// connection for events, the token verifier, the gRPC server with every
// store service registered, and the collector. main serves GRPC and GC
// with lifecycle.Run and calls Close at the end.
type Service struct {
	Repo   *pgrepo.Repo
	Blobs  blob.Store
	NATS   *nats.Conn
	Tokens *auth.Tokens
	GRPC   *grpcx.Server
	GC     *gc.Collector
	// Secrets seals DKIM private keys; nil without --secrets-key-file.
	Secrets *server.Sealer
}

// New connects to every dependency, applies the migrations and builds the
// servers. ready gets a check per dependency (/readyz, gRPC health).
func New(ctx context.Context, cfg Config, log *slog.Logger, reg prometheus.Registerer, ready *telemetry.Readiness) (_ *Service, err error) {
	s := &Service{}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	kr, err := loadOrGenerateKeyring(cfg, log)
	if err != nil {
		return nil, err
	}
	if s.Tokens, err = auth.NewTokens(auth.TokenOptions{Keyring: kr, Leeway: 30 * time.Second}); err != nil {
		return nil, err
	}
	if cfg.DevGenerateSecrets {
		if err := writeDevTokens(cfg, s.Tokens, log); err != nil {
			return nil, err
		}
	}

	if s.Secrets, err = loadOrGenerateSecrets(cfg, log); err != nil {
		return nil, err
	}
	if s.Repo, err = pgrepo.Open(ctx, cfg.PostgresURL, pgrepo.Options{}); err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	pool := s.Repo.Pool()
	ready.Add("postgres", func(ctx context.Context) error { return pool.Ping(ctx) })

	if s.Blobs, err = openBlobs(ctx, cfg); err != nil {
		return nil, err
	}
	if c, ok := s.Blobs.(blob.Checker); ok {
		ready.Add("blob", c.Check)
	}

	if s.NATS, _, err = natsx.Connect(ctx, natsx.Config{URLs: cfg.NATSURLs, Name: "petrel-store", Logger: log}); err != nil {
		return nil, err
	}
	nc := s.NATS
	ready.Add("nats", func(context.Context) error { return natsx.Ready(nc) })
	events, err := server.NewEvents(s.NATS, natsx.Options{Prefix: cfg.NATSPrefix}, log, reg)
	if err != nil {
		return nil, err
	}

	deps := server.Deps{Repo: s.Repo, Blobs: s.Blobs, Events: events, Logger: log, MaxMessageSize: int64(cfg.MaxMessageSize)}
	mailboxes, err := server.NewMailboxServer(deps)
	if err != nil {
		return nil, err
	}
	messages, err := server.NewMessageServer(deps)
	if err != nil {
		return nil, err
	}
	interceptors, err := auth.NewInterceptors(auth.InterceptorOptions{Tokens: s.Tokens, Logger: log})
	if err != nil {
		return nil, err
	}
	if s.GRPC, err = grpcx.NewServer(grpcx.ServerOptions{
		Logger:     log,
		Registry:   reg,
		Readiness:  ready,
		Reflection: true,
		Extra:      interceptors.ServerOptions(),
	}); err != nil {
		return nil, err
	}
	server.Register(s.GRPC, mailboxes, messages)
	if err := s.registerDirectory(log, reg); err != nil {
		return nil, err
	}

	if s.GC, err = gc.New(gc.Options{
		Repo: s.Repo, Blobs: s.Blobs, Grace: cfg.GCGrace, Retention: cfg.ExpungeRetention,
		Interval: cfg.GCInterval, IndexInterval: cfg.IndexInterval, Logger: log.With("component", "gc"), Registry: reg,
	}); err != nil {
		return nil, err
	}
	return s, nil
}

// registerDirectory builds authentication (argon2id, throttling, session
// tokens) over the repository and registers DirectoryService and
// AdminService.
func (s *Service) registerDirectory(log *slog.Logger, reg prometheus.Registerer) error {
	hasher, err := auth.NewHasher(auth.Params{})
	if err != nil {
		return err
	}
	metrics, err := auth.NewMetrics(reg)
	if err != nil {
		return err
	}
	throttler, err := auth.NewThrottler(auth.ThrottleOptions{}, metrics)
	if err != nil {
		return err
	}
	authn, err := auth.NewAuthenticator(auth.AuthenticatorOptions{
		Source:    server.NewCredentialSource(s.Repo),
		Hasher:    hasher,
		Tokens:    s.Tokens,
		Throttler: throttler,
		Metrics:   metrics,
		Logger:    log.With("component", "auth"),
	})
	if err != nil {
		return err
	}
	dir, err := server.NewDirectoryServer(server.DirectoryOptions{Repo: s.Repo, Authenticator: authn, Logger: log})
	if err != nil {
		return err
	}
	adm, err := server.NewAdminServer(server.AdminOptions{Repo: s.Repo, Hasher: hasher, Logger: log, Secrets: s.Secrets})
	if err != nil {
		return err
	}
	storev1.RegisterDirectoryServiceServer(s.GRPC, dir)
	storev1.RegisterAdminServiceServer(s.GRPC, adm)
	return registerDKIM(s.GRPC, s.Repo, s.Secrets, log)
}

// Close releases the connections.
func (s *Service) Close() {
	if s.NATS != nil {
		s.NATS.Close()
	}
	if s.Repo != nil {
		s.Repo.Close()
	}
}

func openBlobs(ctx context.Context, cfg Config) (blob.Store, error) {
	if cfg.BlobDir != "" {
		st, err := fsblob.New(cfg.BlobDir)
		if err != nil {
			return nil, fmt.Errorf("blob directory: %w", err)
		}
		return st, nil
	}
	if cfg.S3CreateBucket {
		if err := createBucket(ctx, cfg); err != nil {
			return nil, err
		}
	}
	st, err := s3blob.New(s3blob.Config{
		Endpoint: cfg.S3Endpoint, Bucket: cfg.S3Bucket, AccessKey: cfg.S3AccessKey, SecretKey: cfg.S3SecretKey,
		Region: cfg.S3Region, UseTLS: cfg.S3TLS,
	})
	if err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	return st, nil
}

// createBucket makes the bucket if it is missing (development setups that
// start from an empty MinIO).
func createBucket(ctx context.Context, cfg Config) error {
	cl, err := minio.New(cfg.S3Endpoint, &minio.Options{
		Creds: credentials.NewStaticV4(cfg.S3AccessKey, cfg.S3SecretKey, ""), Secure: cfg.S3TLS, Region: cfg.S3Region,
	})
	if err != nil {
		return fmt.Errorf("s3: client: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ok, err := cl.BucketExists(ctx, cfg.S3Bucket)
	if err != nil {
		return fmt.Errorf("s3: check bucket %s: %w", cfg.S3Bucket, err)
	}
	if ok {
		return nil
	}
	if err := cl.MakeBucket(ctx, cfg.S3Bucket, minio.MakeBucketOptions{Region: cfg.S3Region}); err != nil {
		return fmt.Errorf("s3: create bucket %s: %w", cfg.S3Bucket, err)
	}
	return nil
}

// LoadKeyring reads a token key file: one key per line, "<id> <secret>"
// with the secret in standard base64 (at least 32 bytes once decoded);
// the first key signs new tokens, the others only verify (rotation: add
// the new key on top, remove the old one after the session lifetime).
// Blank lines and lines starting with '#' are ignored.
func LoadKeyring(path string) (*auth.Keyring, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("token keys: %w", err)
	}
	var keys []auth.Key
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, secret, ok := strings.Cut(line, " ")
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(secret))
		if !ok || err != nil {
			return nil, fmt.Errorf("token keys: %s line %d: want \"<id> <base64 secret>\"", path, n)
		}
		keys = append(keys, auth.Key{ID: id, Secret: raw})
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("token keys: %s has no key", path)
	}
	kr, err := auth.NewKeyring(keys[0], keys[1:]...)
	if err != nil {
		return nil, fmt.Errorf("token keys: %s: %w", path, err)
	}
	return kr, nil
}

func loadOrGenerateKeyring(cfg Config, log *slog.Logger) (*auth.Keyring, error) {
	path := cfg.keyFile()
	if cfg.DevGenerateSecrets {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			key, err := auth.GenerateKey("dev-" + time.Now().UTC().Format("20060102"))
			if err != nil {
				return nil, err
			}
			line := key.ID + " " + base64.StdEncoding.EncodeToString(key.Secret) + "\n"
			if err := writeSecret(path, []byte(line), false); err != nil {
				return nil, err
			}
			log.Info("generated a token key file", "path", path)
		}
	}
	return LoadKeyring(path)
}

// DevTokenTTL is the lifetime of the tokens --dev-generate-secrets writes;
// they are rewritten at every start.
const DevTokenTTL = 30 * 24 * time.Hour

// DevTokenFiles are the service token files --dev-generate-secrets writes
// into the data directory, by service name.
var DevTokenFiles = map[string]string{
	auth.ServiceSMTP:     "smtp.token",
	auth.ServiceDelivery: "delivery.token",
	auth.ServiceIMAP:     "imap.token",
	auth.ServicePOP3:     "pop3.token",
}

func writeDevTokens(cfg Config, tokens *auth.Tokens, log *slog.Logger) error {
	issue := func(p auth.Principal, path string) error {
		tok, _, err := tokens.Issue(p, DevTokenTTL)
		if err != nil {
			return err
		}
		return writeSecret(path, []byte(tok+"\n"), true)
	}
	if err := issue(auth.Principal{Kind: auth.KindOperator}, cfg.operatorTokenFile()); err != nil {
		return err
	}
	for svc, file := range DevTokenFiles {
		if err := issue(auth.Principal{Kind: auth.KindService, Service: svc}, filepath.Join(cfg.DataDir, file)); err != nil {
			return err
		}
	}
	log.Info("wrote development tokens", "dir", cfg.DataDir, "operator", cfg.operatorTokenFile())
	return nil
}

// writeSecret writes a file readable only by its owner, whole (written
// beside it, then renamed), creating the directory. Without overwrite an
// existing file is left alone and that is an error.
func writeSecret(path string, data []byte, overwrite bool) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if !overwrite {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		if _, err := f.Write(data); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", path, err)
		}
		return f.Close()
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
