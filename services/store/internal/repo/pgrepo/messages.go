package pgrepo

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/petrel-mail/petrel/services/store/internal/mimeparse"
	"github.com/petrel-mail/petrel/services/store/internal/repo"
)

const maxUID = 4294967295

// uidArrays turns a set into sorted, non-overlapping inclusive ranges as
// two arrays, joined in SQL as unnest($lo, $hi) r(lo, hi). Non-overlapping
// matters: a UID in two ranges would be joined twice.
func uidArrays(u repo.UIDSet) (lo, hi []int64) {
	if u == nil {
		return []int64{1}, []int64{maxUID}
	}
	rs := make([]repo.UIDRange, 0, len(u))
	for _, r := range u {
		if r.Start > r.Stop {
			r.Start, r.Stop = r.Stop, r.Start
		}
		rs = append(rs, r)
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].Start < rs[j].Start })
	for _, r := range rs {
		if n := len(hi); n > 0 && int64(r.Start) <= hi[n-1]+1 {
			hi[n-1] = max(hi[n-1], int64(r.Stop))
			continue
		}
		lo, hi = append(lo, int64(r.Start)), append(hi, int64(r.Stop))
	}
	return lo, hi
}

func addStatus(status int32, what string) error {
	switch status {
	case 0, 1:
		return nil
	case 2:
		return notFound("account (%s)", what)
	case 3:
		return fmt.Errorf("%w (%s)", repo.ErrOverQuota, what)
	case 4:
		return notFound("mailbox (%s)", what)
	case 5:
		return fmt.Errorf("%w (%s)", repo.ErrNoSelect, what)
	case 7:
		return fmt.Errorf("%w (%s)", repo.ErrUIDsExhausted, what)
	}
	return fmt.Errorf("pgrepo: unexpected status %d (%s)", status, what)
}

func keywordsOrNil(k []string) []string {
	if len(k) == 0 {
		return nil
	}
	return k
}

// deliverArgs are petrel_deliver's arguments (migration 0030).
type deliverArgs struct {
	tenant      int64
	accounts    []int64
	prefixes    map[int64][]byte
	mailboxID   *int64
	mailboxName *string
	object      int64 // 0: record newObject
	newObject   *repo.NewObject
	flags       repo.Flags
	date        time.Time
	deliveryID  *string
}

// deliverSQL calls petrel_deliver. Its arguments after the tenant are, in
// order: recipients, their header prefixes, the mailbox (id or name), the
// object id, flags, keywords, internal date, delivery id, then the object
// to record (key, size and the object_meta columns, the SEARCH ones
// computed in Go: migration 0050), all NULL when the object id is given.
const deliverSQL = `SELECT account_id, status, mailbox_id, uidvalidity, uid, modseq
	FROM petrel_deliver($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
		$11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29)`

func (a *deliverArgs) sqlArgs() ([]any, error) {
	accounts := slices.Clone(a.accounts)
	slices.Sort(accounts)
	accounts = slices.Compact(accounts)
	var prefixes [][]byte
	for i, id := range accounts {
		p := a.prefixes[id]
		if len(p) == 0 {
			continue
		}
		if err := repo.CheckHeaderPrefix(p); err != nil {
			return nil, fmt.Errorf("account %d: %w", id, err)
		}
		if prefixes == nil {
			prefixes = make([][]byte, len(accounts))
		}
		prefixes[i] = p
	}
	args := []any{a.tenant, accounts, prefixes, a.mailboxID, a.mailboxName, nil,
		int16(a.flags.System), keywordsOrNil(a.flags.Keywords), a.date, a.deliveryID}
	if a.newObject == nil {
		args[5] = a.object
		return append(args, make([]any, 19)...), nil
	}
	key, p := a.newObject.Key, a.newObject.Parsed
	if key == "" || p == nil {
		return nil, fmt.Errorf("%w: object key or metadata missing", repo.ErrInvalidName)
	}
	parts, err := json.Marshal(p.Parts)
	if err != nil {
		return nil, fmt.Errorf("pgrepo: encode parts: %w", err)
	}
	var sent *time.Time
	if !p.Date.IsZero() {
		sent = &p.Date
	}
	sf := newSearchFields(p)
	return append(args, key, p.Size, nonNil(p.Envelope), nonNil(p.BodyStructure), nonNil(p.Body), parts, nonNil(p.Header),
		p.Subject, p.From, p.To, p.Cc, p.Bcc, p.MessageID, p.InReplyTo, sent, p.Malformed, p.Text, sf.sentDay, sf.words), nil
}

// scanDeliver reads petrel_deliver's rows, appending to out.
func scanDeliver(rows pgx.Rows, out []repo.DeliveryResult) ([]repo.DeliveryResult, error) {
	var acct int64
	var status int32
	var mb, uidv, uid, ms *int64
	_, err := pgx.ForEachRow(rows, []any{&acct, &status, &mb, &uidv, &uid, &ms}, func() error {
		res := repo.DeliveryResult{AccountID: acct, Duplicate: status == 1}
		res.Err = addStatus(status, fmt.Sprintf("account %d", acct))
		if res.Err == nil {
			res.MailboxID, res.UIDValidity, res.UID, res.ModSeq = *mb, uint32(*uidv), uint32(*uid), uint64(*ms)
		}
		out = append(out, res)
		return nil
	})
	return out, err
}

// deliver calls petrel_deliver: one statement, one transaction, one round
// trip (the statement is prepared once per connection by pgx's cache).
func (r *Repo) deliver(ctx context.Context, a deliverArgs) ([]repo.DeliveryResult, error) {
	if a.date.IsZero() {
		a.date = time.Now()
	}
	args, err := a.sqlArgs()
	if err != nil {
		return nil, err
	}
	return r.runDeliver(ctx, a, args)
}

