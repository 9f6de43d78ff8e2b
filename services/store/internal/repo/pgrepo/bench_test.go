package pgrepo

import (
	"context"
	"fmt"
	"strings"
	"sync"
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
	e := processBenchEnv(b, accounts)
	b.Cleanup(e.r.Close)
	return e
}

// processBenchEnv is a benchmark environment that lives as long as the
// process (its database is dropped by testenv.Main).
func processBenchEnv(b *testing.B, accounts int) *benchEnv {
	b.Helper()
	ctx := context.Background()
	r := open(b, testenv.NewDatabase(b))
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
// message, from 8 parallel workers to 16 accounts. oneCall is what the
// store does: Deliver with NewObject, one statement and one round trip
// recording the object and linking it. twoCalls is the former path:
// CreateObject (a transaction of two statements) then Deliver.
func BenchmarkDeliver10KiB(b *testing.B) {
	for _, tc := range []struct {
		name     string
		rcpts    int
		twoCalls bool
	}{{"oneCall/recipients=1", 1, false}, {"oneCall/recipients=4", 4, false}, {"twoCalls/recipients=1", 1, true}} {
		b.Run(tc.name, func(b *testing.B) {
			e := newBenchEnv(b, 16)
			p := parsed10K()
			var seq atomic.Int64
			ctx := context.Background()
			b.SetParallelism(4) // 2 cores: 8 workers
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					n := seq.Add(1)
					key := fmt.Sprintf("msg/%d", n)
					d := repo.Delivery{TenantID: e.tenant, DeliveryID: fmt.Sprint(n), NewObject: &repo.NewObject{Key: key, Parsed: p}}
					if tc.twoCalls {
						id, err := e.r.CreateObject(ctx, e.tenant, key, p)
						if err != nil {
							b.Error(err)
							return
						}
						d.NewObject, d.ObjectID = nil, id
					}
					for i := range tc.rcpts {
						d.Recipients = append(d.Recipients, e.scopes[(int(n)+i)%len(e.scopes)].AccountID)
					}
					res, err := e.r.Deliver(ctx, d)
					if err != nil || res[0].Err != nil {
						b.Errorf("deliver: %v %+v", err, res)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric(float64(b.N*tc.rcpts)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}

// populate fills a mailbox with the UIDs 1..n, leaving out every gapEvery-th
// (0: none, a dense mailbox), in one set-based statement (a test helper:
// production inserts go through Append/Deliver).
func populate(b *testing.B, e *benchEnv, s repo.Scope, mailboxID int64, n, gapEvery int) int64 {
	b.Helper()
	ctx := context.Background()
	obj, err := e.r.CreateObject(ctx, s.TenantID, fmt.Sprintf("bulk/%d", mailboxID), parsed10K())
	if err != nil {
		b.Fatal(err)
	}
	var count int64
	for _, q := range []string{
		`INSERT INTO messages (account_id, mailbox_id, uid, modseq, flags, internal_date, size, object_id)
		 SELECT $1::bigint, $2::bigint, g, g + 1, CASE WHEN g % 3 = 0 THEN 0 ELSE 1 END, now(), 10240, $3 FROM generate_series(1, $4::bigint) g
		 WHERE $5::bigint = 0 OR g % $5::bigint <> 0`,
		`UPDATE mailboxes SET uidnext = $4::bigint + 1, highestmodseq = $4::bigint + 1,
		 messages = (SELECT count(*) FROM messages WHERE account_id = $1 AND mailbox_id = $2),
		 size = 10240 * (SELECT count(*) FROM messages WHERE account_id = $1 AND mailbox_id = $2),
		 unseen = (SELECT count(*) FROM messages WHERE account_id = $1 AND mailbox_id = $2 AND flags & 1 = 0)
		 WHERE account_id = $1 AND id = $2 AND $3::bigint > 0 AND $5::bigint >= 0`,
		`UPDATE objects SET refcount = (SELECT count(*) FROM messages WHERE account_id = $1 AND mailbox_id = $2), zero_since = NULL
		 WHERE id = $3 AND $4::bigint > 0 AND $5::bigint >= 0`,
	} {
		if _, err := e.r.Pool().Exec(ctx, q, s.AccountID, mailboxID, obj, int64(n), int64(gapEvery)); err != nil {
			b.Fatalf("populate: %v", err)
		}
	}
	if err := e.r.Pool().QueryRow(ctx, `SELECT messages FROM mailboxes WHERE account_id = $1 AND id = $2`, s.AccountID, mailboxID).Scan(&count); err != nil {
		b.Fatal(err)
	}
	if _, err := e.r.Pool().Exec(ctx, `UPDATE accounts SET used_messages = used_messages + $2, used_bytes = used_bytes + $2 * 10240 WHERE id = $1`,
		s.AccountID, count); err != nil {
		b.Fatal(err)
	}
	return count
}

// bigEnv is one account with a dense 100,000-message INBOX and a
// "Gaps" mailbox of 100,000 UIDs less every tenth (90,000 messages in
// 10,000 ranges), built once per benchmark process: filling them takes
// longer than the benchmarks that read them.
var bigEnv struct {
	once   sync.Once
	e      *benchEnv
	s      repo.Scope
	inbox  int64
	gaps   int64
	failed bool
}

func bigMailbox(b *testing.B) (*benchEnv, repo.Scope, int64) {
	b.Helper()
	bigEnv.once.Do(func() {
		bigEnv.failed = true
		e := processBenchEnv(b, 1)
		s := e.scopes[0]
		ctx := context.Background()
		inbox, err := e.r.MailboxByName(ctx, s, "INBOX")
		if err != nil {
			b.Fatal(err)
		}
		gaps, err := e.r.CreateMailbox(ctx, s, "Gaps", "")
		if err != nil {
			b.Fatal(err)
		}
		populate(b, e, s, inbox.ID, 100_000, 0)
		populate(b, e, s, gaps.ID, 100_000, 10)
		// The steady state of a mailbox: autovacuum has set the
		// visibility map (insert-driven autovacuum, PostgreSQL 13+), so
		// the UID scan is index-only without heap visits.
		if _, err := e.r.Pool().Exec(ctx, `VACUUM (ANALYZE) messages`); err != nil {
			b.Fatal(err)
		}
		bigEnv.e, bigEnv.s, bigEnv.inbox, bigEnv.gaps = e, s, inbox.ID, gaps.ID
		bigEnv.failed = false
	})
	if bigEnv.failed {
		b.Fatal("the 100,000-message mailbox could not be built")
	}
	return bigEnv.e, bigEnv.s, bigEnv.inbox
}

// BenchmarkOpen100k is SELECT of a 100,000-message mailbox: the state row
// and the complete UID list (as ranges), two round trips. gaps=10 is a
// mailbox with every tenth UID expunged (10,000 ranges).
func BenchmarkOpen100k(b *testing.B) {
	e, s, inbox := bigMailbox(b)
	for _, tc := range []struct {
		name           string
		id             int64
		count, nRanges int
	}{{"dense", inbox, 100_000, 1}, {"gaps=10", bigEnv.gaps, 90_000, 10_000}} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			for b.Loop() {
				mb, err := e.r.MailboxByID(ctx, s, tc.id)
				if err != nil || mb.Messages != int64(tc.count) {
					b.Fatal(mb, err)
				}
				rs, err := e.r.UIDs(ctx, s, tc.id)
				if err != nil || len(rs) != tc.nRanges {
					b.Fatal(len(rs), err)
				}
			}
		})
	}
}

// BenchmarkFetchFlags100k is FETCH 1:* (UID FLAGS MODSEQ) of 100,000
// messages.
func BenchmarkFetchFlags100k(b *testing.B) {
	e, s, id := bigMailbox(b)
	ctx := context.Background()
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
	for b.Loop() {
		ch, err := e.r.ChangesSince(ctx, s, id, mb.HighestModSeq)
		if err != nil || len(ch.Changed) != 0 {
			b.Fatal(ch, err)
		}
	}
}
