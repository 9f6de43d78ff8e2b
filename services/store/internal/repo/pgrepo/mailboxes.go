package pgrepo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/petrel-mail/petrel/services/store/internal/repo"
)

const mailboxCols = `id, name, special_use, noselect, uidvalidity, uidnext, highestmodseq,
	messages, unseen, deleted, size, recent_uid, forgotten_modseq`

func scanMailbox(row pgx.Row) (repo.Mailbox, error) {
	var m repo.Mailbox
	var uidvalidity, uidnext, recent int64
	var hms, forgotten int64
	err := row.Scan(&m.ID, &m.Name, &m.SpecialUse, &m.NoSelect, &uidvalidity, &uidnext, &hms,
		&m.Messages, &m.Unseen, &m.Deleted, &m.Size, &recent, &forgotten)
	m.UIDValidity, m.RecentUID = uint32(uidvalidity), uint32(recent)
	// UIDNEXT 2^32 (exhausted) reads as the largest UID.
	m.UIDNext = uint32(min(uidnext, 4294967295))
	m.HighestModSeq, m.ForgottenModSeq = uint64(hms), uint64(forgotten)
	return m, err
}

// lockAccount takes lock 1 of the lock order and checks the scope.
func lockAccount(ctx context.Context, tx pgx.Tx, s repo.Scope) error {
	var one int
	err := tx.QueryRow(ctx, `SELECT 1 FROM accounts WHERE tenant_id = $1 AND id = $2 FOR NO KEY UPDATE`,
		s.TenantID, s.AccountID).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return notFound("account %d", s.AccountID)
	}
	if err != nil {
		return fmt.Errorf("pgrepo: lock account: %w", err)
	}
	return nil
}

// allocUIDValidity reserves n UIDVALIDITY values of the account (whose row
// the caller has locked) and returns the first.
func allocUIDValidity(ctx context.Context, tx pgx.Tx, s repo.Scope, n int) (int64, error) {
	var first int64
	err := tx.QueryRow(ctx, `UPDATE accounts SET next_uidvalidity = next_uidvalidity + $2
		WHERE id = $1 RETURNING next_uidvalidity - $2`, s.AccountID, n).Scan(&first)
	if err != nil {
		return 0, fmt.Errorf("pgrepo: allocate UIDVALIDITY: %w", err)
	}
	return first, nil
}

// CreateMailbox creates name and its missing parents. Re-creating a
// \Noselect placeholder makes it selectable with a new UIDVALIDITY.
func (r *Repo) CreateMailbox(ctx context.Context, s repo.Scope, name, specialUse string) (repo.Mailbox, error) {
	name, err := repo.NormalizeMailboxName(name)
	if err != nil {
		return repo.Mailbox{}, err
	}
	if name == repo.Inbox {
		return repo.Mailbox{}, fmt.Errorf("%w: INBOX", repo.ErrExists)
	}
	var mb repo.Mailbox
	err = r.inTx(ctx, func(tx pgx.Tx) error {
		if err := lockAccount(ctx, tx, s); err != nil {
			return err
		}
		names := append(repo.ParentNames(name), name)
		rows, err := tx.Query(ctx, `SELECT name, noselect FROM mailboxes WHERE account_id = $1 AND name = ANY($2)`, s.AccountID, names)
		if err != nil {
			return fmt.Errorf("pgrepo: create mailbox: %w", err)
		}
		existing := map[string]bool{} // name -> noselect
		var n string
		var ns bool
		_, err = pgx.ForEachRow(rows, []any{&n, &ns}, func() error { existing[n] = ns; return nil })
		if err != nil {
			return fmt.Errorf("pgrepo: create mailbox: %w", err)
		}
		var missing []string
		for _, p := range names {
			if _, ok := existing[p]; !ok {
				missing = append(missing, p)
			}
		}
		noselect, exists := existing[name]
		if exists && !noselect {
			return fmt.Errorf("%w: mailbox %q", repo.ErrExists, name)
		}
		k := len(missing)
		if exists {
			k++
		}
		first, err := allocUIDValidity(ctx, tx, s, k)
		if err != nil {
			return err
		}
		for i, p := range missing {
			su := ""
			if p == name {
				su = specialUse
			}
			if _, err := tx.Exec(ctx, `INSERT INTO mailboxes (account_id, tenant_id, name, uidvalidity, special_use)
				VALUES ($1, $2, $3, $4, $5)`, s.AccountID, s.TenantID, p, first+int64(i), su); err != nil {
				return fmt.Errorf("pgrepo: create mailbox %q: %w", p, err)
			}
		}
		if exists {
			if _, err := tx.Exec(ctx, `UPDATE mailboxes SET noselect = false, uidvalidity = $3, uidnext = 1,
				special_use = $4, recent_uid = 0 WHERE account_id = $1 AND name = $2`,
				s.AccountID, name, first+int64(k-1), specialUse); err != nil {
				return fmt.Errorf("pgrepo: create mailbox %q: %w", name, err)
			}
		}
		mb, err = scanMailbox(tx.QueryRow(ctx, `SELECT `+mailboxCols+` FROM mailboxes WHERE account_id = $1 AND name = $2`, s.AccountID, name))
		if err != nil {
			return fmt.Errorf("pgrepo: read created mailbox: %w", err)
		}
		return nil
	})
	return mb, err
}

