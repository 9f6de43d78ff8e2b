package pgrepo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/petrel-mail/petrel/services/store/internal/repo"
)

var _ repo.Admin = (*Repo)(nil)

const tenantCols = `t.id, t.name, coalesce(t.max_accounts, 0), coalesce(t.max_domains, 0),
	coalesce(t.max_account_quota, 0), coalesce(t.quota_bytes, 0), t.created_at`

func scanTenant(row pgx.Row) (repo.TenantInfo, error) {
	var t repo.TenantInfo
	err := row.Scan(&t.ID, &t.Name, &t.MaxAccounts, &t.MaxDomains, &t.MaxAccountQuota, &t.QuotaBytes, &t.CreatedAt)
	return t, err
}

// CreateTenantWithLimits creates a tenant with its limits in one statement.
func (r *Repo) CreateTenantWithLimits(ctx context.Context, name string, limits repo.TenantLimits) (repo.TenantInfo, error) {
	if name == "" {
		return repo.TenantInfo{}, fmt.Errorf("%w: tenant name is empty", repo.ErrInvalidName)
	}
	if limits.QuotaBytes < 0 || limits.MaxAccounts < 0 {
		return repo.TenantInfo{}, fmt.Errorf("%w: negative tenant limit", repo.ErrInvalidName)
	}
	t, err := scanTenant(r.pool.QueryRow(ctx, `INSERT INTO tenants AS t (name, quota_bytes, max_accounts)
		VALUES ($1, $2, $3) RETURNING `+tenantCols, name, nullIfZero(limits.QuotaBytes), nullIfZero(limits.MaxAccounts)))
	if isUniqueViolation(err) {
		return t, fmt.Errorf("%w: tenant %q", repo.ErrExists, name)
	}
	if err != nil {
		return t, fmt.Errorf("pgrepo: create tenant: %w", err)
	}
	return t, nil
}

// ListTenants lists every tenant by name.
func (r *Repo) ListTenants(ctx context.Context) ([]repo.TenantInfo, error) {
	rows, err := r.pool.Query(ctx, `SELECT `+tenantCols+` FROM tenants t ORDER BY t.name`)
	if err != nil {
		return nil, fmt.Errorf("pgrepo: list tenants: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (repo.TenantInfo, error) { return scanTenant(row) })
	if err != nil {
		return nil, fmt.Errorf("pgrepo: list tenants: %w", err)
	}
	return out, nil
}

// TenantByName finds a tenant by name.
func (r *Repo) TenantByName(ctx context.Context, name string) (repo.TenantInfo, error) {
	t, err := scanTenant(r.pool.QueryRow(ctx, `SELECT `+tenantCols+` FROM tenants t WHERE t.name = $1`, name))
	return t, rowErr(err, "tenant %q", name)
}

// TenantByID finds a tenant by id.
func (r *Repo) TenantByID(ctx context.Context, id int64) (repo.TenantInfo, error) {
	t, err := scanTenant(r.pool.QueryRow(ctx, `SELECT `+tenantCols+` FROM tenants t WHERE t.id = $1`, id))
	return t, rowErr(err, "tenant %d", id)
}

// rowErr turns pgx.ErrNoRows into repo.ErrNotFound and wraps anything
// else.
func rowErr(err error, format string, args ...any) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, pgx.ErrNoRows):
		return notFound(format, args...)
	default:
		return fmt.Errorf("pgrepo: read "+format+": %w", append(args, err)...)
	}
}

// DeleteTenant deletes a tenant that has no domains and no objects left.
// The row lock conflicts with the key-share lock a concurrent CreateDomain
// takes through its foreign key, so no domain can appear after the check.
func (r *Repo) DeleteTenant(ctx context.Context, id int64) error {
	return r.inTx(ctx, func(tx pgx.Tx) error {
		var domains, objects bool
		err := tx.QueryRow(ctx, `SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE`, id).Scan(new(int))
		if err := rowErr(err, "tenant %d", id); err != nil {
			return err
		}
		err = tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM domains WHERE tenant_id = $1),
			EXISTS (SELECT 1 FROM objects WHERE tenant_id = $1)`, id).Scan(&domains, &objects)
		switch {
		case err != nil:
			return fmt.Errorf("pgrepo: delete tenant: %w", err)
		case domains:
			return fmt.Errorf("%w: tenant %d still has domains", repo.ErrNotAllowed, id)
		case objects:
			return fmt.Errorf("%w: tenant %d has stored messages awaiting collection", repo.ErrNotAllowed, id)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM tenants WHERE id = $1`, id); err != nil {
			return fmt.Errorf("pgrepo: delete tenant: %w", err)
		}
		return nil
	})
}

