package store

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"

	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"

	"github.com/petrel-mail/petrel/platform/grpcx"
	"github.com/petrel-mail/petrel/services/store/internal/repo"
	"github.com/petrel-mail/petrel/services/store/internal/server"
)

// secretsKeyFile is where the secrets key is read from: the flag, or in
// development <data-dir>/secrets-key; "" when there is none.
func (c Config) secretsKeyFile() string {
	if c.SecretsKeyFile != "" {
		return c.SecretsKeyFile
	}
	if c.DevGenerateSecrets && c.DataDir != "" {
		return filepath.Join(c.DataDir, "secrets-key")
	}
	return ""
}

// loadOrGenerateSecrets opens the key that encrypts secrets at rest (DKIM
// private keys), creating it in development like the token keys. Without
// one the store runs, and the DKIM calls answer FAILED_PRECONDITION.
func loadOrGenerateSecrets(cfg Config, log *slog.Logger) (*server.Sealer, error) {
	path := cfg.secretsKeyFile()
	if path == "" {
		log.Warn("no --secrets-key-file: DKIM keys cannot be generated or used")
		return nil, nil
	}
	if cfg.DevGenerateSecrets {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			key, err := server.GenerateSecretsKey()
			if err != nil {
				return nil, err
			}
			if err := writeSecret(path, key, false); err != nil {
				return nil, err
			}
			log.Info("generated a secrets key file", "path", path)
		}
	}
	return server.LoadSealer(path)
}

// registerDKIM registers DKIMService (the delivery service's key look-up).
func registerDKIM(srv *grpcx.Server, r repo.Repository, secrets *server.Sealer, log *slog.Logger) error {
	dk, err := server.NewDKIMServer(server.DKIMOptions{Repo: r, Secrets: secrets, Logger: log})
	if err != nil {
		return err
	}
	storev1.RegisterDKIMServiceServer(srv, dk)
	return nil
}
