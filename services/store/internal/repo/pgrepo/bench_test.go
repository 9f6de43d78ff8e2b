package pgrepo

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/petrel-mail/petrel/platform/testenv"
	"github.com/petrel-mail/petrel/services/store/internal/mimeparse"
	"github.com/petrel-mail/petrel/services/store/internal/repo"
)

type benchEnv struct {
	r      *Repo
	tenant int64
	domain int64
	scopes []repo.Scope
}

func newBenchEnv(b *testing.B, accounts int) *benchEnv {
	b.Helper()
	ctx := context.Background()
	r := open(b, testenv.NewDatabase(b))
	b.Cleanup(r.Close)
	t, err := r.CreateTenant(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	d, err := r.CreateDomain(ctx, t.ID, "bench.example")
	if err != nil {
		b.Fatal(err)
	}
	e := &benchEnv{r: r, tenant: t.ID, domain: d.ID}
	for i := range accounts {
		a, err := r.CreateAccount(ctx, t.ID, d.ID, fmt.Sprintf("u%d", i), "")
		if err != nil {
			b.Fatal(err)
		}
		e.scopes = append(e.scopes, repo.Scope{TenantID: t.ID, AccountID: a.ID})
	}
	return e
}

func parsed10K() *mimeparse.Parsed {
	text := strings.Repeat("lorem ipsum dolor sit amet consectetur ", 250) // ~10 KiB
	return &mimeparse.Parsed{
		Size:          10 << 10,
		Envelope:      []byte(`("Tue, 24 Nov 2026 10:00:00 +0000" "hello" (("A" NIL "a" "example.com")) NIL NIL ((NIL NIL "b" "example.com")) NIL NIL NIL "<1@example.com>")`),
		BodyStructure: []byte(`("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 10000 250 NIL NIL NIL NIL)`),
		Body:          []byte(`("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 10000 250)`),
		Parts:         []mimeparse.Part{{Path: "", HeaderLen: 240, BodyOffset: 240, BodyLen: 10000, ContentType: "text/plain", Lines: 250}},
		Header:        []byte("From: A <a@example.com>\r\nTo: b@example.com\r\nSubject: hello\r\n\r\n"),
		Subject:       "hello", From: "A <a@example.com>", To: "b@example.com", Text: text,
	}
}

// BenchmarkDeliver10KiB measures the delivery pipeline's database work per
// message: CreateObject (one transaction, two statements) and Deliver (one
// statement), from 8 parallel workers to 16 accounts.
func BenchmarkDeliver10KiB(b *testing.B) {
	for _, rcpts := range []int{1, 4} {
		b.Run(fmt.Sprintf("recipients=%d", rcpts), func(b *testing.B) {
			e := newBenchEnv(b, 16)
			p := parsed10K()
			var seq atomic.Int64
			ctx := context.Background()
			b.SetParallelism(4) // 2 cores: 8 workers
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					n := seq.Add(1)
					id, err := e.r.CreateObject(ctx, e.tenant, fmt.Sprintf("msg/%d", n), p)
					if err != nil {
						b.Error(err)
						return
					}
					var to []int64
					for i := range rcpts {
						to = append(to, e.scopes[(int(n)+i)%len(e.scopes)].AccountID)
					}
					res, err := e.r.Deliver(ctx, repo.Delivery{TenantID: e.tenant, DeliveryID: fmt.Sprint(n), Recipients: to, ObjectID: id})
					if err != nil || res[0].Err != nil {
						b.Errorf("deliver: %v %+v", err, res)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric(float64(b.N*rcpts)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}

// populate fills a mailbox with n messages in one set-based statement (a
// test helper: production inserts go through Append/Deliver).
func populate(b *testing.B, e *benchEnv, s repo.Scope, mailboxID int64, n int) {
	b.Helper()
	ctx := context.Background()
	obj, err := e.r.CreateObject(ctx, s.TenantID, "bulk", parsed10K())
	if err != nil {
		b.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO messages (account_id, mailbox_id, uid, modseq, flags, internal_date, size, object_id)
		 SELECT $1::bigint, $2::bigint, g, g + 1, CASE WHEN g % 3 = 0 THEN 0 ELSE 1 END, now(), 10240, $3 FROM generate_series(1, $4::bigint) g`,
		`UPDATE mailboxes SET uidnext = $4::bigint + 1, highestmodseq = $4::bigint + 1, messages = $4::bigint, size = $4::bigint * 10240,
		 unseen = (SELECT count(*) FROM messages WHERE account_id = $1 AND mailbox_id = $2 AND flags & 1 = 0)
		 WHERE account_id = $1 AND id = $2 AND $3::bigint > 0`,
		`UPDATE objects SET refcount = $4::bigint, zero_since = NULL WHERE id = $3 AND $1::bigint > 0 AND $2::bigint > 0`,
		`UPDATE accounts SET used_messages = $4::bigint, used_bytes = $4::bigint * 10240 WHERE id = $1 AND $2::bigint > 0 AND $3::bigint > 0`,
		`ANALYZE messages`,
	} {
		args := []any{s.AccountID, mailboxID, obj, int64(n)}
		if strings.HasPrefix(q, "ANALYZE") {
			args = nil
		}
		if _, err := e.r.Pool().Exec(ctx, q, args...); err != nil {
			b.Fatalf("populate: %v", err)
		}
	}
}

func bigMailbox(b *testing.B) (*benchEnv, repo.Scope, int64) {
	e := newBenchEnv(b, 1)
	s := e.scopes[0]
	mb, err := e.r.MailboxByName(context.Background(), s, "INBOX")
	if err != nil {
		b.Fatal(err)
	}
	populate(b, e, s, mb.ID, 100_000)
	return e, s, mb.ID
}

// BenchmarkOpen100k is SELECT of a 100,000-message mailbox: the state row
// and the complete UID list (as ranges).
func BenchmarkOpen100k(b *testing.B) {
	e, s, id := bigMailbox(b)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		mb, err := e.r.MailboxByID(ctx, s, id)
		if err != nil || mb.Messages != 100_000 {
			b.Fatal(mb, err)
		}
		rs, err := e.r.UIDs(ctx, s, id)
		if err != nil || len(rs) != 1 {
			b.Fatal(rs, err)
		}
	}
}

// BenchmarkFetchFlags100k is FETCH 1:* (UID FLAGS MODSEQ) of 100,000
// messages.
func BenchmarkFetchFlags100k(b *testing.B) {
	e, s, id := bigMailbox(b)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		n := 0
		err := e.r.FetchMeta(ctx, s, id, nil, repo.FetchFlags, 0, func(*repo.MessageMeta) error { n++; return nil })
		if err != nil || n != 100_000 {
			b.Fatal(n, err)
		}
	}
}

// BenchmarkChangesSinceNoChanges is a QRESYNC reconnect with nothing new.
func BenchmarkChangesSinceNoChanges(b *testing.B) {
	e, s, id := bigMailbox(b)
	ctx := context.Background()
	mb, _ := e.r.MailboxByID(ctx, s, id)
	b.ResetTimer()
	for b.Loop() {
		ch, err := e.r.ChangesSince(ctx, s, id, mb.HighestModSeq)
		if err != nil || len(ch.Changed) != 0 {
			b.Fatal(ch, err)
		}
	}
}