const domainCols = `d.id, d.tenant_id, d.name, t.name, d.created_at`

func scanDomain(row pgx.Row) (repo.DomainInfo, error) {
	var d repo.DomainInfo
	err := row.Scan(&d.ID, &d.TenantID, &d.Name, &d.TenantName, &d.CreatedAt)
	return d, err
}

// ListDomains lists the domains of a tenant (0: all) by name.
func (r *Repo) ListDomains(ctx context.Context, tenantID int64) ([]repo.DomainInfo, error) {
	rows, err := r.pool.Query(ctx, `SELECT `+domainCols+` FROM domains d JOIN tenants t ON t.id = d.tenant_id
		WHERE $1::bigint = 0 OR d.tenant_id = $1 ORDER BY d.name`, tenantID)
	if err != nil {
		return nil, fmt.Errorf("pgrepo: list domains: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (repo.DomainInfo, error) { return scanDomain(row) })
	if err != nil {
		return nil, fmt.Errorf("pgrepo: list domains: %w", err)
	}
	return out, nil
}

// DomainByName finds a domain by name (case-insensitive).
func (r *Repo) DomainByName(ctx context.Context, name string) (repo.DomainInfo, error) {
	n, err := repo.NormalizeDomain(name)
	if err != nil {
		return repo.DomainInfo{}, err
	}
	d, err := scanDomain(r.pool.QueryRow(ctx, `SELECT `+domainCols+` FROM domains d JOIN tenants t ON t.id = d.tenant_id
		WHERE d.name = $1`, n))
	return d, rowErr(err, "domain %q", n)
}

// DeleteDomain deletes a domain without accounts, and its aliases. The row
// lock conflicts with the key-share lock of a concurrent CreateAccount.
func (r *Repo) DeleteDomain(ctx context.Context, tenantID, domainID int64) error {
	return r.inTx(ctx, func(tx pgx.Tx) error {
		var accounts bool
		err := tx.QueryRow(ctx, `SELECT 1 FROM domains WHERE tenant_id = $1 AND id = $2 FOR UPDATE`, tenantID, domainID).Scan(new(int))
		if err := rowErr(err, "domain %d of tenant %d", domainID, tenantID); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM accounts WHERE domain_id = $1)`, domainID).Scan(&accounts); err != nil {
			return fmt.Errorf("pgrepo: delete domain: %w", err)
		}
		if accounts {
			return fmt.Errorf("%w: domain %d still has accounts", repo.ErrNotAllowed, domainID)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM aliases WHERE domain_id = $1`, domainID); err != nil {
			return fmt.Errorf("pgrepo: delete domain aliases: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM domains WHERE id = $1`, domainID); err != nil {
			return fmt.Errorf("pgrepo: delete domain: %w", err)
		}
		return nil
	})
}

const accountCols = `a.id, a.tenant_id, a.domain_id, a.local_part, a.local_part || '@' || d.name, a.password_hash,
	a.disabled, t.name, coalesce(a.quota_bytes, 0), coalesce(a.quota_messages, 0), a.used_bytes, a.used_messages, a.created_at`

const accountFrom = ` accounts a JOIN domains d ON d.id = a.domain_id JOIN tenants t ON t.id = a.tenant_id `

func scanAccount(row pgx.Row) (repo.AccountInfo, error) {
	var a repo.AccountInfo
	err := row.Scan(&a.ID, &a.TenantID, &a.DomainID, &a.LocalPart, &a.Address, &a.PasswordHash, &a.Disabled, &a.TenantName,
		&a.Quota.LimitBytes, &a.Quota.LimitMessages, &a.Quota.UsedBytes, &a.Quota.UsedMessages, &a.CreatedAt)
	return a, err
}

// AccountByAddress finds an account by its address (case-insensitive).
func (r *Repo) AccountByAddress(ctx context.Context, address string) (repo.AccountInfo, error) {
	local, domain, err := repo.ParseAddress(address, false)
	if err != nil {
		return repo.AccountInfo{}, err
	}
	a, err := scanAccount(r.pool.QueryRow(ctx, `SELECT `+accountCols+` FROM`+accountFrom+`
		WHERE d.name = $1 AND a.local_part = $2`, domain, local))
	return a, rowErr(err, "account %q", address)
}

// ListAccounts lists accounts of a domain, a tenant, or all, by address.
func (r *Repo) ListAccounts(ctx context.Context, tenantID, domainID int64) ([]repo.AccountInfo, error) {
	rows, err := r.pool.Query(ctx, `SELECT `+accountCols+` FROM`+accountFrom+`
		WHERE ($1::bigint = 0 OR a.tenant_id = $1) AND ($2::bigint = 0 OR a.domain_id = $2)
		ORDER BY d.name, a.local_part`, tenantID, domainID)
	if err != nil {
		return nil, fmt.Errorf("pgrepo: list accounts: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (repo.AccountInfo, error) { return scanAccount(row) })
	if err != nil {
		return nil, fmt.Errorf("pgrepo: list accounts: %w", err)
	}
	return out, nil
}

// UpdateAccount changes the set fields of u in one statement.
func (r *Repo) UpdateAccount(ctx context.Context, s repo.Scope, u repo.AccountUpdate) (repo.AccountInfo, error) {
	for _, q := range []*int64{u.QuotaBytes, u.QuotaMessages} {
		if q != nil && *q < 0 {
			return repo.AccountInfo{}, fmt.Errorf("%w: negative quota", repo.ErrInvalidName)
		}
	}
	// A quota given as 0 becomes NULL (unlimited); an absent one stays.
	a, err := scanAccount(r.pool.QueryRow(ctx, `WITH a AS (
			UPDATE accounts SET
				password_hash = coalesce($3, password_hash),
				disabled = coalesce($4, disabled),
				quota_bytes = CASE WHEN $5::bigint IS NULL THEN quota_bytes ELSE nullif($5, 0) END,
				quota_messages = CASE WHEN $6::bigint IS NULL THEN quota_messages ELSE nullif($6, 0) END
			WHERE tenant_id = $1 AND id = $2 RETURNING *)
		SELECT `+accountCols+` FROM a JOIN domains d ON d.id = a.domain_id JOIN tenants t ON t.id = a.tenant_id`,
		s.TenantID, s.AccountID, u.PasswordHash, u.Disabled, u.QuotaBytes, u.QuotaMessages))
	return a, rowErr(err, "account %d", s.AccountID)
}

// DeleteAccount removes an account and everything it owns in one
// transaction, in lock order: the account row, its mailboxes (by id), the
// message rows, then the objects it referred to (by id), whose reference
// counts drop by the number of its messages that used them.
func (r *Repo) DeleteAccount(ctx context.Context, s repo.Scope) error {
	return r.inTx(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT 1 FROM accounts WHERE tenant_id = $1 AND id = $2 FOR UPDATE`, s.TenantID, s.AccountID).Scan(new(int))
		if err := rowErr(err, "account %d", s.AccountID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT id FROM mailboxes WHERE account_id = $1 ORDER BY id FOR UPDATE`, s.AccountID); err != nil {
			return fmt.Errorf("pgrepo: lock mailboxes: %w", err)
		}
		rows, err := tx.Query(ctx, `WITH del AS (DELETE FROM messages WHERE account_id = $1 RETURNING object_id)
			SELECT object_id, count(*) FROM del GROUP BY object_id ORDER BY object_id`, s.AccountID)
		if err != nil {
			return fmt.Errorf("pgrepo: delete messages: %w", err)
		}
		var ids, counts []int64
		var id, n int64
		if _, err := pgx.ForEachRow(rows, []any{&id, &n}, func() error {
			ids, counts = append(ids, id), append(counts, n)
			return nil
		}); err != nil {
			return fmt.Errorf("pgrepo: delete messages: %w", err)
		}
		if err := changeRefs(ctx, tx, s.TenantID, ids, counts, -1); err != nil {
			return err
		}
		for _, stmt := range []string{
			`DELETE FROM expunged WHERE account_id = $1`,
			`DELETE FROM deliveries WHERE account_id = $1`,
			`DELETE FROM mailboxes WHERE account_id = $1`,
			`DELETE FROM subscriptions WHERE account_id = $1`,
			`DELETE FROM keywords WHERE account_id = $1`,
			`DELETE FROM app_passwords WHERE account_id = $1`,
			`DELETE FROM accounts WHERE id = $1`,
		} {
			if _, err := tx.Exec(ctx, stmt, s.AccountID); err != nil {
				return fmt.Errorf("pgrepo: delete account: %s: %w", stmt, err)
			}
		}
		return nil
	})
}

const appPasswordCols = `id, account_id, name, password_hash, created_at, last_used_at`

func scanAppPassword(row pgx.Row) (repo.AppPassword, error) {
	var ap repo.AppPassword
	var last *time.Time
	err := row.Scan(&ap.ID, &ap.AccountID, &ap.Name, &ap.Hash, &ap.CreatedAt, &last)
	if last != nil {
		ap.LastUsedAt = *last
	}
	return ap, err
}

// CreateAppPassword stores a named app password hash of an account.
func (r *Repo) CreateAppPassword(ctx context.Context, s repo.Scope, name, hash string) (repo.AppPassword, error) {
	if name == "" || hash == "" {
		return repo.AppPassword{}, fmt.Errorf("%w: app password needs a name and a hash", repo.ErrInvalidName)
	}
	ap, err := scanAppPassword(r.pool.QueryRow(ctx, `INSERT INTO app_passwords (tenant_id, account_id, name, password_hash)
		SELECT tenant_id, id, $3::text, $4::text FROM accounts WHERE tenant_id = $1 AND id = $2
		RETURNING `+appPasswordCols, s.TenantID, s.AccountID, name, hash))
	if isUniqueViolation(err) {
		return ap, fmt.Errorf("%w: app password %q", repo.ErrExists, name)
	}
	return ap, rowErr(err, "account %d", s.AccountID)
}

// ListAppPasswords lists an account's app passwords by name.
func (r *Repo) ListAppPasswords(ctx context.Context, s repo.Scope) ([]repo.AppPassword, error) {
	rows, err := r.pool.Query(ctx, `SELECT `+appPasswordCols+` FROM app_passwords
		WHERE tenant_id = $1 AND account_id = $2 ORDER BY name`, s.TenantID, s.AccountID)
	if err != nil {
		return nil, fmt.Errorf("pgrepo: list app passwords: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (repo.AppPassword, error) { return scanAppPassword(row) })
	if err != nil {
		return nil, fmt.Errorf("pgrepo: list app passwords: %w", err)
	}
	return out, nil
}

// DeleteAppPassword deletes one app password of an account.
func (r *Repo) DeleteAppPassword(ctx context.Context, s repo.Scope, id int64) error {
	tag, err := r.pool.Exec(ctx, `DELETE FROM app_passwords WHERE tenant_id = $1 AND account_id = $2 AND id = $3`,
		s.TenantID, s.AccountID, id)
	if err != nil {
		return fmt.Errorf("pgrepo: delete app password: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return notFound("app password %d", id)
	}
	return nil
}

// AppPasswordUsed records a use; an older time never overwrites a newer.
func (r *Repo) AppPasswordUsed(ctx context.Context, s repo.Scope, id int64, at time.Time) error {
	tag, err := r.pool.Exec(ctx, `UPDATE app_passwords SET last_used_at = greatest(last_used_at, $4)
		WHERE tenant_id = $1 AND account_id = $2 AND id = $3`, s.TenantID, s.AccountID, id, at)
	if err != nil {
		return fmt.Errorf("pgrepo: record app password use: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return notFound("app password %d", id)
	}
	return nil
}

const aliasCols = `al.id, al.tenant_id, al.domain_id, al.local_part, d.name, al.targets, al.send_as`

func scanAlias(row pgx.Row) (repo.Alias, error) {
	var al repo.Alias
	var domain string
	err := row.Scan(&al.ID, &al.TenantID, &al.DomainID, &al.LocalPart, &domain, &al.Targets, &al.SendAs)
	al.Address = al.LocalPart + "@" + domain
	return al, err
}

// CreateAliasWithOptions creates an alias with checked, normalized,
// deduplicated targets.
func (r *Repo) CreateAliasWithOptions(ctx context.Context, tenantID, domainID int64, localPart string, targets []string, sendAs bool) (repo.Alias, error) {
	var err error
	if localPart != "" {
		if localPart, err = repo.NormalizeLocalPart(localPart); err != nil {
			return repo.Alias{}, err
		}
	} else if sendAs {
		return repo.Alias{}, fmt.Errorf("%w: a catch-all cannot grant send-as", repo.ErrInvalidName)
	}
	if len(targets) == 0 {
		return repo.Alias{}, fmt.Errorf("%w: an alias needs at least one target", repo.ErrInvalidName)
	}
	norm := make([]string, 0, len(targets))
	for _, t := range targets {
		l, d, err := repo.ParseAddress(t, false)
		if err != nil {
			return repo.Alias{}, fmt.Errorf("alias target: %w", err)
		}
		if a := l + "@" + d; !slices.Contains(norm, a) {
			norm = append(norm, a)
		}
	}
	al, err := scanAlias(r.pool.QueryRow(ctx, `WITH d AS (SELECT id, tenant_id, name FROM domains WHERE tenant_id = $1 AND id = $2),
		al AS (INSERT INTO aliases (tenant_id, domain_id, local_part, targets, send_as)
		       SELECT tenant_id, id, $3::text, $4::text[], $5::boolean FROM d RETURNING *)
		SELECT `+aliasCols+` FROM al, d`, tenantID, domainID, localPart, norm, sendAs))
	if isUniqueViolation(err) {
		return al, fmt.Errorf("%w: alias %q", repo.ErrExists, localPart)
	}
	return al, rowErr(err, "domain %d of tenant %d", domainID, tenantID)
}

// ListAliases lists the aliases of a domain, a tenant, or all.
func (r *Repo) ListAliases(ctx context.Context, tenantID, domainID int64) ([]repo.Alias, error) {
	rows, err := r.pool.Query(ctx, `SELECT `+aliasCols+` FROM aliases al JOIN domains d ON d.id = al.domain_id
		WHERE ($1::bigint = 0 OR al.tenant_id = $1) AND ($2::bigint = 0 OR al.domain_id = $2)
		ORDER BY d.name, al.local_part`, tenantID, domainID)
	if err != nil {
		return nil, fmt.Errorf("pgrepo: list aliases: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (repo.Alias, error) { return scanAlias(row) })
	if err != nil {
		return nil, fmt.Errorf("pgrepo: list aliases: %w", err)
	}
	return out, nil
}

// AliasByAddress finds an alias, "@domain" being the catch-all.
func (r *Repo) AliasByAddress(ctx context.Context, address string) (repo.Alias, error) {
	local, domain, err := repo.ParseAddress(address, true)
	if err != nil {
		return repo.Alias{}, err
	}
	al, err := scanAlias(r.pool.QueryRow(ctx, `SELECT `+aliasCols+` FROM aliases al JOIN domains d ON d.id = al.domain_id
		WHERE d.name = $1 AND al.local_part = $2`, domain, local))
	return al, rowErr(err, "alias %q", address)
}

// DeleteAlias deletes an alias of a tenant.
func (r *Repo) DeleteAlias(ctx context.Context, tenantID, aliasID int64) error {
	tag, err := r.pool.Exec(ctx, `DELETE FROM aliases WHERE tenant_id = $1 AND id = $2`, tenantID, aliasID)
	if err != nil {
		return fmt.Errorf("pgrepo: delete alias: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return notFound("alias %d", aliasID)
	}
	return nil
}

// Credentials reads an account's login data and app password hashes.
func (r *Repo) Credentials(ctx context.Context, address string) (repo.Credentials, error) {
	var c repo.Credentials
	local, domain, err := repo.ParseAddress(address, false)
	if err != nil {
		return c, fmt.Errorf("%w: %w", repo.ErrNotFound, err)
	}
	err = r.pool.QueryRow(ctx, `SELECT a.tenant_id, a.id, a.local_part || '@' || d.name, a.password_hash, a.disabled
		FROM accounts a JOIN domains d ON d.id = a.domain_id WHERE d.name = $1 AND a.local_part = $2`, domain, local).
		Scan(&c.TenantID, &c.AccountID, &c.Address, &c.PasswordHash, &c.Disabled)
	if err := rowErr(err, "account %q", address); err != nil {
		return c, err
	}
	if c.AppPasswords, err = r.ListAppPasswords(ctx, repo.Scope{TenantID: c.TenantID, AccountID: c.AccountID}); err != nil {
		return c, err
	}
	return c, nil
}

// AccountTenant returns the tenant of an account.
func (r *Repo) AccountTenant(ctx context.Context, accountID int64) (int64, error) {
	var tenant int64
	err := r.pool.QueryRow(ctx, `SELECT tenant_id FROM accounts WHERE id = $1`, accountID).Scan(&tenant)
	return tenant, rowErr(err, "account %d", accountID)
}

// overQuota is true for an account row "a" that cannot take one more
// message of $size bytes.
const overQuota = `((a.quota_bytes IS NOT NULL AND a.used_bytes + $size > a.quota_bytes)
	OR (a.quota_messages IS NOT NULL AND a.used_messages + 1 > a.quota_messages))`

// ResolveRecipient resolves an address in two reads: the domain (with the
// tenant-wide quota check), then the account or else the alias or
// catch-all with its target accounts. Alias targets resolve one level
// deep, to accounts of the alias's tenant; other targets are ignored.
func (r *Repo) ResolveRecipient(ctx context.Context, address string, size int64) (repo.Recipient, error) {
	var rc repo.Recipient
	local, domain, err := repo.ParseAddress(address, false)
	if err != nil {
		return rc, err
	}
	size = max(size, 0)
	var domainID int64
	var tenantOver bool
	// The tenant's usage is summed only when it has a limit.
	err = r.pool.QueryRow(ctx, `SELECT d.id, d.tenant_id, t.quota_bytes IS NOT NULL AND
			(SELECT coalesce(sum(a.used_bytes), 0) FROM accounts a WHERE a.tenant_id = t.id) + $2::bigint > t.quota_bytes
		FROM domains d JOIN tenants t ON t.id = d.tenant_id WHERE d.name = $1`, domain, size).
		Scan(&domainID, &rc.TenantID, &tenantOver)
	if errors.Is(err, pgx.ErrNoRows) {
		rc.Status = repo.RecipientNotLocal
		return rc, nil
	}
	if err != nil {
		return rc, fmt.Errorf("pgrepo: resolve recipient domain: %w", err)
	}
	q := strings.ReplaceAll(`WITH acct AS (
			SELECT a.id, a.local_part || '@' || $3 AS address, a.disabled, `+overQuota+` AS over
			FROM accounts a WHERE a.domain_id = $1 AND a.local_part = $2),
		al AS (
			SELECT al.targets FROM aliases al
			WHERE al.domain_id = $1 AND (al.local_part = $2 OR al.local_part = '') AND NOT EXISTS (SELECT 1 FROM acct)
			ORDER BY al.local_part DESC LIMIT 1)
		SELECT id, address, disabled, over FROM acct
		UNION
		SELECT a.id, a.local_part || '@' || td.name, a.disabled, `+overQuota+`
		FROM al CROSS JOIN LATERAL unnest(al.targets) AS t(addr)
		JOIN domains td ON td.name = split_part(t.addr, '@', 2) AND td.tenant_id = $4
		JOIN accounts a ON a.domain_id = td.id AND a.local_part = split_part(t.addr, '@', 1)
		ORDER BY 1`, "$size", "$5")
	rows, err := r.pool.Query(ctx, q, domainID, local, domain, rc.TenantID, size)
	if err != nil {
		return rc, fmt.Errorf("pgrepo: resolve recipient: %w", err)
	}
	var found, anyRoom bool
	var ra repo.ResolvedAccount
	var disabled, over bool
	if _, err := pgx.ForEachRow(rows, []any{&ra.ID, &ra.Address, &disabled, &over}, func() error {
		found = true
		if disabled {
			return nil
		}
		anyRoom = anyRoom || !over
		rc.Accounts = append(rc.Accounts, ra)
		return nil
	}); err != nil {
		return rc, fmt.Errorf("pgrepo: resolve recipient: %w", err)
	}
	switch {
	case !found:
		rc.Status = repo.RecipientUnknownUser
	case len(rc.Accounts) == 0:
		rc.Status = repo.RecipientDisabled
	case tenantOver || !anyRoom:
		rc.Status = repo.RecipientOverQuota
	default:
		rc.Status = repo.RecipientLocal
	}
	return rc, nil
}

// CanSendAs reports whether the account may send as address.
func (r *Repo) CanSendAs(ctx context.Context, s repo.Scope, address string) (bool, error) {
	local, domain, err := repo.ParseAddress(address, false)
	if err != nil {
		return false, err
	}
	var ok bool
	err = r.pool.QueryRow(ctx, `WITH me AS (
			SELECT a.local_part, d.name AS domain, a.local_part || '@' || d.name AS address
			FROM accounts a JOIN domains d ON d.id = a.domain_id WHERE a.tenant_id = $1 AND a.id = $2)
		SELECT EXISTS (SELECT 1 FROM me WHERE me.local_part = $3 AND me.domain = $4)
		    OR EXISTS (SELECT 1 FROM aliases al JOIN domains d ON d.id = al.domain_id, me
		               WHERE d.name = $4 AND al.local_part = $3 AND al.local_part <> ''
		                 AND al.tenant_id = $1 AND al.send_as AND me.address = ANY (al.targets))`,
		s.TenantID, s.AccountID, local, domain).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("pgrepo: can send as: %w", err)
	}
	return ok, nil
}
