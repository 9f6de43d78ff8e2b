package pgrepo

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/petrel-mail/petrel/services/store/internal/repo"
)

// CreateTenant creates a tenant.
func (r *Repo) CreateTenant(ctx context.Context, name string) (repo.Tenant, error) {
	t := repo.Tenant{Name: name}
	err := r.pool.QueryRow(ctx, "INSERT INTO tenants (name) VALUES ($1) RETURNING id", name).Scan(&t.ID)
	if isUniqueViolation(err) {
		return t, fmt.Errorf("%w: tenant %q", repo.ErrExists, name)
	}
	if err != nil {
		return t, fmt.Errorf("pgrepo: create tenant: %w", err)
	}
	return t, nil
}

// CreateDomain creates a domain of a tenant.
func (r *Repo) CreateDomain(ctx context.Context, tenantID int64, name string) (repo.Domain, error) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	d := repo.Domain{TenantID: tenantID, Name: name}
	if name == "" || strings.ContainsAny(name, "@ \t") {
		return d, fmt.Errorf("%w: domain %q", repo.ErrInvalidName, name)
	}
	err := r.pool.QueryRow(ctx, `INSERT INTO domains (tenant_id, name)
		SELECT id, $2 FROM tenants WHERE id = $1
		  AND (max_domains IS NULL OR max_domains > (SELECT count(*) FROM domains WHERE tenant_id = $1))
		RETURNING id`, tenantID, name).Scan(&d.ID)
	switch {
	case isUniqueViolation(err):
		return d, fmt.Errorf("%w: domain %q", repo.ErrExists, name)
	case errors.Is(err, pgx.ErrNoRows):
		return d, notFound("tenant %d (or its domain limit is reached)", tenantID)
	case err != nil:
		return d, fmt.Errorf("pgrepo: create domain: %w", err)
	}
	return d, nil
}

