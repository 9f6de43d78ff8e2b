package pgrepo

// SEARCH (RFC 9051 §6.4.4, RFC 7162 §3.1.5): a criteria tree becomes one
// SELECT over the mailbox's messages, every user-supplied value a bind
// parameter. See repo.Criteria for the matching rules.
//
// # Substring matching and the word index
//
// IMAP string keys are case-insensitive substring matches, so the final
// test is always ILIKE '%s%' (with '\', '%' and '_' escaped) on the stored
// decoded text. BODY and TEXT first narrow the candidates with the GIN
// index on object_meta.search_words, which holds the words of the body
// text (repo.SearchWords, computed in Go when the object is recorded,
// migration 0050; rows from before were tokenized by SQL with the same
// rules, migration 0020). The prefilter asks only for the terms that a
// substring match guarantees (repo.SearchTerms: ASCII runs bounded by
// ASCII non-word characters, whole or as prefixes), so the database never
// tokenizes a search string either.
//
// A search string without such a run ("invoice": it may be the tail of a
// longer word) gets no prefilter and is checked by ILIKE alone over the
// mailbox.
// Texts the index does not cover carry the '_unindexed' word, which the
// prefilter always accepts, so the index never hides a match.

import (
	"context"
	"fmt"
	"math"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/petrel-mail/petrel/services/store/internal/repo"
)

var _ repo.Searcher = (*Repo)(nil)

// Search evaluates c over a mailbox in one statement.
func (r *Repo) Search(ctx context.Context, s repo.Scope, mailboxID int64, c *repo.Criteria) ([]uint32, uint64, error) {
	if err := c.Validate(); err != nil {
		return nil, 0, err
	}
	q := &searchQuery{args: []any{s.TenantID, s.AccountID, mailboxID}}
	where := q.expr(c)
	join := ""
	if q.meta {
		join = " JOIN object_meta om ON om.object_id = m.object_id"
	}
	rows, err := r.pool.Query(ctx, `SELECT m.uid, m.modseq
		FROM mailboxes b
		JOIN messages m ON m.account_id = b.account_id AND m.mailbox_id = b.id`+join+`
		WHERE b.tenant_id = $1 AND b.account_id = $2 AND b.id = $3 AND `+where+`
		ORDER BY m.uid`, q.args...)
	if err != nil {
		return nil, 0, fmt.Errorf("pgrepo: search: %w", err)
	}
	var uids []uint32
	var highest uint64
	var uid, modseq int64
	if _, err := pgx.ForEachRow(rows, []any{&uid, &modseq}, func() error {
		uids = append(uids, uint32(uid))
		highest = max(highest, uint64(modseq))
		return nil
	}); err != nil {
		return nil, 0, fmt.Errorf("pgrepo: search: %w", err)
	}
	if uids == nil {
		// No match, or not the caller's mailbox: only the latter is an error.
		if err := r.mailboxMissing(ctx, s, mailboxID); err != nil {
			return nil, 0, err
		}
	}
	return uids, highest, nil
}

// searchQuery accumulates the WHERE expression's bind parameters. $1 is
// the tenant, $2 the account, $3 the mailbox.
type searchQuery struct {
	args []any
	meta bool // the expression reads object_meta (alias om)
}

func (q *searchQuery) arg(v any) string {
	q.args = append(q.args, v)
	return fmt.Sprintf("$%d", len(q.args))
}