// childPredicate is true for the strict descendants of the mailbox named by
// the parameter (no LIKE, so '_' and '%' in names are not special).
const childPredicate = `left(name, length(%[1]s) + 1) = %[1]s || '/'`

func children(param string) string { return fmt.Sprintf(childPredicate, param) }

// removeAllMessages deletes every message of a mailbox (locked by the
// caller), releasing quota and object references.
func removeAllMessages(ctx context.Context, tx pgx.Tx, s repo.Scope, mailboxID int64) error {
	rows, err := tx.Query(ctx, `WITH del AS (
			DELETE FROM messages WHERE account_id = $1 AND mailbox_id = $2 RETURNING size, object_id)
		SELECT object_id, count(*), sum(size)::bigint FROM del GROUP BY object_id ORDER BY object_id`, s.AccountID, mailboxID)
	if err != nil {
		return fmt.Errorf("pgrepo: delete messages: %w", err)
	}
	var ids, counts []int64
	var bytes, n int64
	var id, c, b int64
	if _, err := pgx.ForEachRow(rows, []any{&id, &c, &b}, func() error {
		ids, counts = append(ids, id), append(counts, c)
		bytes += b
		n += c
		return nil
	}); err != nil {
		return fmt.Errorf("pgrepo: delete messages: %w", err)
	}
	if n == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, `UPDATE accounts SET used_bytes = used_bytes - $2, used_messages = used_messages - $3 WHERE id = $1`,
		s.AccountID, bytes, n); err != nil {
		return fmt.Errorf("pgrepo: release quota: %w", err)
	}
	return changeRefs(ctx, tx, s.TenantID, ids, counts, -1)
}

// changeRefs adds sign*counts[i] references to objects ids[i] (ascending),
// locking them in id order. Reaching zero starts the grace period.
func changeRefs(ctx context.Context, tx pgx.Tx, tenantID int64, ids, counts []int64, sign int64) error {
	if len(ids) == 0 {
		return nil
	}
	deltas := make([]int64, len(counts))
	for i, c := range counts {
		deltas[i] = sign * c
	}
	tag, err := tx.Exec(ctx, `WITH l AS MATERIALIZED (
			SELECT id FROM objects WHERE tenant_id = $1 AND id = ANY($2) ORDER BY id FOR NO KEY UPDATE)
		UPDATE objects o SET refcount = o.refcount + d.delta,
			zero_since = CASE WHEN o.refcount + d.delta = 0 THEN now() ELSE NULL END
		FROM unnest($2::bigint[], $3::bigint[]) AS d(id, delta)
		WHERE o.id = d.id AND o.id IN (SELECT id FROM l)`, tenantID, ids, deltas)
	if err != nil {
		return fmt.Errorf("pgrepo: change object references: %w", err)
	}
	if tag.RowsAffected() != int64(len(ids)) {
		return notFound("object (collected or of another tenant)")
	}
	return nil
}