// runDeliver runs petrel_deliver with a's arguments as sqlArgs made them,
// retrying a serialization failure or deadlock.
func (r *Repo) runDeliver(ctx context.Context, a deliverArgs, args []any) ([]repo.DeliveryResult, error) {
	var out []repo.DeliveryResult
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		out = out[:0]
		var rows pgx.Rows
		rows, err = r.pool.Query(ctx, deliverSQL, args...)
		if err == nil {
			out, err = scanDeliver(rows, out)
		}
		if !retryable(err) {
			break
		}
	}
	if isNoData(err) {
		if a.newObject != nil {
			return nil, notFound("tenant %d or its object %q", a.tenant, a.newObject.Key)
		}
		return nil, notFound("object %d of tenant %d", a.object, a.tenant)
	}
	if err != nil {
		return nil, fmt.Errorf("pgrepo: add message: %w", err)
	}
	return out, nil
}

// Append adds a message to a mailbox (APPEND).
func (r *Repo) Append(ctx context.Context, s repo.Scope, mailboxID int64, req repo.AppendRequest) (repo.AppendResult, error) {
	res, err := r.deliver(ctx, deliverArgs{tenant: s.TenantID, accounts: []int64{s.AccountID}, mailboxID: &mailboxID,
		object: req.ObjectID, flags: req.Flags, date: req.InternalDate})
	if err != nil {
		return repo.AppendResult{}, err
	}
	if len(res) != 1 {
		return repo.AppendResult{}, fmt.Errorf("pgrepo: append: %d results", len(res))
	}
	return res[0].AppendResult, res[0].Err
}

// Deliver links an object into each recipient's mailbox, idempotently,
// recording the object first when d.NewObject is set, all in one
// statement. Results are in ascending account order.
func (r *Repo) Deliver(ctx context.Context, d repo.Delivery) ([]repo.DeliveryResult, error) {
	a, err := deliveryArgs(d)
	if err != nil {
		return nil, err
	}
	return r.deliver(ctx, a)
}

func deliveryArgs(d repo.Delivery) (deliverArgs, error) {
	name := d.Mailbox
	if name == "" {
		name = repo.Inbox
	}
	name, err := repo.NormalizeMailboxName(name)
	if err != nil {
		return deliverArgs{}, err
	}
	if d.DeliveryID == "" {
		return deliverArgs{}, fmt.Errorf("%w: empty delivery id", repo.ErrInvalidName)
	}
	return deliverArgs{tenant: d.TenantID, accounts: d.Recipients, prefixes: d.HeaderPrefix, mailboxName: &name,
		object: d.ObjectID, newObject: d.NewObject, flags: d.Flags, date: d.InternalDate, deliveryID: &d.DeliveryID}, nil
}

// DeliverBatch runs several deliveries in one transaction: one round trip
// (a pgx batch of petrel_deliver calls) and one commit for all of them,
// which is most of what a delivery costs the database besides its rows.
// The deliveries are sent in the order of their lowest account, so that
// concurrent batches of single-recipient deliveries (the usual mail) take
// mailbox locks in one global order. When the transaction fails as a whole
// (a deadlock between multi-recipient deliveries, a concurrent recording
// of the same object, a missing tenant or object), each delivery is run on
// its own, so every one gets its own outcome and a bad one
// never fails the others.
func (r *Repo) DeliverBatch(ctx context.Context, ds []repo.Delivery) ([][]repo.DeliveryResult, []error) {
	out := make([][]repo.DeliveryResult, len(ds))
	errs := make([]error, len(ds))
	type item struct {
		i    int
		a    deliverArgs
		args []any
		low  int64
	}
	var items []item
	now := time.Now()
	for i, d := range ds {
		a, err := deliveryArgs(d)
		if err == nil && len(d.Recipients) == 0 {
			err = fmt.Errorf("%w: no recipients", repo.ErrInvalidName)
		}
		if err != nil {
			errs[i] = err
			continue
		}
		if a.date.IsZero() {
			a.date = now
		}
		args, err := a.sqlArgs()
		if err != nil {
			errs[i] = err
			continue
		}
		items = append(items, item{i: i, a: a, args: args, low: slices.Min(d.Recipients)})
	}
	if len(items) == 0 {
		return out, errs
	}
	if len(items) == 1 {
		it := items[0]
		out[it.i], errs[it.i] = r.runDeliver(ctx, it.a, it.args)
		return out, errs
	}
	slices.SortStableFunc(items, func(a, b item) int { return cmp.Compare(a.low, b.low) })
	err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		for _, it := range items {
			b.Queue(deliverSQL, it.args...)
		}
		br := tx.SendBatch(ctx, b)
		for _, it := range items {
			rows, err := br.Query()
			if err == nil {
				out[it.i], err = scanDeliver(rows, nil)
			}
			if err != nil {
				br.Close()
				return err
			}
		}
		return br.Close()
	})
	if err != nil {
		if ctx.Err() != nil {
			for _, it := range items {
				out[it.i], errs[it.i] = nil, fmt.Errorf("pgrepo: deliver batch: %w", err)
			}
			return out, errs
		}
		for _, it := range items {
			out[it.i], errs[it.i] = r.runDeliver(ctx, it.a, it.args)
		}
	}
	return out, errs
}

// mailboxMissing turns an empty result into ErrNotFound when the mailbox
// is not the caller's.
func (r *Repo) mailboxMissing(ctx context.Context, s repo.Scope, id int64) error {
	_, err := r.MailboxByID(ctx, s, id)
	return err
}