// expr returns a boolean SQL expression that is never NULL, so that NOT
// of a key is exactly the messages the key does not match.
func (q *searchQuery) expr(c *repo.Criteria) string {
	switch c.Op {
	case repo.SearchAll:
		return "true"
	case repo.SearchAnd, repo.SearchOr:
		op := " AND "
		if c.Op == repo.SearchOr {
			op = " OR "
		}
		parts := make([]string, len(c.Children))
		for i, ch := range c.Children {
			parts[i] = q.expr(ch)
		}
		return "(" + strings.Join(parts, op) + ")"
	case repo.SearchNot:
		return "(NOT " + q.expr(c.Children[0]) + ")"
	case repo.SearchFlag:
		return q.flag(c.Flag)
	case repo.SearchUIDs:
		return q.uids(c.UIDs)
	case repo.SearchHeader:
		return q.header(c.Field, c.Value)
	case repo.SearchBody:
		q.meta = true
		return q.body(c.Value)
	case repo.SearchText:
		q.meta = true
		p := q.arg(likePattern(c.Value))
		return "(convert_from(om.header, 'LATIN1') ILIKE " + q.arg(latin1(likePattern(c.Value))) +
			" OR om.subject ILIKE " + p + " OR om.from_addr ILIKE " + p + " OR om.to_addr ILIKE " + p +
			" OR om.cc_addr ILIKE " + p + " OR om.bcc_addr ILIKE " + p + " OR " + q.body(c.Value) + ")"
	case repo.SearchInternalDate:
		// RFC 9051 §6.4.4 compares dates "disregarding time and timezone";
		// the store's time zone is UTC.
		return "((m.internal_date AT TIME ZONE 'UTC')::date " + dateOp(c.DateOp) + " " + q.arg(day(c)) + "::date)"
	case repo.SearchSentDate:
		q.meta = true
		return "coalesce(om.sent_day " + dateOp(c.DateOp) + " " + q.arg(day(c)) + "::date, false)"
	case repo.SearchLarger:
		return "(m.size > " + q.arg(c.Size) + ")"
	case repo.SearchSmaller:
		return "(m.size < " + q.arg(c.Size) + ")"
	case repo.SearchModSeq:
		if c.ModSeq > math.MaxInt64 {
			return "false"
		}
		return "(m.modseq >= " + q.arg(int64(c.ModSeq)) + ")"
	case repo.SearchRecent:
		return "(m.uid > b.recent_uid)"
	}
	// Validate rejected every other Op.
	panic(fmt.Sprintf("pgrepo: search: unvalidated key %d", c.Op))
}

var systemFlagBits = map[string]repo.SystemFlags{
	`\seen`: repo.FlagSeen, `\answered`: repo.FlagAnswered, `\flagged`: repo.FlagFlagged,
	`\deleted`: repo.FlagDeleted, `\draft`: repo.FlagDraft,
}