// CreateAccount creates an account with its subscribed INBOX.
func (r *Repo) CreateAccount(ctx context.Context, tenantID, domainID int64, localPart, passwordHash string) (repo.Account, error) {
	localPart = strings.ToLower(localPart)
	a := repo.Account{TenantID: tenantID, DomainID: domainID, LocalPart: localPart, PasswordHash: passwordHash}
	if localPart == "" || strings.ContainsAny(localPart, "@ \t\r\n") {
		return a, fmt.Errorf("%w: local part %q", repo.ErrInvalidName, localPart)
	}
	err := r.inTx(ctx, func(tx pgx.Tx) error {
		var domain string
		err := tx.QueryRow(ctx, `SELECT d.name FROM domains d JOIN tenants t ON t.id = d.tenant_id
			WHERE d.tenant_id = $1 AND d.id = $2
			  AND (t.max_accounts IS NULL OR t.max_accounts > (SELECT count(*) FROM accounts WHERE tenant_id = $1))
			FOR KEY SHARE OF d`, tenantID, domainID).Scan(&domain)
		if errors.Is(err, pgx.ErrNoRows) {
			return notFound("domain %d of tenant %d (or the account limit is reached)", domainID, tenantID)
		}
		if err != nil {
			return fmt.Errorf("pgrepo: create account: %w", err)
		}
		a.Address = localPart + "@" + domain
		err = tx.QueryRow(ctx, `INSERT INTO accounts (tenant_id, domain_id, local_part, password_hash, next_uidvalidity)
			VALUES ($1, $2, $3, $4, 2) RETURNING id`, tenantID, domainID, localPart, passwordHash).Scan(&a.ID)
		if isUniqueViolation(err) {
			return fmt.Errorf("%w: account %q", repo.ErrExists, a.Address)
		}
		if err != nil {
			return fmt.Errorf("pgrepo: create account: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO mailboxes (account_id, tenant_id, name, uidvalidity) VALUES ($1, $2, 'INBOX', 1)`,
			a.ID, tenantID); err != nil {
			return fmt.Errorf("pgrepo: create INBOX: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO subscriptions (account_id, name) VALUES ($1, 'INBOX')`, a.ID); err != nil {
			return fmt.Errorf("pgrepo: subscribe INBOX: %w", err)
		}
		return nil
	})
	return a, err
}

// CreateAlias maps an address (or the domain's catch-all) to targets.
func (r *Repo) CreateAlias(ctx context.Context, tenantID, domainID int64, localPart string, targets []string) error {
	if len(targets) == 0 {
		return fmt.Errorf("%w: alias without targets", repo.ErrInvalidName)
	}
	lower := make([]string, len(targets))
	for i, t := range targets {
		lower[i] = strings.ToLower(t)
	}
	tag, err := r.pool.Exec(ctx, `INSERT INTO aliases (tenant_id, domain_id, local_part, targets)
		SELECT tenant_id, id, $3, $4 FROM domains WHERE tenant_id = $1 AND id = $2`,
		tenantID, domainID, strings.ToLower(localPart), lower)
	if isUniqueViolation(err) {
		return fmt.Errorf("%w: alias %q", repo.ErrExists, localPart)
	}
	if err != nil {
		return fmt.Errorf("pgrepo: create alias: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return notFound("domain %d of tenant %d", domainID, tenantID)
	}
	return nil
}

// LookupAddress resolves an address to accounts: the account itself, else
// an alias's targets (one level, local accounts only), else the catch-all.
func (r *Repo) LookupAddress(ctx context.Context, address string) ([]repo.Scope, error) {
	local, domain, ok := strings.Cut(strings.ToLower(address), "@")
	if !ok || local == "" || domain == "" {
		return nil, fmt.Errorf("%w: address %q", repo.ErrInvalidName, address)
	}
	// An account wins over an alias, an alias over the catch-all; alias
	// targets resolve to accounts in the same tenant only.
	rows, err := r.pool.Query(ctx, `
		WITH d AS (SELECT id, tenant_id FROM domains WHERE name = $2),
		acct AS (SELECT a.tenant_id, a.id FROM accounts a JOIN d ON a.domain_id = d.id
		         WHERE a.local_part = $1 AND NOT a.disabled),
		al AS (SELECT al.tenant_id, al.targets FROM aliases al JOIN d ON al.domain_id = d.id
		       WHERE al.local_part = $1 OR al.local_part = ''
		       ORDER BY al.local_part DESC LIMIT 1)
		SELECT tenant_id, id FROM acct
		UNION ALL
		SELECT a.tenant_id, a.id FROM al, unnest(al.targets) t
		  JOIN domains td ON td.name = split_part(t, '@', 2)
		  JOIN accounts a ON a.domain_id = td.id AND a.local_part = split_part(t, '@', 1)
		WHERE NOT EXISTS (SELECT 1 FROM acct) AND a.tenant_id = al.tenant_id AND NOT a.disabled`, local, domain)
	if err != nil {
		return nil, fmt.Errorf("pgrepo: lookup address: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (repo.Scope, error) {
		var s repo.Scope
		err := row.Scan(&s.TenantID, &s.AccountID)
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("pgrepo: lookup address: %w", err)
	}
	if len(out) == 0 {
		return nil, notFound("address %q", address)
	}
	return out, nil
}

func nullIfZero(v int64) *int64 {
	if v == 0 {
		return nil
	}
	return &v
}

// SetQuota sets the account's limits (0: unlimited). Lowering a limit
// below the usage is allowed: further additions fail until usage drops.
func (r *Repo) SetQuota(ctx context.Context, s repo.Scope, limitBytes, limitMessages int64) error {
	tag, err := r.pool.Exec(ctx, `UPDATE accounts SET quota_bytes = $3, quota_messages = $4
		WHERE tenant_id = $1 AND id = $2`, s.TenantID, s.AccountID, nullIfZero(limitBytes), nullIfZero(limitMessages))
	if err != nil {
		return fmt.Errorf("pgrepo: set quota: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return notFound("account %d", s.AccountID)
	}
	return nil
}

// GetQuota reads the account's limits and usage.
func (r *Repo) GetQuota(ctx context.Context, s repo.Scope) (repo.Quota, error) {
	var q repo.Quota
	err := r.pool.QueryRow(ctx, `SELECT coalesce(quota_bytes, 0), coalesce(quota_messages, 0), used_bytes, used_messages
		FROM accounts WHERE tenant_id = $1 AND id = $2`, s.TenantID, s.AccountID).
		Scan(&q.LimitBytes, &q.LimitMessages, &q.UsedBytes, &q.UsedMessages)
	if errors.Is(err, pgx.ErrNoRows) {
		return q, notFound("account %d", s.AccountID)
	}
	if err != nil {
		return q, fmt.Errorf("pgrepo: get quota: %w", err)
	}
	return q, nil
}

// RecomputeUsage recounts usage and mailbox counters from the message rows
// under the account lock (so no writer changes them meanwhile) and fixes
// any drift.
func (r *Repo) RecomputeUsage(ctx context.Context, s repo.Scope) (repo.UsageReport, error) {
	var rep repo.UsageReport
	err := r.inTx(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT coalesce(quota_bytes, 0), coalesce(quota_messages, 0), used_bytes, used_messages
			FROM accounts WHERE tenant_id = $1 AND id = $2 FOR NO KEY UPDATE`, s.TenantID, s.AccountID).
			Scan(&rep.Before.LimitBytes, &rep.Before.LimitMessages, &rep.Before.UsedBytes, &rep.Before.UsedMessages)
		if errors.Is(err, pgx.ErrNoRows) {
			return notFound("account %d", s.AccountID)
		}
		if err != nil {
			return fmt.Errorf("pgrepo: recompute usage: %w", err)
		}
		// Lock every mailbox in id order, then recount.
		if _, err := tx.Exec(ctx, `SELECT id FROM mailboxes WHERE account_id = $1 ORDER BY id FOR NO KEY UPDATE`, s.AccountID); err != nil {
			return fmt.Errorf("pgrepo: recompute usage: %w", err)
		}
		tag, err := tx.Exec(ctx, `UPDATE mailboxes b SET messages = c.n, unseen = c.unseen, deleted = c.deleted, size = c.size
			FROM (SELECT b2.id,
			        count(m.uid) AS n,
			        count(m.uid) FILTER (WHERE m.flags & 1 = 0) AS unseen,
			        count(m.uid) FILTER (WHERE m.flags & 8 <> 0) AS deleted,
			        coalesce(sum(m.size), 0) AS size
			      FROM mailboxes b2 LEFT JOIN messages m ON m.account_id = b2.account_id AND m.mailbox_id = b2.id
			      WHERE b2.account_id = $1 GROUP BY b2.id) c
			WHERE b.account_id = $1 AND b.id = c.id
			  AND (b.messages, b.unseen, b.deleted, b.size) IS DISTINCT FROM (c.n, c.unseen, c.deleted, c.size)`, s.AccountID)
		if err != nil {
			return fmt.Errorf("pgrepo: recompute mailbox counters: %w", err)
		}
		rep.MailboxesFixed = int(tag.RowsAffected())
		rep.After = rep.Before
		return tx.QueryRow(ctx, `UPDATE accounts a SET used_bytes = c.bytes, used_messages = c.n
			FROM (SELECT coalesce(sum(size), 0) AS bytes, count(*) AS n FROM messages WHERE account_id = $1) c
			WHERE a.id = $1 RETURNING a.used_bytes, a.used_messages`, s.AccountID).
			Scan(&rep.After.UsedBytes, &rep.After.UsedMessages)
	})
	return rep, err
}