// DeleteMailbox deletes a mailbox (RFC 9051 §6.3.5). With children it
// becomes a \Noselect placeholder; a \Noselect placeholder left without
// children is removed.
func (r *Repo) DeleteMailbox(ctx context.Context, s repo.Scope, name string) error {
	name, err := repo.NormalizeMailboxName(name)
	if err != nil {
		return err
	}
	if name == repo.Inbox {
		return fmt.Errorf("%w: INBOX cannot be deleted", repo.ErrNotAllowed)
	}
	return r.inTx(ctx, func(tx pgx.Tx) error {
		if err := lockAccount(ctx, tx, s); err != nil {
			return err
		}
		var id int64
		var noselect, hasChildren bool
		err := tx.QueryRow(ctx, `SELECT id, noselect,
				EXISTS (SELECT 1 FROM mailboxes c WHERE c.account_id = $1 AND `+strings.ReplaceAll(children("$2"), "name", "c.name")+`)
			FROM mailboxes WHERE account_id = $1 AND name = $2 FOR NO KEY UPDATE`, s.AccountID, name).Scan(&id, &noselect, &hasChildren)
		if errors.Is(err, pgx.ErrNoRows) {
			return notFound("mailbox %q", name)
		}
		if err != nil {
			return fmt.Errorf("pgrepo: delete mailbox: %w", err)
		}
		if hasChildren && noselect {
			return fmt.Errorf("%w: %q has children and is \\Noselect", repo.ErrNotAllowed, name)
		}
		if err := removeAllMessages(ctx, tx, s, id); err != nil {
			return err
		}
		if hasChildren {
			_, err := tx.Exec(ctx, `UPDATE mailboxes SET noselect = true, special_use = '', messages = 0, unseen = 0,
				deleted = 0, size = 0, highestmodseq = highestmodseq + 1 WHERE account_id = $1 AND id = $2`, s.AccountID, id)
			if err != nil {
				return fmt.Errorf("pgrepo: delete mailbox: %w", err)
			}
			return nil
		}
		if _, err := tx.Exec(ctx, `DELETE FROM mailboxes WHERE account_id = $1 AND id = $2`, s.AccountID, id); err != nil {
			return fmt.Errorf("pgrepo: delete mailbox: %w", err)
		}
		parents := repo.ParentNames(name)
		for i := len(parents) - 1; i >= 0; i-- {
			tag, err := tx.Exec(ctx, `DELETE FROM mailboxes WHERE account_id = $1 AND name = $2 AND noselect
				AND NOT EXISTS (SELECT 1 FROM mailboxes c WHERE c.account_id = $1 AND `+strings.ReplaceAll(children("$2"), "name", "c.name")+`)`,
				s.AccountID, parents[i])
			if err != nil {
				return fmt.Errorf("pgrepo: remove placeholder %q: %w", parents[i], err)
			}
			if tag.RowsAffected() == 0 {
				break
			}
		}
		return nil
	})
}