func (q *searchQuery) flag(name string) string {
	if strings.HasPrefix(name, `\`) {
		lower := strings.ToLower(name)
		if lower == `\recent` {
			return "(m.uid > b.recent_uid)"
		}
		if bit, ok := systemFlagBits[lower]; ok {
			return fmt.Sprintf("(m.flags & %d <> 0)", bit)
		}
		return "false" // no message carries an unknown system flag
	}
	// The keyword's id is looked up once (an uncorrelated sub-select); an
	// unknown keyword gives an empty array, which overlaps nothing.
	return "(m.keywords && ARRAY(SELECT k.id FROM keywords k WHERE k.account_id = $2 AND lower(k.name) = lower(" + q.arg(name) + ")))"
}

// uids matches a UID set. '*' (0 in a range) is the mailbox's largest UID
// (RFC 9051 §9): "n:*" covers the UIDs from min(n, largest) up, so every
// range with a '*' reduces to uid >= least(n, largest).
func (q *searchQuery) uids(set repo.UIDSet) string {
	var lo, hi []int64
	star := int64(-1)
	for _, rg := range set {
		a, b := int64(rg.Start), int64(rg.Stop)
		if a == 0 || b == 0 {
			n := max(a, b) // the other end, or 0 for "*" alone
			if n == 0 {
				n = maxUID
			}
			if star < 0 || n < star {
				star = n
			}
			continue
		}
		lo, hi = append(lo, min(a, b)), append(hi, max(a, b))
	}
	var parts []string
	if len(lo) > 0 {
		parts = append(parts, "EXISTS (SELECT 1 FROM unnest("+q.arg(lo)+"::bigint[], "+q.arg(hi)+
			"::bigint[]) AS r(lo, hi) WHERE m.uid BETWEEN r.lo AND r.hi)")
	}
	if star >= 0 {
		parts = append(parts, "m.uid >= least("+q.arg(star)+
			"::bigint, (SELECT max(x.uid) FROM messages x WHERE x.account_id = $2 AND x.mailbox_id = $3))")
	}
	return "(" + strings.Join(parts, " OR ") + ")"
}

// decodedFields are the header fields matched on their decoded values.
var decodedFields = map[string]string{
	"subject": "om.subject", "from": "om.from_addr", "to": "om.to_addr", "cc": "om.cc_addr", "bcc": "om.bcc_addr",
}

// header matches HEADER field value. The raw header block is read as
// LATIN1 (every octet one character, so 8-bit headers never fail to
// convert), unfolded (RFC 5322 §2.2.3) and split into fields; the pattern
// is converted the same way, so UTF-8 values match octet for octet.
func (q *searchQuery) header(field, value string) string {
	q.meta = true
	if col, ok := decodedFields[strings.ToLower(field)]; ok && value != "" {
		return "(" + col + " ILIKE " + q.arg(likePattern(value)) + ")"
	}
	cond := ""
	if value != "" {
		cond = " AND substr(l.line, strpos(l.line, ':') + 1) ILIKE " + q.arg(latin1(likePattern(value)))
	}
	return `EXISTS (SELECT 1 FROM regexp_split_to_table(regexp_replace(convert_from(om.header, 'LATIN1'), '\r?\n(?=[ \t])', '', 'g'), '\r?\n') AS l(line)
		WHERE strpos(l.line, ':') > 0 AND lower(rtrim(split_part(l.line, ':', 1), E' \t')) = lower(` + q.arg(field) + ")" + cond + ")"
}

// body matches BODY value: the word-index prefilter when the string
// yields terms, then the exact substring test.
func (q *searchQuery) body(value string) string {
	like := "om.body_text ILIKE " + q.arg(likePattern(value))
	if tsq := prefilterQuery(value); tsq != "" {
		return "(om.search_words @@ " + q.arg(tsq) + "::tsquery AND " + like + ")"
	}
	return "(" + like + ")"
}

// prefilterQuery returns the tsquery (in tsquery input syntax) that every
// text containing s satisfies, or "" if s guarantees no term: the terms of
// repo.SearchTerms, or the '_unindexed' marker.
func prefilterQuery(s string) string {
	terms := repo.SearchTerms(s)
	if len(terms) == 0 {
		return ""
	}
	parts := make([]string, len(terms))
	for i, t := range terms {
		parts[i] = "'" + t.Word + "'" // only [a-z0-9]: nothing to quote
		if t.Prefix {
			parts[i] += ":*"
		}
	}
	return "(" + strings.Join(parts, " & ") + ") | '" + repo.UnindexedWord + "'"
}

// likePattern makes s a case-insensitive substring pattern: LIKE's
// metacharacters (and its escape character) match literally.
func likePattern(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 4)
	b.WriteByte('%')
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\', '%', '_':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('%')
	return b.String()
}

// latin1 reinterprets s's octets as LATIN1 characters, as the raw header
// is read in SQL.
func latin1(s string) string {
	r := make([]rune, len(s))
	for i := 0; i < len(s); i++ {
		r[i] = rune(s[i])
	}
	return string(r)
}

func dateOp(op repo.DateOp) string {
	switch op {
	case repo.DateBefore:
		return "<"
	case repo.DateOn:
		return "="
	}
	return ">="
}

// day is the calendar day of the criteria's date, as written.
func day(c *repo.Criteria) string { return c.Date.Format("2006-01-02") }
