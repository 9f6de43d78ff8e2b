package pgrepo

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/petrel-mail/petrel/services/store/internal/repo"
)

// Keywords lists the account's keyword names. The tenant is checked through
// the accounts row so that a scope with a foreign account reads nothing.
func (r *Repo) Keywords(ctx context.Context, s repo.Scope) ([]string, error) {
	rows, err := r.pool.Query(ctx, `SELECT k.name FROM keywords k
		JOIN accounts a ON a.id = k.account_id AND a.tenant_id = $1
		WHERE k.account_id = $2 ORDER BY lower(k.name)`, s.TenantID, s.AccountID)
	if err != nil {
		return nil, fmt.Errorf("pgrepo: list keywords: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("pgrepo: list keywords: %w", err)
	}
	return names, nil
}