// RenameMailbox renames a mailbox with its children and subscriptions
// (RFC 9051 §6.3.6). UIDVALIDITY is kept: the messages are the same.
// Renaming INBOX creates the new mailbox, moves INBOX's messages into it
// with their UIDs, and leaves INBOX empty (its children stay).
func (r *Repo) RenameMailbox(ctx context.Context, s repo.Scope, from, to string) error {
	from, err := repo.NormalizeMailboxName(from)
	if err != nil {
		return err
	}
	to, err = repo.NormalizeMailboxName(to)
	if err != nil {
		return err
	}
	if to == repo.Inbox {
		return fmt.Errorf("%w: INBOX", repo.ErrExists)
	}
	if to == from || strings.HasPrefix(to, from+"/") {
		return fmt.Errorf("%w: rename %q into itself", repo.ErrNotAllowed, from)
	}
	return r.inTx(ctx, func(tx pgx.Tx) error {
		if err := lockAccount(ctx, tx, s); err != nil {
			return err
		}
		src, err := scanMailbox(tx.QueryRow(ctx, `SELECT `+mailboxCols+` FROM mailboxes WHERE account_id = $1 AND name = $2 FOR NO KEY UPDATE`,
			s.AccountID, from))
		if errors.Is(err, pgx.ErrNoRows) {
			return notFound("mailbox %q", from)
		}
		if err != nil {
			return fmt.Errorf("pgrepo: rename mailbox: %w", err)
		}
		var taken bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM mailboxes WHERE account_id = $1 AND (name = $2 OR `+children("$2")+`))`,
			s.AccountID, to).Scan(&taken); err != nil {
			return fmt.Errorf("pgrepo: rename mailbox: %w", err)
		}
		if taken {
			return fmt.Errorf("%w: mailbox %q", repo.ErrExists, to)
		}
		// Missing parents of the new name (outside the renamed subtree).
		parents := repo.ParentNames(to)
		rows, err := tx.Query(ctx, `SELECT p FROM unnest($2::text[]) p
			WHERE NOT EXISTS (SELECT 1 FROM mailboxes WHERE account_id = $1 AND name = p) ORDER BY length(p)`, s.AccountID, parents)
		if err != nil {
			return fmt.Errorf("pgrepo: rename mailbox: %w", err)
		}
		missing, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("pgrepo: rename mailbox: %w", err)
		}
		k := len(missing)
		if from == repo.Inbox {
			k++
		}
		first, err := allocUIDValidity(ctx, tx, s, k)
		if err != nil {
			return err
		}
		for i, p := range missing {
			if _, err := tx.Exec(ctx, `INSERT INTO mailboxes (account_id, tenant_id, name, uidvalidity) VALUES ($1, $2, $3, $4)`,
				s.AccountID, s.TenantID, p, first+int64(i)); err != nil {
				return fmt.Errorf("pgrepo: create parent %q: %w", p, err)
			}
		}
		if from == repo.Inbox {
			return renameInbox(ctx, tx, s, src, to, first+int64(k-1))
		}
		if _, err := tx.Exec(ctx, `UPDATE mailboxes SET name = $3 || substr(name, length($2) + 1)
			WHERE account_id = $1 AND (name = $2 OR `+children("$2")+`)`, s.AccountID, from, to); err != nil {
			return fmt.Errorf("pgrepo: rename mailbox: %w", err)
		}
		if _, err := tx.Exec(ctx, `WITH old AS (
				DELETE FROM subscriptions WHERE account_id = $1 AND (name = $2 OR `+children("$2")+`) RETURNING name)
			INSERT INTO subscriptions (account_id, name) SELECT $1, $3 || substr(name, length($2) + 1) FROM old
			ON CONFLICT DO NOTHING`, s.AccountID, from, to); err != nil {
			return fmt.Errorf("pgrepo: rename subscriptions: %w", err)
		}
		return nil
	})
}

func renameInbox(ctx context.Context, tx pgx.Tx, s repo.Scope, inbox repo.Mailbox, to string, uidvalidity int64) error {
	// The new mailbox continues INBOX's UID and MODSEQ sequences under a new
	// UIDVALIDITY, so the moved messages keep their UIDs.
	var newID int64
	err := tx.QueryRow(ctx, `INSERT INTO mailboxes (account_id, tenant_id, name, uidvalidity, uidnext, highestmodseq,
			messages, unseen, deleted, size)
		SELECT account_id, tenant_id, $3, $4, uidnext, highestmodseq, messages, unseen, deleted, size
		FROM mailboxes WHERE account_id = $1 AND id = $2 RETURNING id`, s.AccountID, inbox.ID, to, uidvalidity).Scan(&newID)
	if err != nil {
		return fmt.Errorf("pgrepo: rename INBOX: %w", err)
	}
	var modseq int64
	if err := tx.QueryRow(ctx, `UPDATE mailboxes SET highestmodseq = highestmodseq + 1, messages = 0, unseen = 0, deleted = 0, size = 0
		WHERE account_id = $1 AND id = $2 RETURNING highestmodseq`, s.AccountID, inbox.ID).Scan(&modseq); err != nil {
		return fmt.Errorf("pgrepo: rename INBOX: %w", err)
	}
	if _, err := tx.Exec(ctx, `WITH moved AS (
			UPDATE messages SET mailbox_id = $3 WHERE account_id = $1 AND mailbox_id = $2 RETURNING uid)
		INSERT INTO expunged (account_id, mailbox_id, modseq, uid) SELECT $1, $2, $4, uid FROM moved`,
		s.AccountID, inbox.ID, newID, modseq); err != nil {
		return fmt.Errorf("pgrepo: rename INBOX: move messages: %w", err)
	}
	return nil
}

// Subscribe adds name to the subscriptions; the mailbox need not exist
// (RFC 9051 §6.3.7).
func (r *Repo) Subscribe(ctx context.Context, s repo.Scope, name string) error {
	name, err := repo.NormalizeMailboxName(name)
	if err != nil {
		return err
	}
	var ok bool
	err = r.pool.QueryRow(ctx, `WITH a AS (SELECT id FROM accounts WHERE tenant_id = $1 AND id = $2),
		ins AS (INSERT INTO subscriptions (account_id, name) SELECT id, $3 FROM a ON CONFLICT DO NOTHING)
		SELECT EXISTS (SELECT 1 FROM a)`, s.TenantID, s.AccountID, name).Scan(&ok)
	if err != nil {
		return fmt.Errorf("pgrepo: subscribe: %w", err)
	}
	if !ok {
		return notFound("account %d", s.AccountID)
	}
	return nil
}

// Unsubscribe removes name from the subscriptions.
func (r *Repo) Unsubscribe(ctx context.Context, s repo.Scope, name string) error {
	name, err := repo.NormalizeMailboxName(name)
	if err != nil {
		return err
	}
	tag, err := r.pool.Exec(ctx, `DELETE FROM subscriptions WHERE name = $3
		AND account_id = (SELECT id FROM accounts WHERE tenant_id = $1 AND id = $2)`, s.TenantID, s.AccountID, name)
	if err != nil {
		return fmt.Errorf("pgrepo: unsubscribe: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return notFound("subscription %q", name)
	}
	return nil
}

// ListMailboxes matches reference+pattern against the account's mailboxes
// (or subscriptions) in Go: an account has at most thousands of mailboxes,
// and the wildcard rules are simpler to get right here than in SQL.
func (r *Repo) ListMailboxes(ctx context.Context, s repo.Scope, reference, pattern string, subscribedOnly bool) ([]repo.ListEntry, error) {
	full := reference + pattern
	rows, err := r.pool.Query(ctx, `SELECT b.name, b.noselect, b.special_use, false
		FROM mailboxes b JOIN accounts a ON a.id = b.account_id WHERE a.tenant_id = $1 AND a.id = $2
		UNION ALL
		SELECT s.name, false, '', true FROM subscriptions s JOIN accounts a ON a.id = s.account_id
		WHERE a.tenant_id = $1 AND a.id = $2`, s.TenantID, s.AccountID)
	if err != nil {
		return nil, fmt.Errorf("pgrepo: list mailboxes: %w", err)
	}
	type info struct {
		exists, noselect, subscribed, hasChildren bool
		specialUse                                string
	}
	all := map[string]*info{}
	get := func(n string) *info {
		if all[n] == nil {
			all[n] = &info{}
		}
		return all[n]
	}
	var name, su string
	var ns, sub bool
	if _, err := pgx.ForEachRow(rows, []any{&name, &ns, &su, &sub}, func() error {
		in := get(name)
		if sub {
			in.subscribed = true
		} else {
			in.exists, in.noselect, in.specialUse = true, ns, su
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("pgrepo: list mailboxes: %w", err)
	}
	for n, in := range all {
		if !in.exists {
			continue
		}
		for _, p := range repo.ParentNames(n) {
			if pi := all[p]; pi != nil && pi.exists {
				pi.hasChildren = true
			}
		}
	}
	var out []repo.ListEntry
	for n, in := range all {
		if (subscribedOnly && !in.subscribed) || (!subscribedOnly && !in.exists) || !repo.MatchMailboxPattern(full, n) {
			continue
		}
		out = append(out, repo.ListEntry{
			Name: n, HasChildren: in.hasChildren, NoSelect: in.noselect, Subscribed: in.subscribed,
			NonExistent: !in.exists, SpecialUse: in.specialUse,
		})
	}
	if out == nil {
		// Distinguish "no match" from "no such account".
		if _, err := r.GetQuota(ctx, s); err != nil {
			return nil, err
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// MailboxByName reads a mailbox's state row.
func (r *Repo) MailboxByName(ctx context.Context, s repo.Scope, name string) (repo.Mailbox, error) {
	name, err := repo.NormalizeMailboxName(name)
	if err != nil {
		return repo.Mailbox{}, err
	}
	mb, err := scanMailbox(r.pool.QueryRow(ctx, `SELECT `+mailboxCols+` FROM mailboxes
		WHERE tenant_id = $1 AND account_id = $2 AND name = $3`, s.TenantID, s.AccountID, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return mb, notFound("mailbox %q", name)
	}
	if err != nil {
		return mb, fmt.Errorf("pgrepo: read mailbox: %w", err)
	}
	return mb, nil
}

// MailboxByID reads a mailbox's state row.
func (r *Repo) MailboxByID(ctx context.Context, s repo.Scope, id int64) (repo.Mailbox, error) {
	mb, err := scanMailbox(r.pool.QueryRow(ctx, `SELECT `+mailboxCols+` FROM mailboxes
		WHERE tenant_id = $1 AND account_id = $2 AND id = $3`, s.TenantID, s.AccountID, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return mb, notFound("mailbox %d", id)
	}
	if err != nil {
		return mb, fmt.Errorf("pgrepo: read mailbox: %w", err)
	}
	return mb, nil
}

// ClaimRecent moves the \Recent watermark past every message in one
// statement and returns the first UID that was above it (0: none).
func (r *Repo) ClaimRecent(ctx context.Context, s repo.Scope, mailboxID int64) (uint32, error) {
	var recent, uidnext int64
	err := r.pool.QueryRow(ctx, `WITH o AS (
			SELECT recent_uid, uidnext FROM mailboxes WHERE tenant_id = $1 AND account_id = $2 AND id = $3 FOR NO KEY UPDATE),
		u AS (UPDATE mailboxes m SET recent_uid = o.uidnext - 1 FROM o
			WHERE m.account_id = $2 AND m.id = $3 AND o.recent_uid < o.uidnext - 1)
		SELECT recent_uid, uidnext FROM o`, s.TenantID, s.AccountID, mailboxID).Scan(&recent, &uidnext)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, notFound("mailbox %d", mailboxID)
	}
	if err != nil {
		return 0, fmt.Errorf("pgrepo: claim recent: %w", err)
	}
	if recent < uidnext-1 {
		return uint32(recent + 1), nil
	}
	return 0, nil
}
