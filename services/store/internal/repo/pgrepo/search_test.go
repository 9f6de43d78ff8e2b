package pgrepo

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/petrel-mail/petrel/platform/testenv"
	"github.com/petrel-mail/petrel/services/store/internal/mimeparse"
	"github.com/petrel-mail/petrel/services/store/internal/repo"
)

func TestPrefilterQuery(t *testing.T) {
	for s, want := range map[string]string{
		"invoice":                "", // may be the tail of a longer run
		"hello world":            "('world':*) | '_unindexed'",
		" hello world ":          "('hello' & 'world') | '_unindexed'",
		"see attached notes.":    "('attached' & 'notes') | '_unindexed'",
		"shop.example.com/deals": "('example' & 'com' & 'deals':*) | '_unindexed'",
		"a b a b":                "('b' & 'a' & 'b':*) | '_unindexed'",
		"x Über":                 "",                         // non-ASCII: locale-dependent
		"x caf\u00e9":            "('caf':*) | '_unindexed'", // the run goes on, or not
		"x ĀBC y":                "('y':*) | '_unindexed'",   // "BC" follows a non-ASCII character
		"50% OFF_sale":           "('off' & 'sale':*) | '_unindexed'",
		"":                       "",
	} {
		if got := prefilterQuery(s); got != want {
			t.Errorf("prefilterQuery(%q) = %q, want %q", s, got, want)
		}
	}
}

func TestLikePattern(t *testing.T) {
	if got := likePattern(`50%_a\b`); got != `%50\%\_a\\b%` {
		t.Fatalf("likePattern = %q", got)
	}
}