// UIDs returns the UIDs as maximal ranges. PostgreSQL reads them with one
// index-only scan of the primary key (account, mailbox, uid) into one
// int8[] value, and the ranges are found here: aggregating into an array
// costs a third of computing islands with a window function in SQL
// (row_number or lag/lead, then grouping), measured on 100,000 UIDs. The
// scan is index-only once the visibility map covers the pages (VACUUM;
// autovacuum does it for insert-mostly tables), otherwise every UID costs
// a heap visit.
func (r *Repo) UIDs(ctx context.Context, s repo.Scope, mailboxID int64) ([]repo.UIDRange, error) {
	var uids []int64
	err := r.pool.QueryRow(ctx, `SELECT (SELECT coalesce(array_agg(x.uid), '{}') FROM (
			SELECT m.uid FROM messages m WHERE m.account_id = b.account_id AND m.mailbox_id = b.id ORDER BY m.uid) x)
		FROM mailboxes b WHERE b.tenant_id = $1 AND b.account_id = $2 AND b.id = $3`, s.TenantID, s.AccountID, mailboxID).Scan(&uids)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, notFound("mailbox %d", mailboxID)
	}
	if err != nil {
		return nil, fmt.Errorf("pgrepo: uids: %w", err)
	}
	return uidRanges(uids), nil
}

// uidRanges compacts ascending UIDs into maximal ranges.
func uidRanges(uids []int64) []repo.UIDRange {
	var out []repo.UIDRange
	for _, u := range uids {
		if n := len(out); n > 0 && int64(out[n-1].Stop)+1 == u {
			out[n-1].Stop = uint32(u)
			continue
		}
		out = append(out, repo.UIDRange{Start: uint32(u), Stop: uint32(u)})
	}
	return out
}

// keywordMap loads an account's keyword names by id (a small table).
type keywordMap struct {
	r       *Repo
	account int64
	names   map[int64]string
}

func (k *keywordMap) resolve(ctx context.Context, ids []int64) ([]string, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	if k.names == nil || k.names[ids[len(ids)-1]] == "" {
		rows, err := k.r.pool.Query(ctx, `SELECT id, name FROM keywords WHERE account_id = $1`, k.account)
		if err != nil {
			return nil, fmt.Errorf("pgrepo: read keywords: %w", err)
		}
		k.names = map[int64]string{}
		var id int64
		var name string
		if _, err := pgx.ForEachRow(rows, []any{&id, &name}, func() error { k.names[id] = name; return nil }); err != nil {
			return nil, fmt.Errorf("pgrepo: read keywords: %w", err)
		}
	}
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if n, ok := k.names[id]; ok {
			out = append(out, n)
		}
	}
	return out, nil
}

// FetchMeta streams message metadata in UID order.
func (r *Repo) FetchMeta(ctx context.Context, s repo.Scope, mailboxID int64, uids repo.UIDSet, fields repo.FetchFields,
	changedSince uint64, fn func(*repo.MessageMeta) error) error {
	cols := []string{"m.uid", "m.modseq"}
	joins := ""
	add := func(f repo.FetchFields, c ...string) {
		if fields&f != 0 {
			cols = append(cols, c...)
		}
	}
	add(repo.FetchFlags, "m.flags", "m.keywords")
	add(repo.FetchInternalDate, "m.internal_date")
	add(repo.FetchSize, "m.size")
	add(repo.FetchObject, "m.object_id", "o.key", "m.header_prefix")
	add(repo.FetchEnvelope, "om.envelope")
	add(repo.FetchBodyStructure, "om.bodystructure", "om.body")
	add(repo.FetchParts, "om.parts", "coalesce(octet_length(m.header_prefix), 0)")
	add(repo.FetchHeader, "CASE WHEN m.header_prefix IS NULL THEN om.header ELSE m.header_prefix || om.header END")
	if fields&repo.FetchObject != 0 {
		joins += " JOIN objects o ON o.id = m.object_id AND o.tenant_id = b.tenant_id"
	}
	if fields&(repo.FetchEnvelope|repo.FetchBodyStructure|repo.FetchParts|repo.FetchHeader) != 0 {
		joins += " JOIN object_meta om ON om.object_id = m.object_id"
	}
	lo, hi := uidArrays(uids)
	// One range (1:*, the usual FETCH of a whole mailbox) is a plain
	// BETWEEN: the primary key scan then returns UID order and no sort is
	// needed; joined with a ranges array, the planner sorts 100,000 rows
	// (on disk with the default work_mem), a third slower.
	rangeArgs := [2]any{lo, hi}
	ranges := `JOIN unnest($4::bigint[], $5::bigint[]) AS r(lo, hi) ON true
		JOIN messages m ON m.account_id = b.account_id AND m.mailbox_id = b.id AND m.uid BETWEEN r.lo AND r.hi`
	if len(lo) == 1 {
		rangeArgs = [2]any{lo[0], hi[0]}
		ranges = `JOIN messages m ON m.account_id = b.account_id AND m.mailbox_id = b.id AND m.uid BETWEEN $4::bigint AND $5::bigint`
	}
	rows, err := r.pool.Query(ctx, `SELECT `+strings.Join(cols, ", ")+`
		FROM mailboxes b
		`+ranges+joins+`
		WHERE b.tenant_id = $1 AND b.account_id = $2 AND b.id = $3 AND m.modseq > $6
		ORDER BY m.uid`, s.TenantID, s.AccountID, mailboxID, rangeArgs[0], rangeArgs[1], int64(changedSince))
	if err != nil {
		return fmt.Errorf("pgrepo: fetch: %w", err)
	}
	defer rows.Close()
	kw := &keywordMap{r: r, account: s.AccountID}
	var (
		uid, modseq, size, objID int64
		flags                    int16
		keywords                 []int64
		parts                    []byte
		prefixLen                int64
		mm                       repo.MessageMeta
	)
	dest := []any{&uid, &modseq}
	addDest := func(f repo.FetchFields, d ...any) {
		if fields&f != 0 {
			dest = append(dest, d...)
		}
	}
	addDest(repo.FetchFlags, &flags, &keywords)
	addDest(repo.FetchInternalDate, &mm.InternalDate)
	addDest(repo.FetchSize, &size)
	addDest(repo.FetchObject, &objID, &mm.ObjectKey, &mm.HeaderPrefix)
	addDest(repo.FetchEnvelope, &mm.Envelope)
	addDest(repo.FetchBodyStructure, &mm.BodyStructure, &mm.Body)
	addDest(repo.FetchParts, &parts, &prefixLen)
	addDest(repo.FetchHeader, &mm.Header)
	n := 0
	for rows.Next() {
		mm = repo.MessageMeta{}
		if err := rows.Scan(dest...); err != nil {
			return fmt.Errorf("pgrepo: fetch: %w", err)
		}
		m := mm
		m.UID, m.ModSeq, m.Size, m.ObjectID = uint32(uid), uint64(modseq), size, objID
		m.Flags.System = repo.SystemFlags(flags)
		if m.Flags.Keywords, err = kw.resolve(ctx, keywords); err != nil {
			return err
		}
		if fields&repo.FetchParts != 0 {
			if err := json.Unmarshal(parts, &m.Parts); err != nil {
				return fmt.Errorf("pgrepo: fetch: decode parts of UID %d: %w", uid, err)
			}
			shiftParts(m.Parts, prefixLen)
		}
		n++
		if err := fn(&m); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("pgrepo: fetch: %w", err)
	}
	if n == 0 {
		return r.mailboxMissing(ctx, s, mailboxID)
	}
	return nil
}

