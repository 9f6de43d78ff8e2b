package pgrepo

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/petrel-mail/petrel/services/store/internal/repo"
)

const dkimCols = `d.id, d.tenant_id, d.name, k.selector, k.algorithm, k.public_key, k.sealed_key, k.created_at`

func scanDKIMKey(row pgx.Row) (repo.DKIMKey, error) {
	var k repo.DKIMKey
	err := row.Scan(&k.Domain.ID, &k.Domain.TenantID, &k.Domain.Name, &k.Selector, &k.Algorithm, &k.PublicKey, &k.SealedPrivateKey, &k.CreatedAt)
	return k, err
}

// CreateDKIMKey stores a key of one of the tenant's domains.
func (r *Repo) CreateDKIMKey(ctx context.Context, tenantID int64, k repo.DKIMKey) (repo.DKIMKey, error) {
	sel := strings.ToLower(k.Selector)
	out, err := scanDKIMKey(r.pool.QueryRow(ctx, `WITH k AS (
			INSERT INTO dkim_keys (tenant_id, domain_id, selector, algorithm, public_key, sealed_key)
			SELECT d.tenant_id, d.id, $3, $4, $5, $6 FROM domains d WHERE d.tenant_id = $1 AND d.id = $2
			RETURNING *)
		SELECT `+dkimCols+` FROM k JOIN domains d ON d.id = k.domain_id`,
		tenantID, k.Domain.ID, sel, k.Algorithm, k.PublicKey, k.SealedPrivateKey))
	switch {
	case isUniqueViolation(err):
		return repo.DKIMKey{}, fmt.Errorf("%w: DKIM selector %q", repo.ErrExists, sel)
	case isCheckViolation(err):
		return repo.DKIMKey{}, fmt.Errorf("%w: DKIM selector %q or algorithm %q", repo.ErrInvalidName, sel, k.Algorithm)
	}
	return out, rowErr(err, "domain %d of tenant %d", k.Domain.ID, tenantID)
}

// ListDKIMKeys lists keys newest first.
func (r *Repo) ListDKIMKeys(ctx context.Context, tenantID, domainID int64) ([]repo.DKIMKey, error) {
	rows, err := r.pool.Query(ctx, `SELECT `+dkimCols+` FROM dkim_keys k JOIN domains d ON d.id = k.domain_id
		WHERE ($1::bigint = 0 OR k.tenant_id = $1) AND ($2::bigint = 0 OR k.domain_id = $2)
		ORDER BY d.name, k.created_at DESC, k.selector`, tenantID, domainID)
	if err != nil {
		return nil, fmt.Errorf("pgrepo: list DKIM keys: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (repo.DKIMKey, error) { return scanDKIMKey(row) })
	if err != nil {
		return nil, fmt.Errorf("pgrepo: list DKIM keys: %w", err)
	}
	return out, nil
}

// DeleteDKIMKey deletes one key.
func (r *Repo) DeleteDKIMKey(ctx context.Context, tenantID, domainID int64, selector string) error {
	tag, err := r.pool.Exec(ctx, `DELETE FROM dkim_keys WHERE tenant_id = $1 AND domain_id = $2 AND selector = $3`,
		tenantID, domainID, strings.ToLower(selector))
	if err != nil {
		return fmt.Errorf("pgrepo: delete DKIM key: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return notFound("DKIM key %q of domain %d", selector, domainID)
	}
	return nil
}

// SigningDKIMKey is the newest key of a domain.
func (r *Repo) SigningDKIMKey(ctx context.Context, domain string) (repo.DKIMKey, error) {
	n, err := repo.NormalizeDomain(domain)
	if err != nil {
		return repo.DKIMKey{}, err
	}
	k, err := scanDKIMKey(r.pool.QueryRow(ctx, `SELECT `+dkimCols+` FROM dkim_keys k JOIN domains d ON d.id = k.domain_id
		WHERE d.name = $1 ORDER BY k.created_at DESC, k.selector LIMIT 1`, n))
	return k, rowErr(err, "DKIM key of %q", n)
}

func isCheckViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23514"
}