// searchFixture is one account with an INBOX on a fresh database.
func searchFixture(t *testing.T) (*Repo, repo.Scope, int64) {
	t.Helper()
	ctx := context.Background()
	r := open(t, testenv.NewDatabase(t))
	t.Cleanup(r.Close)
	tn, err := r.CreateTenant(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	d, err := r.CreateDomain(ctx, tn.ID, "search.example")
	if err != nil {
		t.Fatal(err)
	}
	a, err := r.CreateAccount(ctx, tn.ID, d.ID, "u", "")
	if err != nil {
		t.Fatal(err)
	}
	s := repo.Scope{TenantID: tn.ID, AccountID: a.ID}
	mb, err := r.MailboxByName(ctx, s, repo.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	return r, s, mb.ID
}

func appendSource(t *testing.T, r *Repo, s repo.Scope, mbox int64, key, src string) uint32 {
	t.Helper()
	ctx := context.Background()
	p, err := mimeparse.Parse(strings.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	obj, err := r.CreateObject(ctx, s.TenantID, key, p)
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.Append(ctx, s, mbox, repo.AppendRequest{ObjectID: obj})
	if err != nil {
		t.Fatal(err)
	}
	return res.UID
}

// TestSearchUnindexedText: text that the word index cannot hold
// completely (a run longer than a word, more distinct words than the
// index takes) is still found through the prefilter.
func TestSearchUnindexedText(t *testing.T) {
	r, s, mbox := searchFixture(t)
	long := appendSource(t, r, s, mbox, "long-run", "Subject: a\r\n\r\nx "+strings.Repeat("a", 3000)+"zz tail\r\n")
	var many strings.Builder
	for i := 0; i*len("w0000000") <= repo.MaxIndexBytes; i++ { // distinct words
		fmt.Fprintf(&many, "w%07d ", i)
	}
	beyond := appendSource(t, r, s, mbox, "beyond", "Subject: b\r\n\r\n"+many.String()+"closing remark\r\n")
	plain := appendSource(t, r, s, mbox, "plain", "Subject: c\r\n\r\nx aaaa closing remark\r\n")
	for _, tc := range []struct {
		search string
		want   []uint32
	}{
		{" aaaa", []uint32{long, plain}},
		{" " + strings.Repeat("A", repo.MaxTermBytes), []uint32{long}}, // a prefix of the cut word
		{"aaazz tail", []uint32{long}},
		{" w0000100 ", []uint32{beyond}},
		{" closing remark", []uint32{beyond, plain}},
	} {
		got, _, err := r.Search(context.Background(), s, mbox, &repo.Criteria{Op: repo.SearchBody, Value: tc.search})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("BODY %q: got %v, want %v", tc.search, got, tc.want)
		}
	}
	// Only the text with too many words is flagged: a long run is indexed
	// by its first MaxWordBytes bytes.
	var flagged int
	if err := r.Pool().QueryRow(context.Background(),
		`SELECT count(*) FROM object_meta WHERE search_words @@ '_unindexed'::tsquery`).Scan(&flagged); err != nil || flagged != 1 {
		t.Fatalf("%d texts marked unindexed (%v), want 1", flagged, err)
	}
}

// TestSearchWordsMatchSQL: for text in characters the database's locale
// knows, repo.SearchWords gives exactly the words that migration 0020's
// SQL gave the rows written before 0050, so old and new rows answer the
// same terms.
func TestSearchWordsMatchSQL(t *testing.T) {
	r, _, _ := searchFixture(t)
	for _, text := range []string{
		"Hello, World! hello-world foo_bar x.y@example.COM http://shop.example.com/deals?id=42",
		"3rd 1e5 123abc ABC123 0x1F 007 v1.2.3 i18n",
		"ÉCOLE école Grüße STRASSE ΣΑΣ ς ǅ Ǆ İSTANBUL \u212aelvin ﬁle",
		"日本語テキスト、한국어 텍스트; русский ТЕКСТ; العربية ٣٤٥ १२३ Ⅻ ⅻ",
		"tab\tnew\nline\r\nend  — dash … ellipsis «quotes» “curly” ½ ² ①",
		"mixedСкриптText ABCабв 123абв",
		strings.Repeat("Ab", 200) + " " + strings.Repeat("z", 511),
		"",
	} {
		var sqlWords []string
		if err := r.Pool().QueryRow(context.Background(), `SELECT coalesce(array_agg(lexeme ORDER BY lexeme), '{}')
			FROM unnest(to_tsvector('simple', regexp_replace($1::text, '[^[:alnum:]]+', ' ', 'g')))`, text).Scan(&sqlWords); err != nil {
			t.Fatal(err)
		}
		// The database sorts lexemes by length, then bytes.
		goWords := repo.SearchWords(text)
		slices.Sort(goWords)
		slices.Sort(sqlWords)
		if !slices.Equal(goWords, sqlWords) {
			t.Errorf("%q:\n Go  %q\n SQL %q", text, goWords, sqlWords)
		}
	}
}

// TestSentDay: the day as written in the header's zone, as 0020's SQL
// computed it.
func TestSentDay(t *testing.T) {
	r, _, _ := searchFixture(t)
	for _, h := range []string{
		"Date: Mon, 2 Mar 2026 22:30:00 -0800\r\n",
		"Subject: x\r\ndate :\r\n Tue, 3 Mar 2026 00:30 +0100\r\n",
		"DATE: Tue, 3 Mar 2026 00:30:00 +01:00 (CET)\r\nDate: Mon, 2 Mar 2026 10:00:00 -1200\r\n",
		"Date: Tue, 3 Mar 2026 00:30:00 EST\r\n",
		"Date: Tue, 3 Mar 2026 23:59:00 GMT\r\n",
		"X-Date: Tue, 3 Mar 2026 23:59:00 -0900\r\n",
		"",
	} {
		p, err := mimeparse.Parse(strings.NewReader(h + "\r\nbody\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		if p.Date.IsZero() {
			p.Date = time.Date(2026, 3, 3, 7, 0, 0, 0, time.UTC)
		}
		var want pgtype.Date
		if err := r.Pool().QueryRow(context.Background(), `SELECT ((($1::timestamptz) AT TIME ZONE 'UTC') + coalesce(
			(SELECT (CASE WHEN z[1] = '-' THEN -1 ELSE 1 END) * make_interval(hours => z[2]::int, mins => z[3]::int)
			 FROM regexp_match(
				(regexp_match(convert_from($2::bytea, 'LATIN1'), '(?:^|\n)date[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)', 'i'))[1],
				'[0-9]:[0-9]{2}(?::[0-9]{2})?[ \t\r\n]*([+-])([0-9]{2}):?([0-9]{2})') AS z),
			interval '0'))::date`, p.Date, p.Header).Scan(&want); err != nil {
			t.Fatal(err)
		}
		if got := sentDay(p.Date, p.Header); got != want {
			t.Errorf("%q: sentDay %v, SQL %v", h, got.Time, want.Time)
		}
	}
	if got := sentDay(time.Time{}, []byte("Date: x\r\n")); got.Valid {
		t.Errorf("no date: %v", got)
	}
}

// benchVocabulary is a deterministic list of pronounceable words.
func benchVocabulary(n int) []string {
	syl := []string{"ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "be", "da", "fu", "go", "ha", "je", "pi", "ze"}
	out := make([]string, 0, n)
	for i := 0; len(out) < n; i++ {
		w := ""
		for x := i + 16; x > 0; x /= 16 {
			w += syl[x%16]
		}
		out = append(out, w)
	}
	return out
}

// populateSearch fills a mailbox with n distinct messages in a few
// set-based statements (a test helper: production inserts go through
// CreateObject and Deliver). Each body is 150 words (about 1 KiB) drawn
// from a 5,000-word vocabulary; every 100th message contains "quarterly
// invoice 2026" in its body.
func populateSearch(b *testing.B, r *Repo, s repo.Scope, mailboxID int64, n int) {
	b.Helper()
	ctx := context.Background()
	vocab := benchVocabulary(5000)
	// The bulk statements run longer than the pool's statement timeout.
	conn, err := r.Pool().Acquire(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SET statement_timeout = 0"); err != nil {
		b.Fatal(err)
	}
	defer conn.Exec(ctx, "RESET statement_timeout") //nolint:errcheck // best effort before release
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO objects (tenant_id, key, size, refcount) SELECT $1, 'bulk/' || g, 0, 1 FROM generate_series(1, $2::bigint) g`,
			[]any{s.TenantID, n}},
		{`INSERT INTO object_meta (object_id, envelope, bodystructure, body, parts, header, subject, from_addr, to_addr,
				cc_addr, bcc_addr, message_id, in_reply_to, sent_date, malformed, body_text, search, sent_day, search_words)
			SELECT o.id, '', '', '', '[]', convert_to(h.header, 'UTF8'), h.subject, h.from_addr, 'bob@example.net', '', '',
				'<' || x.g || '@bench>', '', now(), false, t.body, ''::tsvector, current_date,
				array_to_tsvector(regexp_split_to_array(t.body, ' '))
			FROM objects o
			CROSS JOIN LATERAL (SELECT substr(o.key, 6)::bigint AS g) x
			CROSS JOIN LATERAL (SELECT string_agg(($2::text[])[1 + (hashint8(x.g * 1000 + i)::bigint & 2147483647) % 5000], ' ') ||
				CASE WHEN x.g % 100 = 0 THEN ' the quarterly invoice 2026 is attached' ELSE '' END AS body
				FROM generate_series(1, 150) i) t
			CROSS JOIN LATERAL (SELECT 'Sender ' || x.g % 997 || ' <user' || x.g % 997 || '@example.com>' AS from_addr,
				'Report ' || ($2::text[])[1 + x.g % 5000] || ' ' || ($2::text[])[1 + (x.g * 7) % 5000] AS subject) s
			CROSS JOIN LATERAL (SELECT 'From: ' || s.from_addr || E'\r\nTo: bob@example.net\r\nSubject: ' || s.subject ||
				E'\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <' || x.g || E'@bench>\r\n\r\n' AS header,
				s.subject, s.from_addr) h
			WHERE o.tenant_id = $1`, []any{s.TenantID, vocab}},
		{`UPDATE objects o SET size = octet_length(m.header) + octet_length(m.body_text) FROM object_meta m
			WHERE m.object_id = o.id AND o.tenant_id = $1`, []any{s.TenantID}},
		{`INSERT INTO messages (account_id, mailbox_id, uid, modseq, flags, internal_date, size, object_id)
			SELECT $1::bigint, $2::bigint, substr(o.key, 6)::bigint, substr(o.key, 6)::bigint + 1, 0, now(), o.size, o.id
			FROM objects o WHERE o.tenant_id = $3`, []any{s.AccountID, mailboxID, s.TenantID}},
		{`UPDATE mailboxes SET uidnext = $3::bigint + 1, highestmodseq = $3::bigint + 1, messages = $3::bigint, unseen = $3::bigint,
			size = (SELECT sum(size) FROM messages WHERE account_id = $1 AND mailbox_id = $2)
			WHERE account_id = $1 AND id = $2`, []any{s.AccountID, mailboxID, n}},
		{`ANALYZE objects, object_meta, messages`, nil},
	} {
		if _, err := conn.Exec(ctx, q.sql, q.args...); err != nil {
			b.Fatalf("populate: %v", err)
		}
	}
}

// BenchmarkSearch100k runs SEARCH over a 100,000-message mailbox (1 KiB
// of text each, 1% matching). TEXT must also read every header, and a
// single word yields no prefilter term, so those are full scans of the
// mailbox; BODY with a phrase is served by the word index.
func BenchmarkSearch100k(b *testing.B) {
	const n = 100_000
	e := newBenchEnv(b, 1)
	s := e.scopes[0]
	mb, err := e.r.MailboxByName(context.Background(), s, repo.Inbox)
	if err != nil {
		b.Fatal(err)
	}
	mbox := mb.ID
	populateSearch(b, e.r, s, mbox, n)
	for _, tc := range []struct {
		name string
		c    repo.Criteria
	}{
		{"TEXT word", repo.Criteria{Op: repo.SearchText, Value: "invoice"}},
		{"TEXT phrase", repo.Criteria{Op: repo.SearchText, Value: "quarterly invoice 2026"}},
		{"BODY word", repo.Criteria{Op: repo.SearchBody, Value: "invoice"}},
		{"BODY phrase", repo.Criteria{Op: repo.SearchBody, Value: "quarterly invoice 2026"}},
	} {
		b.Run(strings.ReplaceAll(tc.name, " ", "_"), func(b *testing.B) {
			ctx := context.Background()
			b.ResetTimer()
			for b.Loop() {
				uids, _, err := e.r.Search(ctx, s, mbox, &tc.c)
				if err != nil || len(uids) != n/100 {
					b.Fatal(fmt.Sprintf("%d matches, want %d", len(uids), n/100), err)
				}
			}
		})
	}
}

// TestCleanSearchIndex: new words wait in the index's pending list until
// CleanSearchIndex merges them; SEARCH finds the message before and after.
func TestCleanSearchIndex(t *testing.T) {
	r, s, mbox := searchFixture(t)
	ctx := context.Background()
	uid := appendSource(t, r, s, mbox, "pending", "Subject: p\r\n\r\nplover sandpiper turnstone\r\n")
	body := &repo.Criteria{Op: repo.SearchBody, Value: "sandpiper"}
	if got, _, err := r.Search(ctx, s, mbox, body); err != nil || !slices.Equal(got, []uint32{uid}) {
		t.Fatalf("before the clean-up: %v %v", got, err)
	}
	n, err := r.CleanSearchIndex(ctx)
	if err != nil || n == 0 {
		t.Fatalf("first clean-up merged %d pages (%v), want some", n, err)
	}
	if n, err := r.CleanSearchIndex(ctx); err != nil || n != 0 {
		t.Fatalf("second clean-up merged %d pages (%v), want none", n, err)
	}
	if got, _, err := r.Search(ctx, s, mbox, body); err != nil || !slices.Equal(got, []uint32{uid}) {
		t.Fatalf("after the clean-up: %v %v", got, err)
	}
	var limit string
	if err := r.pool.QueryRow(ctx, `SELECT array_to_string(reloptions, ',') FROM pg_class WHERE relname = 'object_meta_search_words'`).Scan(&limit); err != nil || limit != "gin_pending_list_limit=32768" {
		t.Errorf("index options %q (%v)", limit, err)
	}
}