// shiftParts turns the object's part offsets into those of the message as
// served, whose header block starts with n bytes of header prefix: the
// root's header grows by n, everything else moves down by n.
func shiftParts(parts []mimeparse.Part, n int64) {
	if n == 0 {
		return
	}
	for i := range parts {
		p := &parts[i]
		if p.Path == "" {
			p.HeaderLen += n
		} else {
			p.HeaderOffset += n
		}
		p.BodyOffset += n
	}
}

// lockMailbox takes a mailbox's row lock (lock 2) and returns its state.
func lockMailbox(ctx context.Context, tx pgx.Tx, s repo.Scope, id int64) (repo.Mailbox, error) {
	mb, err := scanMailbox(tx.QueryRow(ctx, `SELECT `+mailboxCols+` FROM mailboxes
		WHERE tenant_id = $1 AND account_id = $2 AND id = $3 FOR NO KEY UPDATE`, s.TenantID, s.AccountID, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return mb, notFound("mailbox %d", id)
	}
	if err != nil {
		return mb, fmt.Errorf("pgrepo: lock mailbox: %w", err)
	}
	if mb.NoSelect {
		return mb, fmt.Errorf("%w: %q", repo.ErrNoSelect, mb.Name)
	}
	return mb, nil
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// StoreFlags is one set-based UPDATE under the mailbox lock; all changed
// messages get the same new MODSEQ (RFC 7162 §3.1.3). Messages whose flags
// would not change are not touched and keep their MODSEQ.
func (r *Repo) StoreFlags(ctx context.Context, s repo.Scope, mailboxID int64, uids repo.UIDSet, op repo.FlagOp,
	flags repo.Flags, unchangedSince uint64) (repo.StoreResult, error) {
	var res repo.StoreResult
	var changedKW [][]int64
	lo, hi := uidArrays(uids)
	err := r.inTx(ctx, func(tx pgx.Tx) error {
		res = repo.StoreResult{}
		mb, err := lockMailbox(ctx, tx, s, mailboxID)
		if err != nil {
			return err
		}
		kwIDs := []int64{}
		if len(flags.Keywords) > 0 {
			if err := tx.QueryRow(ctx, `SELECT petrel_keyword_ids($1, $2)`, s.AccountID, flags.Keywords).Scan(&kwIDs); err != nil {
				return fmt.Errorf("pgrepo: store: keywords: %w", err)
			}
		}
		modseq := int64(mb.HighestModSeq) + 1
		rows, err := tx.Query(ctx, `WITH cur AS (
				SELECT m.uid, m.flags, m.keywords, m.modseq
				FROM unnest($3::bigint[], $4::bigint[]) AS r(lo, hi)
				JOIN messages m ON m.account_id = $1 AND m.mailbox_id = $2 AND m.uid BETWEEN r.lo AND r.hi),
			calc AS (
				SELECT uid, flags AS old_flags, keywords AS old_kw, modseq AS old_modseq,
					(CASE $5::int WHEN 0 THEN $6::smallint WHEN 1 THEN flags | $6::smallint ELSE flags & ~$6::smallint END)::smallint AS nf,
					CASE $5::int WHEN 0 THEN $7::bigint[]
						WHEN 1 THEN ARRAY(SELECT DISTINCT k FROM unnest(keywords || $7::bigint[]) k ORDER BY k)
						ELSE ARRAY(SELECT k FROM unnest(keywords) k WHERE k <> ALL ($7::bigint[]) ORDER BY k) END AS nk
				FROM cur),
			upd AS (
				UPDATE messages m SET flags = c.nf, keywords = c.nk, modseq = $8
				FROM calc c
				WHERE m.account_id = $1 AND m.mailbox_id = $2 AND m.uid = c.uid
				  AND ($9::bigint = 0 OR c.old_modseq <= $9::bigint)
				  AND (c.nf <> c.old_flags OR c.nk <> c.old_kw)
				RETURNING m.uid, c.old_flags, c.nf, c.nk)
			SELECT false, uid, old_flags, nf, nk FROM upd
			UNION ALL
			SELECT true, uid, 0::smallint, 0::smallint, '{}'::bigint[] FROM calc WHERE $9::bigint <> 0 AND old_modseq > $9::bigint`,
			s.AccountID, mailboxID, lo, hi, int(op), int16(flags.System), kwIDs, modseq, int64(unchangedSince))
		if err != nil {
			return fmt.Errorf("pgrepo: store: %w", err)
		}
		var modified bool
		var uid int64
		var oldF, newF int16
		var nk []int64
		var dUnseen, dDeleted int64
		changedKW = changedKW[:0]
		if _, err := pgx.ForEachRow(rows, []any{&modified, &uid, &oldF, &newF, &nk}, func() error {
			if modified {
				res.Modified = append(res.Modified, uint32(uid))
				return nil
			}
			o, n := repo.SystemFlags(oldF), repo.SystemFlags(newF)
			dUnseen += b2i(n&repo.FlagSeen == 0) - b2i(o&repo.FlagSeen == 0)
			dDeleted += b2i(n&repo.FlagDeleted != 0) - b2i(o&repo.FlagDeleted != 0)
			res.Changed = append(res.Changed, repo.FlagChange{UID: uint32(uid), ModSeq: uint64(modseq), Flags: repo.Flags{System: n}})
			changedKW = append(changedKW, nk)
			return nil
		}); err != nil {
			return fmt.Errorf("pgrepo: store: %w", err)
		}
		if len(res.Changed) == 0 {
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE mailboxes SET highestmodseq = $3, unseen = unseen + $4, deleted = deleted + $5
			WHERE account_id = $1 AND id = $2`, s.AccountID, mailboxID, modseq, dUnseen, dDeleted); err != nil {
			return fmt.Errorf("pgrepo: store: counters: %w", err)
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	// Keyword names are read after commit: new names are not visible to
	// another connection before.
	kw := &keywordMap{r: r, account: s.AccountID}
	for i := range res.Changed {
		if res.Changed[i].Flags.Keywords, err = kw.resolve(ctx, changedKW[i]); err != nil {
			return res, err
		}
	}
	sort.Slice(res.Changed, func(i, j int) bool { return res.Changed[i].UID < res.Changed[j].UID })
	sort.Slice(res.Modified, func(i, j int) bool { return res.Modified[i] < res.Modified[j] })
	return res, err
}

// Copy copies messages (RFC 9051 §6.4.7, COPYUID of RFC 4315).
func (r *Repo) Copy(ctx context.Context, s repo.Scope, src int64, uids repo.UIDSet, dst int64) (repo.CopyResult, error) {
	return r.copyOrMove(ctx, s, src, uids, dst, false)
}

// Move moves messages in one transaction (RFC 6851).
func (r *Repo) Move(ctx context.Context, s repo.Scope, src int64, uids repo.UIDSet, dst int64) (repo.CopyResult, error) {
	if src == dst {
		return repo.CopyResult{}, fmt.Errorf("%w: move into the same mailbox", repo.ErrNotAllowed)
	}
	return r.copyOrMove(ctx, s, src, uids, dst, true)
}

func (r *Repo) copyOrMove(ctx context.Context, s repo.Scope, srcID int64, uids repo.UIDSet, dstID int64, move bool) (repo.CopyResult, error) {
	var res repo.CopyResult
	lo, hi := uidArrays(uids)
	err := r.inTx(ctx, func(tx pgx.Tx) error {
		res = repo.CopyResult{}
		if err := lockAccount(ctx, tx, s); err != nil {
			return err
		}
		// Both mailboxes, in id order.
		first, second := min(srcID, dstID), max(srcID, dstID)
		mbs := map[int64]repo.Mailbox{}
		for _, id := range []int64{first, second} {
			if _, ok := mbs[id]; ok {
				continue
			}
			mb, err := lockMailbox(ctx, tx, s, id)
			if err != nil {
				return err
			}
			mbs[id] = mb
		}
		srcMB, dstMB := mbs[srcID], mbs[dstID]
		res.DstUIDValidity = dstMB.UIDValidity
		// Source messages, with the object reference counts to add.
		rows, err := tx.Query(ctx, `SELECT m.uid, m.size, m.flags, m.object_id
			FROM unnest($3::bigint[], $4::bigint[]) AS r(lo, hi)
			JOIN messages m ON m.account_id = $1 AND m.mailbox_id = $2 AND m.uid BETWEEN r.lo AND r.hi
			ORDER BY m.uid`, s.AccountID, srcID, lo, hi)
		if err != nil {
			return fmt.Errorf("pgrepo: copy: %w", err)
		}
		var srcUIDs []int64
		var bytes, unseen, deleted int64
		refs := map[int64]int64{}
		var uid, size, obj int64
		var flags int16
		if _, err := pgx.ForEachRow(rows, []any{&uid, &size, &flags, &obj}, func() error {
			srcUIDs = append(srcUIDs, uid)
			bytes += size
			unseen += b2i(repo.SystemFlags(flags)&repo.FlagSeen == 0)
			deleted += b2i(repo.SystemFlags(flags)&repo.FlagDeleted != 0)
			refs[obj]++
			return nil
		}); err != nil {
			return fmt.Errorf("pgrepo: copy: %w", err)
		}
		n := int64(len(srcUIDs))
		if n == 0 {
			return nil
		}
		base := int64(dstMB.UIDNext)
		if base+n-1 > maxUID {
			return fmt.Errorf("%w: mailbox %d", repo.ErrUIDsExhausted, dstID)
		}
		if !move {
			tag, err := tx.Exec(ctx, `UPDATE accounts SET used_bytes = used_bytes + $2, used_messages = used_messages + $3
				WHERE id = $1 AND (quota_bytes IS NULL OR used_bytes + $2 <= quota_bytes)
				  AND (quota_messages IS NULL OR used_messages + $3 <= quota_messages)`, s.AccountID, bytes, n)
			if err != nil {
				return fmt.Errorf("pgrepo: copy: quota: %w", err)
			}
			if tag.RowsAffected() == 0 {
				return fmt.Errorf("%w: copy of %d messages (%d bytes)", repo.ErrOverQuota, n, bytes)
			}
		}
		dstModseq := int64(dstMB.HighestModSeq) + 1
		if _, err := tx.Exec(ctx, `INSERT INTO messages (account_id, mailbox_id, uid, modseq, flags, keywords, internal_date, size, object_id, header_prefix)
			SELECT $1, $3, $4 + u.ord - 1, $5, m.flags, m.keywords, m.internal_date, m.size, m.object_id, m.header_prefix
			FROM unnest($6::bigint[]) WITH ORDINALITY AS u(uid, ord)
			JOIN messages m ON m.account_id = $1 AND m.mailbox_id = $2 AND m.uid = u.uid`,
			s.AccountID, srcID, dstID, base, dstModseq, srcUIDs); err != nil {
			return fmt.Errorf("pgrepo: copy: insert: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE mailboxes SET uidnext = uidnext + $3, highestmodseq = $4, messages = messages + $3,
			unseen = unseen + $5, deleted = deleted + $6, size = size + $7 WHERE account_id = $1 AND id = $2`,
			s.AccountID, dstID, n, dstModseq, unseen, deleted, bytes); err != nil {
			return fmt.Errorf("pgrepo: copy: counters: %w", err)
		}
		for i, u := range srcUIDs {
			res.Map = append(res.Map, repo.UIDPair{Src: uint32(u), Dst: uint32(base + int64(i))})
		}
		if move {
			srcModseq := int64(srcMB.HighestModSeq) + 1
			res.SrcModSeq = uint64(srcModseq)
			if _, err := tx.Exec(ctx, `WITH del AS (
					DELETE FROM messages WHERE account_id = $1 AND mailbox_id = $2 AND uid = ANY($3) RETURNING uid)
				INSERT INTO expunged (account_id, mailbox_id, modseq, uid) SELECT $1, $2, $4, uid FROM del`,
				s.AccountID, srcID, srcUIDs, srcModseq); err != nil {
				return fmt.Errorf("pgrepo: move: expunge: %w", err)
			}
			if _, err := tx.Exec(ctx, `UPDATE mailboxes SET highestmodseq = $3, messages = messages - $4,
				unseen = unseen - $5, deleted = deleted - $6, size = size - $7 WHERE account_id = $1 AND id = $2`,
				s.AccountID, srcID, srcModseq, n, unseen, deleted, bytes); err != nil {
				return fmt.Errorf("pgrepo: move: counters: %w", err)
			}
			return nil
		}
		ids, counts := sortedRefs(refs)
		return changeRefs(ctx, tx, s.TenantID, ids, counts, +1)
	})
	return res, err
}

func sortedRefs(refs map[int64]int64) (ids, counts []int64) {
	for id := range refs {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		counts = append(counts, refs[id])
	}
	return ids, counts
}

// Expunge removes \Deleted messages (of uids, if given), writes their
// tombstones and releases quota and object references, in one transaction.
func (r *Repo) Expunge(ctx context.Context, s repo.Scope, mailboxID int64, uids repo.UIDSet) (repo.ExpungeResult, error) {
	var res repo.ExpungeResult
	lo, hi := uidArrays(uids)
	err := r.inTx(ctx, func(tx pgx.Tx) error {
		res = repo.ExpungeResult{}
		if err := lockAccount(ctx, tx, s); err != nil {
			return err
		}
		mb, err := lockMailbox(ctx, tx, s, mailboxID)
		if err != nil {
			return err
		}
		modseq := int64(mb.HighestModSeq) + 1
		rows, err := tx.Query(ctx, `WITH del AS (
				DELETE FROM messages m USING unnest($3::bigint[], $4::bigint[]) AS r(lo, hi)
				WHERE m.account_id = $1 AND m.mailbox_id = $2 AND m.uid BETWEEN r.lo AND r.hi AND m.flags & 8 <> 0
				RETURNING m.uid, m.size, m.flags, m.object_id),
			tomb AS (INSERT INTO expunged (account_id, mailbox_id, modseq, uid) SELECT $1, $2, $5, uid FROM del)
			SELECT uid, size, flags, object_id FROM del ORDER BY uid`, s.AccountID, mailboxID, lo, hi, modseq)
		if err != nil {
			return fmt.Errorf("pgrepo: expunge: %w", err)
		}
		var bytes, unseen int64
		refs := map[int64]int64{}
		var uid, size, obj int64
		var flags int16
		if _, err := pgx.ForEachRow(rows, []any{&uid, &size, &flags, &obj}, func() error {
			res.UIDs = append(res.UIDs, uint32(uid))
			bytes += size
			unseen += b2i(repo.SystemFlags(flags)&repo.FlagSeen == 0)
			refs[obj]++
			return nil
		}); err != nil {
			return fmt.Errorf("pgrepo: expunge: %w", err)
		}
		n := int64(len(res.UIDs))
		if n == 0 {
			return nil
		}
		res.ModSeq = uint64(modseq)
		if _, err := tx.Exec(ctx, `UPDATE mailboxes SET highestmodseq = $3, messages = messages - $4, unseen = unseen - $5,
			deleted = deleted - $4, size = size - $6 WHERE account_id = $1 AND id = $2`,
			s.AccountID, mailboxID, modseq, n, unseen, bytes); err != nil {
			return fmt.Errorf("pgrepo: expunge: counters: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE accounts SET used_bytes = used_bytes - $2, used_messages = used_messages - $3 WHERE id = $1`,
			s.AccountID, bytes, n); err != nil {
			return fmt.Errorf("pgrepo: expunge: quota: %w", err)
		}
		ids, counts := sortedRefs(refs)
		return changeRefs(ctx, tx, s.TenantID, ids, counts, -1)
	})
	return res, err
}

// ChangesSince answers CHANGEDSINCE/QRESYNC. With no changes it is one
// primary-key read of the mailbox row; otherwise one more statement reads
// changed messages (index on modseq) and tombstones in one snapshot.
func (r *Repo) ChangesSince(ctx context.Context, s repo.Scope, mailboxID int64, modSeq uint64) (repo.Changes, error) {
	var ch repo.Changes
	mb, err := r.MailboxByID(ctx, s, mailboxID)
	if err != nil {
		return ch, err
	}
	ch.HighestModSeq = mb.HighestModSeq
	ch.TooOld = modSeq < mb.ForgottenModSeq
	if modSeq >= mb.HighestModSeq {
		return ch, nil
	}
	rows, err := r.pool.Query(ctx, `SELECT false, uid, modseq, flags, keywords FROM messages
			WHERE account_id = $1 AND mailbox_id = $2 AND modseq > $3
		UNION ALL
		SELECT true, uid, modseq, 0::smallint, '{}'::bigint[] FROM expunged
			WHERE account_id = $1 AND mailbox_id = $2 AND modseq > $3
		ORDER BY 2`, s.AccountID, mailboxID, int64(modSeq))
	if err != nil {
		return ch, fmt.Errorf("pgrepo: changes: %w", err)
	}
	kw := &keywordMap{r: r, account: s.AccountID}
	var vanished bool
	var uid, ms int64
	var flags int16
	var kws []int64
	if _, err := pgx.ForEachRow(rows, []any{&vanished, &uid, &ms, &flags, &kws}, func() error {
		ch.HighestModSeq = max(ch.HighestModSeq, uint64(ms))
		if vanished {
			ch.Vanished = append(ch.Vanished, uint32(uid))
			return nil
		}
		names, err := kw.resolve(ctx, kws)
		ch.Changed = append(ch.Changed, repo.FlagChange{UID: uint32(uid), ModSeq: uint64(ms),
			Flags: repo.Flags{System: repo.SystemFlags(flags), Keywords: names}})
		return err
	}); err != nil {
		return ch, fmt.Errorf("pgrepo: changes: %w", err)
	}
	return ch, nil
}

// PruneExpunged forgets tombstones older than before and raises each
// affected mailbox's forgotten MODSEQ mark accordingly.
func (r *Repo) PruneExpunged(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := r.inTx(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `WITH del AS (
				DELETE FROM expunged WHERE expunged_at < $1 RETURNING account_id, mailbox_id, modseq),
			agg AS (SELECT account_id, mailbox_id, max(modseq) AS ms, count(*) AS n FROM del GROUP BY 1, 2),
			upd AS (UPDATE mailboxes b SET forgotten_modseq = greatest(b.forgotten_modseq, agg.ms)
				FROM agg WHERE b.account_id = agg.account_id AND b.id = agg.mailbox_id)
			SELECT coalesce(sum(n), 0)::bigint FROM agg`, before).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("pgrepo: prune tombstones: %w", err)
	}
	return n, nil
}

// CreateObject records an object and its metadata (see repo.Objects).
func (r *Repo) CreateObject(ctx context.Context, tenantID int64, key string, p *mimeparse.Parsed) (int64, error) {
	if key == "" || p == nil {
		return 0, fmt.Errorf("%w: object key or metadata missing", repo.ErrInvalidName)
	}
	parts, err := json.Marshal(p.Parts)
	if err != nil {
		return 0, fmt.Errorf("pgrepo: encode parts: %w", err)
	}
	var sent *time.Time
	if !p.Date.IsZero() {
		sent = &p.Date
	}
	sf := newSearchFields(p)
	var id int64
	err = r.inTx(ctx, func(tx pgx.Tx) error {
		var inserted bool
		err := tx.QueryRow(ctx, `INSERT INTO objects (tenant_id, key, size, zero_since) VALUES ($1, $2, $3, now())
			ON CONFLICT (tenant_id, key) DO UPDATE
				SET zero_since = CASE WHEN objects.refcount = 0 THEN now() ELSE NULL END
			RETURNING id, xmax = 0`, tenantID, key, p.Size).Scan(&id, &inserted)
		if err != nil {
			var fk bool
			if fk = isFKViolation(err); fk {
				return notFound("tenant %d", tenantID)
			}
			return fmt.Errorf("pgrepo: create object: %w", err)
		}
		if !inserted {
			return nil
		}
		// search (0001) is left empty: no query reads it (migration 0030).
		_, err = tx.Exec(ctx, `INSERT INTO object_meta (object_id, envelope, bodystructure, body, parts, header,
				subject, from_addr, to_addr, cc_addr, bcc_addr, message_id, in_reply_to, sent_date, malformed, body_text,
				sent_day, search_words)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, array_to_tsvector($18::text[]))`,
			id, nonNil(p.Envelope), nonNil(p.BodyStructure), nonNil(p.Body), parts, nonNil(p.Header),
			p.Subject, p.From, p.To, p.Cc, p.Bcc, p.MessageID, p.InReplyTo, sent, p.Malformed, p.Text, sf.sentDay, sf.words)
		if err != nil {
			return fmt.Errorf("pgrepo: create object metadata: %w", err)
		}
		return nil
	})
	return id, err
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// GetObject reads an object's row.
func (r *Repo) GetObject(ctx context.Context, tenantID, objectID int64) (repo.Object, error) {
	o := repo.Object{ID: objectID, TenantID: tenantID}
	err := r.pool.QueryRow(ctx, `SELECT key, size, refcount FROM objects WHERE tenant_id = $1 AND id = $2`, tenantID, objectID).
		Scan(&o.Key, &o.Size, &o.RefCount)
	if errors.Is(err, pgx.ErrNoRows) {
		return o, notFound("object %d", objectID)
	}
	if err != nil {
		return o, fmt.Errorf("pgrepo: get object: %w", err)
	}
	return o, nil
}

// collectBatch bounds how long the collector holds row locks while it
// calls out to S3.
const collectBatch = 32

// Collect deletes objects unreferenced for longer than grace. Rows are
// claimed with FOR UPDATE SKIP LOCKED (several collectors share the work;
// a row being re-referenced is skipped), re-checked under the lock, the
// bytes deleted by deleteFn, and the row removed in the same transaction.
// A failed deleteFn leaves its row for the next run.
func (r *Repo) Collect(ctx context.Context, grace time.Duration, deleteFn func(ctx context.Context, tenantID int64, key string) error) (int, error) {
	total := 0
	var errs []error
	if _, err := r.pool.Exec(ctx, `DELETE FROM object_holds WHERE created_at < now() - make_interval(secs => $1)`,
		HoldLifetime.Seconds()); err != nil {
		return 0, fmt.Errorf("pgrepo: collect: expired holds: %w", err)
	}
	for {
		var claimed, done int
		err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
			claimed, done = 0, 0
			// A held object is skipped; HoldObject updates the row
			// it holds, so a hold taken while this runs either commits
			// first (the locked row is re-checked and no longer
			// qualifies) or waits for this transaction.
			rows, err := tx.Query(ctx, `SELECT id, tenant_id, key, refcount FROM objects o
				WHERE refcount = 0 AND zero_since < now() - make_interval(secs => $1)
				AND NOT EXISTS (SELECT 1 FROM object_holds h WHERE h.tenant_id = o.tenant_id AND h.key = o.key
					AND h.created_at > now() - make_interval(secs => $3))
				ORDER BY zero_since LIMIT $2 FOR UPDATE SKIP LOCKED`, grace.Seconds(), collectBatch, HoldLifetime.Seconds())
			if err != nil {
				return fmt.Errorf("pgrepo: collect: claim: %w", err)
			}
			type cand struct {
				id, tenant, refs int64
				key              string
			}
			var cands []cand
			var c cand
			if _, err := pgx.ForEachRow(rows, []any{&c.id, &c.tenant, &c.key, &c.refs}, func() error {
				cands = append(cands, c)
				return nil
			}); err != nil {
				return fmt.Errorf("pgrepo: collect: claim: %w", err)
			}
			claimed = len(cands)
			var gone []int64
			for _, c := range cands {
				if c.refs != 0 { // re-check under the lock
					continue
				}
				if err := deleteFn(ctx, c.tenant, c.key); err != nil {
					errs = append(errs, fmt.Errorf("delete object %q: %w", c.key, err))
					continue
				}
				gone = append(gone, c.id)
			}
			if len(gone) == 0 {
				return nil
			}
			tag, err := tx.Exec(ctx, `DELETE FROM objects WHERE id = ANY($1) AND refcount = 0`, gone)
			if err != nil {
				return fmt.Errorf("pgrepo: collect: delete rows: %w", err)
			}
			done = int(tag.RowsAffected())
			return nil
		})
		if err != nil {
			return total, err
		}
		total += done
		if claimed < collectBatch || done == 0 {
			break
		}
	}
	return total, errors.Join(errs...)
}

// HoldLifetime is how long a hold keeps its object at most. A queue entry
// releases its hold when it is finished, but a release that failed (the
// store down at that moment) would otherwise keep the object for ever; no
// entry lives this long (delivery's --max-queue-lifetime is 5 days by
// default). Collect ignores older holds and deletes them.
const HoldLifetime = 60 * 24 * time.Hour

// HoldObject implements repo.Objects.
func (r *Repo) HoldObject(ctx context.Context, tenantID int64, key, holder string) error {
	if key == "" || holder == "" {
		return fmt.Errorf("%w: empty object key or holder", repo.ErrInvalidName)
	}
	err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO object_holds (tenant_id, key, holder) VALUES ($1, $2, $3)
			ON CONFLICT DO NOTHING`, tenantID, key, holder); err != nil {
			return err
		}
		// Touching the row orders this with a Collect that claimed it.
		_, err := tx.Exec(ctx, `UPDATE objects SET zero_since = now()
			WHERE tenant_id = $1 AND key = $2 AND refcount = 0`, tenantID, key)
		return err
	})
	if isFKViolation(err) {
		return notFound("tenant %d", tenantID)
	}
	if err != nil {
		return fmt.Errorf("pgrepo: hold object: %w", err)
	}
	return nil
}

// ReleaseObject implements repo.Objects.
func (r *Repo) ReleaseObject(ctx context.Context, tenantID int64, key, holder string) error {
	err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM object_holds WHERE tenant_id = $1 AND key = $2 AND holder = $3`, tenantID, key, holder)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE objects SET zero_since = now()
			WHERE tenant_id = $1 AND key = $2 AND refcount = 0`, tenantID, key)
		return err
	})
	if err != nil {
		return fmt.Errorf("pgrepo: release object: %w", err)
	}
	return nil
}
