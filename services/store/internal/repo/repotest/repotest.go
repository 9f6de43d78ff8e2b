// Package repotest is the conformance suite of repo.Repository: every
// implementation (PostgreSQL, the embedded engine of standalone mode) runs
// Run against a real engine. The tests check the invariants the IMAP and
// delivery paths rely on: UID/MODSEQ order under concurrency (RFC 9051
// §2.3.1.1, RFC 7162 §3.1), idempotent delivery, single-instance objects
// with exact reference counts and a collector that cannot race a new
// reference, quota, isolation between tenants and accounts, and the
// mailbox rules of RFC 9051 §6.3.
package repotest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrel-mail/petrel/services/store/internal/mimeparse"
	"github.com/petrel-mail/petrel/services/store/internal/repo"
)

// Factory returns a new, empty repository for one test; the test closes it.
type Factory func(t *testing.T) repo.Repository

// Run runs the suite.
func Run(t *testing.T, newRepo Factory) {
	tests := []struct {
		name string
		fn   func(t *testing.T, f Factory)
	}{
		{"ConcurrentAppendUIDOrder", testConcurrentAppend},
		{"DeliverIdempotent", testDeliverIdempotent},
		{"DeliverBatch", testDeliverBatch},
		{"DeliverManyRecipientsOneObject", testDeliverManyRecipients},
		{"DeliverNewObject", testDeliverNewObject}, {"DeliverHeaderPrefix", testDeliverHeaderPrefix},
		{"ExpungeReleasesAndCollectorDeletes", testExpungeCollect},
		{"CollectorRacesDelivery", testCollectorRace},
		{"HeldObjectIsNotCollected", testHeldObject},
		{"Quota", testQuota},
		{"Isolation", testIsolation},
		{"ListPatterns", testList},
		{"RenameWithChildren", testRenameChildren},
		{"RenameInbox", testRenameInbox},
		{"DeleteAndUIDValidity", testDeleteUIDValidity},
		{"StoreFlagsUnchangedSince", testStoreUnchangedSince},
		{"ChangesSince", testChangesSince},
		{"CopyMove", testCopyMove},
		{"Keywords", testKeywords},
		{"KeywordList", testKeywordList},
		{"LookupAddress", testLookup},
		{"Admin", testAdmin},
		{"Search", testSearch}, {"SearchInvalid", testSearchInvalid},
		{"DKIMKeys", testDKIM},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newRepo) })
	}
}

type env struct {
	r      repo.Repository
	tenant repo.Tenant
	domain repo.Domain
	n      atomic.Int64
}

func newEnv(t *testing.T, f Factory) *env {
	t.Helper()
	r := f(t)
	t.Cleanup(r.Close)
	ctx := context.Background()
	e := &env{r: r}
	var err error
	if e.tenant, err = r.CreateTenant(ctx, "tenant-"+t.Name()); err != nil {
		t.Fatal(err)
	}
	if e.domain, err = r.CreateDomain(ctx, e.tenant.ID, fmt.Sprintf("d%d.example", e.tenant.ID)); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) account(t *testing.T) repo.Scope {
	t.Helper()
	a, err := e.r.CreateAccount(context.Background(), e.tenant.ID, e.domain.ID, fmt.Sprintf("user%d", e.n.Add(1)), "$argon2id$x")
	if err != nil {
		t.Fatal(err)
	}
	return repo.Scope{TenantID: a.TenantID, AccountID: a.ID}
}

func (e *env) object(t *testing.T, size int64) int64 {
	t.Helper()
	p := &mimeparse.Parsed{
		Size: size, Envelope: []byte(`(NIL "hi" NIL NIL NIL NIL NIL NIL NIL NIL)`),
		BodyStructure: []byte(`("text" "plain" NIL NIL NIL "7bit" 2 1)`), Body: []byte(`("text" "plain" NIL NIL NIL "7bit" 2 1)`),
		Parts:  []mimeparse.Part{{Path: "", HeaderLen: 10, BodyOffset: 10, BodyLen: size - 10, ContentType: "text/plain"}},
		Header: []byte("Subject: hi\r\n\r\n"), Subject: "hi", From: "a@b.c", To: "d@e.f", Text: "hello world",
	}
	id, err := e.r.CreateObject(context.Background(), e.tenant.ID, fmt.Sprintf("obj/%d", e.n.Add(1)), p)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func (e *env) inbox(t *testing.T, s repo.Scope) repo.Mailbox {
	t.Helper()
	mb, err := e.r.MailboxByName(context.Background(), s, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	return mb
}

func (e *env) appendN(t *testing.T, s repo.Scope, mbox int64, n int, flags repo.SystemFlags) []uint32 {
	t.Helper()
	var uids []uint32
	for range n {
		res, err := e.r.Append(context.Background(), s, mbox, repo.AppendRequest{ObjectID: e.object(t, 1000), Flags: repo.Flags{System: flags}})
		if err != nil {
			t.Fatal(err)
		}
		uids = append(uids, res.UID)
	}
	return uids
}

func fetchAll(t *testing.T, r repo.Repository, s repo.Scope, mbox int64, fields repo.FetchFields) []repo.MessageMeta {
	t.Helper()
	var out []repo.MessageMeta
	err := r.FetchMeta(context.Background(), s, mbox, nil, fields, 0, func(m *repo.MessageMeta) error {
		out = append(out, *m)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkCounters asserts that the mailbox row's counters and the account's
// usage agree with a recount.
func checkCounters(t *testing.T, r repo.Repository, s repo.Scope) {
	t.Helper()
	rep, err := r.RecomputeUsage(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Before != rep.After || rep.MailboxesFixed != 0 {
		t.Fatalf("counters drifted: before %+v after %+v, %d mailboxes fixed", rep.Before, rep.After, rep.MailboxesFixed)
	}
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got %v, want %v", what, err, target)
	}
}

func testConcurrentAppend(t *testing.T, f Factory) {
	e := newEnv(t, f)
	s := e.account(t)
	mb := e.inbox(t, s)
	const writers, each = 50, 4
	objs := make([]int64, writers)
	for i := range objs {
		objs[i] = e.object(t, 100)
	}
	ctx := context.Background()
	stop := make(chan struct{})
	readerErr := make(chan error, 1)
	go func() {
		// Visibility must be monotonic and gap-free: every poll sees
		// exactly 1..k for a non-decreasing k.
		last := uint32(0)
		for {
			select {
			case <-stop:
				readerErr <- nil
				return
			default:
			}
			rs, err := e.r.UIDs(ctx, s, mb.ID)
			if err != nil && !errors.Is(err, repo.ErrNotFound) {
				readerErr <- err
				return
			}
			if len(rs) > 1 || (len(rs) == 1 && rs[0].Start != 1) {
				readerErr <- fmt.Errorf("reader saw a gap: %v", rs)
				return
			}
			if len(rs) == 1 {
				if rs[0].Stop < last {
					readerErr <- fmt.Errorf("reader went back from %d to %d", last, rs[0].Stop)
					return
				}
				last = rs[0].Stop
			}
		}
	}()
	var wg sync.WaitGroup
	results := make(chan repo.AppendResult, writers*each)
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				res, err := e.r.Append(ctx, s, mb.ID, repo.AppendRequest{ObjectID: objs[w]})
				if err != nil {
					errs <- err
					return
				}
				results <- res
			}
		}()
	}
	wg.Wait()
	close(stop)
	close(results)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := <-readerErr; err != nil {
		t.Fatal(err)
	}
	var uids []uint32
	for r := range results {
		uids = append(uids, r.UID)
	}
	slices.Sort(uids)
	for i, u := range uids {
		if u != uint32(i+1) {
			t.Fatalf("UIDs are not 1..N: position %d has %d", i, u)
		}
	}
	msgs := fetchAll(t, e.r, s, mb.ID, repo.FetchFlags)
	if len(msgs) != writers*each {
		t.Fatalf("%d messages, want %d", len(msgs), writers*each)
	}
	for i := 1; i < len(msgs); i++ {
		if msgs[i].ModSeq <= msgs[i-1].ModSeq {
			t.Fatalf("MODSEQ not increasing with UID: UID %d has %d, UID %d has %d",
				msgs[i-1].UID, msgs[i-1].ModSeq, msgs[i].UID, msgs[i].ModSeq)
		}
	}
	after, _ := e.r.MailboxByID(ctx, s, mb.ID)
	if after.UIDNext != writers*each+1 || after.Messages != writers*each || after.HighestModSeq != msgs[len(msgs)-1].ModSeq {
		t.Fatalf("mailbox state %+v", after)
	}
	for _, o := range objs {
		obj, _ := e.r.GetObject(ctx, s.TenantID, o)
		if obj.RefCount != each {
			t.Fatalf("object %d refcount %d, want %d", o, obj.RefCount, each)
		}
	}
	checkCounters(t, e.r, s)
}

// testDeliverBatch: a batch gives each delivery its own outcome, in
// request order; a delivery that fails (an object that does not exist)
// fails alone; concurrent batches to overlapping mailboxes and a repeated
// batch give one copy each.
func testDeliverBatch(t *testing.T, f Factory) {
	e := newEnv(t, f)
	ctx := context.Background()
	accts := []repo.Scope{e.account(t), e.account(t), e.account(t)}
	var ds []repo.Delivery
	for i := range 6 {
		// Descending accounts: the batch reorders them, the results must not.
		a := accts[len(accts)-1-i%len(accts)]
		ds = append(ds, repo.Delivery{TenantID: e.tenant.ID, DeliveryID: fmt.Sprintf("batch-%d", i),
			Recipients: []int64{a.AccountID}, ObjectID: e.object(t, 100)})
	}
	bad := repo.Delivery{TenantID: e.tenant.ID, DeliveryID: "batch-bad", Recipients: []int64{accts[0].AccountID}, ObjectID: 1 << 40}
	ds = append(ds[:3], append([]repo.Delivery{bad}, ds[3:]...)...)
	check := func(round int, out [][]repo.DeliveryResult, errs []error, dup bool) {
		t.Helper()
		if len(out) != len(ds) || len(errs) != len(ds) {
			t.Fatalf("round %d: %d results, %d errors for %d deliveries", round, len(out), len(errs), len(ds))
		}
		for i, d := range ds {
			if d.DeliveryID == "batch-bad" {
				wantErr(t, "delivery of a missing object", errs[i], repo.ErrNotFound)
				continue
			}
			if errs[i] != nil || len(out[i]) != 1 || out[i][0].Err != nil || out[i][0].AccountID != d.Recipients[0] || out[i][0].Duplicate != dup {
				t.Fatalf("round %d delivery %d: %+v, %v", round, i, out[i], errs[i])
			}
		}
	}
	out, errs := e.r.DeliverBatch(ctx, ds)
	check(1, out, errs, false)
	out, errs = e.r.DeliverBatch(ctx, ds)
	check(2, out, errs, true)
	for _, a := range accts {
		if mb := e.inbox(t, a); mb.Messages != 2 {
			t.Fatalf("account %d INBOX has %d messages, want 2", a.AccountID, mb.Messages)
		}
		checkCounters(t, e.r, a)
	}

	// Concurrent batches over the same mailboxes, in opposite orders.
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			var b []repo.Delivery
			for i := range 6 {
				a := accts[(i+w)%len(accts)]
				b = append(b, repo.Delivery{TenantID: e.tenant.ID, DeliveryID: fmt.Sprintf("conc-%d-%d", w, i),
					Recipients: []int64{a.AccountID, accts[(i+w+1)%len(accts)].AccountID}, ObjectID: e.object(t, 10)})
			}
			_, errs := e.r.DeliverBatch(ctx, b)
			for i, err := range errs {
				if err != nil {
					t.Errorf("batch %d delivery %d: %v", w, i, err)
				}
			}
		})
	}
	wg.Wait()
	total := 0
	for _, a := range accts {
		total += int(e.inbox(t, a).Messages)
		checkCounters(t, e.r, a)
	}
	if total != 6+4*6*2 {
		t.Fatalf("%d messages in all, want %d", total, 6+4*6*2)
	}
}

func testDeliverIdempotent(t *testing.T, f Factory) {
	e := newEnv(t, f)
	s := e.account(t)
	ctx := context.Background()
	obj := e.object(t, 500)
	d := repo.Delivery{TenantID: s.TenantID, DeliveryID: "queue-1", Recipients: []int64{s.AccountID}, ObjectID: obj}
	first, err := e.r.Deliver(ctx, d)
	if err != nil || len(first) != 1 || first[0].Err != nil || first[0].Duplicate {
		t.Fatalf("first delivery: %+v %v", first, err)
	}
	// Concurrent and sequential repeats all return the first entry.
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			again, err := e.r.Deliver(ctx, d)
			if err != nil || len(again) != 1 || !again[0].Duplicate || again[0].UID != first[0].UID || again[0].UIDValidity != first[0].UIDValidity {
				t.Errorf("repeat delivery: %+v %v", again, err)
			}
		}()
	}
	wg.Wait()
	mb := e.inbox(t, s)
	if mb.Messages != 1 {
		t.Fatalf("INBOX has %d messages after a repeated delivery", mb.Messages)
	}
	o, _ := e.r.GetObject(ctx, s.TenantID, obj)
	q, _ := e.r.GetQuota(ctx, s)
	if o.RefCount != 1 || q.UsedMessages != 1 || q.UsedBytes != 500 {
		t.Fatalf("refcount %d, usage %+v", o.RefCount, q)
	}
	// Two deliveries racing for the first copy still give one.
	d.DeliveryID = "queue-2"
	var dup atomic.Int32
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := e.r.Deliver(ctx, d)
			if err != nil || res[0].Err != nil {
				t.Errorf("racing delivery: %+v %v", res, err)
				return
			}
			if res[0].Duplicate {
				dup.Add(1)
			}
		}()
	}
	wg.Wait()
	if dup.Load() != 7 || e.inbox(t, s).Messages != 2 {
		t.Fatalf("racing deliveries: %d duplicates, %d messages", dup.Load(), e.inbox(t, s).Messages)
	}
	checkCounters(t, e.r, s)
}

func testDeliverManyRecipients(t *testing.T, f Factory) {
	e := newEnv(t, f)
	ctx := context.Background()
	var rcpts []int64
	var scopes []repo.Scope
	for range 5 {
		s := e.account(t)
		scopes = append(scopes, s)
		rcpts = append(rcpts, s.AccountID)
	}
	obj := e.object(t, 2048)
	res, err := e.r.Deliver(ctx, repo.Delivery{TenantID: e.tenant.ID, DeliveryID: "q", Recipients: rcpts, ObjectID: obj,
		Flags: repo.Flags{Keywords: []string{"$Junk"}}})
	if err != nil || len(res) != 5 {
		t.Fatalf("deliver: %+v %v", res, err)
	}
	for i, r := range res {
		if r.Err != nil || r.UID != 1 || r.AccountID != rcpts[i] {
			t.Fatalf("recipient %d: %+v", i, r)
		}
	}
	o, err := e.r.GetObject(ctx, e.tenant.ID, obj)
	if err != nil || o.RefCount != 5 {
		t.Fatalf("object %+v %v, want refcount 5", o, err)
	}
	for _, s := range scopes {
		msgs := fetchAll(t, e.r, s, e.inbox(t, s).ID, repo.FetchFlags|repo.FetchObject|repo.FetchEnvelope|repo.FetchParts|repo.FetchSize)
		if len(msgs) != 1 || msgs[0].ObjectID != obj || msgs[0].ObjectKey != o.Key || msgs[0].Size != 2048 ||
			len(msgs[0].Parts) != 1 || string(msgs[0].Envelope) == "" || !slices.Equal(msgs[0].Flags.Keywords, []string{"$Junk"}) {
			t.Fatalf("fetched %+v", msgs)
		}
	}
	// An unknown recipient fails alone.
	res, err = e.r.Deliver(ctx, repo.Delivery{TenantID: e.tenant.ID, DeliveryID: "q2", Recipients: []int64{rcpts[0], 1 << 50}, ObjectID: obj})
	if err != nil || len(res) != 2 || res[0].Err != nil || !errors.Is(res[1].Err, repo.ErrNotFound) {
		t.Fatalf("partial delivery: %+v %v", res, err)
	}
	if o, _ := e.r.GetObject(ctx, e.tenant.ID, obj); o.RefCount != 6 {
		t.Fatalf("refcount %d, want 6", o.RefCount)
	}
}

func deleteAndExpunge(t *testing.T, r repo.Repository, s repo.Scope, mbox int64, uids repo.UIDSet) repo.ExpungeResult {
	t.Helper()
	ctx := context.Background()
	if _, err := r.StoreFlags(ctx, s, mbox, uids, repo.FlagsAdd, repo.Flags{System: repo.FlagDeleted}, 0); err != nil {
		t.Fatal(err)
	}
	res, err := r.Expunge(ctx, s, mbox, uids)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func testExpungeCollect(t *testing.T, f Factory) {
	e := newEnv(t, f)
	ctx := context.Background()
	a, b := e.account(t), e.account(t)
	obj := e.object(t, 300)
	if _, err := e.r.Deliver(ctx, repo.Delivery{TenantID: e.tenant.ID, DeliveryID: "x", Recipients: []int64{a.AccountID, b.AccountID}, ObjectID: obj}); err != nil {
		t.Fatal(err)
	}
	var deleted []string
	del := func(_ context.Context, tenant int64, key string) error {
		if tenant != e.tenant.ID {
			t.Errorf("collector deleted for tenant %d", tenant)
		}
		deleted = append(deleted, key)
		return nil
	}
	res := deleteAndExpunge(t, e.r, a, e.inbox(t, a).ID, nil)
	if !slices.Equal(res.UIDs, []uint32{1}) {
		t.Fatalf("expunged %v", res.UIDs)
	}
	if o, _ := e.r.GetObject(ctx, e.tenant.ID, obj); o.RefCount != 1 {
		t.Fatalf("refcount %d after one expunge", o.RefCount)
	}
	if n, err := e.r.Collect(ctx, 0, del); err != nil || n != 0 {
		t.Fatalf("collected %d (%v) while referenced", n, err)
	}
	deleteAndExpunge(t, e.r, b, e.inbox(t, b).ID, nil)
	o, _ := e.r.GetObject(ctx, e.tenant.ID, obj)
	if o.RefCount != 0 {
		t.Fatalf("refcount %d after both expunges", o.RefCount)
	}
	if n, err := e.r.Collect(ctx, time.Hour, del); err != nil || n != 0 {
		t.Fatalf("collected %d (%v) within the grace period", n, err)
	}
	if n, err := e.r.Collect(ctx, 0, del); err != nil || n != 1 || !slices.Equal(deleted, []string{o.Key}) {
		t.Fatalf("collected %d (%v), deleted %v", n, err, deleted)
	}
	_, err := e.r.GetObject(ctx, e.tenant.ID, obj)
	wantErr(t, "object after collection", err, repo.ErrNotFound)
	_, err = e.r.Append(ctx, a, e.inbox(t, a).ID, repo.AppendRequest{ObjectID: obj})
	wantErr(t, "append of a collected object", err, repo.ErrNotFound)
	// A failing delete keeps the row for the next run.
	obj2 := e.object(t, 10)
	_, err = e.r.Collect(ctx, 0, func(context.Context, int64, string) error { return errors.New("S3 down") })
	if err == nil {
		t.Fatal("collector hid a delete error")
	}
	if _, err := e.r.GetObject(ctx, e.tenant.ID, obj2); err != nil {
		t.Fatalf("row removed although the delete failed: %v", err)
	}
	checkCounters(t, e.r, a)
	checkCounters(t, e.r, b)
}

// testHeldObject: a queue entry's hold keeps an unreferenced object from
// the collector (a retry hours later must find the bytes), for as long as
// any holder keeps it, and the grace period starts again at the release.
func testHeldObject(t *testing.T, f Factory) {
	e := newEnv(t, f)
	ctx := context.Background()
	var deleted []string
	del := func(_ context.Context, _ int64, key string) error {
		deleted = append(deleted, key)
		return nil
	}
	obj := e.object(t, 100)
	o, err := e.r.GetObject(ctx, e.tenant.ID, obj)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"Q1", "Q2", "Q1"} { // the repeat is idempotent
		if err := e.r.HoldObject(ctx, e.tenant.ID, o.Key, h); err != nil {
			t.Fatalf("hold %s: %v", h, err)
		}
	}
	if n, err := e.r.Collect(ctx, 0, del); err != nil || n != 0 {
		t.Fatalf("collected %d (%v) while held twice", n, err)
	}
	if err := e.r.ReleaseObject(ctx, e.tenant.ID, o.Key, "Q1"); err != nil {
		t.Fatal(err)
	}
	if n, err := e.r.Collect(ctx, 0, del); err != nil || n != 0 {
		t.Fatalf("collected %d (%v) while still held by Q2", n, err)
	}
	for range 2 {
		if err := e.r.ReleaseObject(ctx, e.tenant.ID, o.Key, "Q2"); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := e.r.Collect(ctx, time.Hour, del); err != nil || n != 0 {
		t.Fatalf("collected %d (%v) within the grace period restarted by the release", n, err)
	}
	if n, err := e.r.Collect(ctx, 0, del); err != nil || n != 1 || !slices.Equal(deleted, []string{o.Key}) {
		t.Fatalf("after the last release: collected %d (%v), deleted %v", n, err, deleted)
	}

	// A hold taken before the object is recorded covers it too.
	if err := e.r.HoldObject(ctx, e.tenant.ID, fmt.Sprintf("obj/%d", e.n.Load()+1), "Q3"); err != nil {
		t.Fatal(err)
	}
	early := e.object(t, 50)
	if n, err := e.r.Collect(ctx, 0, del); err != nil || n != 0 {
		t.Fatalf("collected %d (%v): object %d held before it was recorded", n, err, early)
	}
	err = e.r.HoldObject(ctx, e.tenant.ID+1_000_000, "obj/1", "Q4")
	wantErr(t, "hold in a tenant that does not exist", err, repo.ErrNotFound)
}

func testCollectorRace(t *testing.T, f Factory) {
	e := newEnv(t, f)
	ctx := context.Background()
	s := e.account(t)
	inbox := e.inbox(t, s).ID
	var violations, deletes atomic.Int32
	del := func(ctx context.Context, _ int64, key string) error {
		// The row is still there (locked): no committed message may refer
		// to it.
		err := e.r.FetchMeta(ctx, s, inbox, nil, repo.FetchObject, 0, func(m *repo.MessageMeta) error {
			if m.ObjectKey == key {
				violations.Add(1)
			}
			return nil
		})
		if err != nil && !errors.Is(err, repo.ErrNotFound) {
			return err
		}
		deletes.Add(1)
		return nil
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 { // two collectors share the work through SKIP LOCKED
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				if _, err := e.r.Collect(ctx, 0, del); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	// As the delivery pipeline does: record the object (upsert by key),
	// then deliver it. With a zero grace period the collector races every
	// step; a delivery either wins (the object stays) or finds the row
	// gone and references nothing.
	p := &mimeparse.Parsed{Size: 100, Parts: []mimeparse.Part{{Path: ""}}}
	var won, lost int
	for round := range 8 {
		for i := range 15 {
			key := fmt.Sprintf("race/%d", i)
			obj, err := e.r.CreateObject(ctx, s.TenantID, key, p)
			if err != nil {
				t.Fatal(err)
			}
			res, err := e.r.Deliver(ctx, repo.Delivery{TenantID: s.TenantID, DeliveryID: fmt.Sprintf("r%d-%d", round, i),
				Recipients: []int64{s.AccountID}, ObjectID: obj})
			if errors.Is(err, repo.ErrNotFound) {
				lost++
				continue
			}
			if err != nil || res[0].Err != nil {
				t.Fatalf("deliver: %+v %v", res, err)
			}
			won++
			if round%2 == 1 {
				deleteAndExpunge(t, e.r, s, inbox, repo.UIDSet{{Start: res[0].UID, Stop: res[0].UID}})
			}
		}
	}
	close(done)
	wg.Wait()
	if violations.Load() != 0 {
		t.Fatalf("collector deleted %d objects that a message referred to", violations.Load())
	}
	// Every remaining message's object row exists and counts it.
	msgs := fetchAll(t, e.r, s, inbox, repo.FetchObject)
	if int64(len(msgs)) != e.inbox(t, s).Messages {
		t.Fatalf("%d messages have an object, mailbox has %d", len(msgs), e.inbox(t, s).Messages)
	}
	refs := map[int64]int64{}
	for _, m := range msgs {
		refs[m.ObjectID]++
	}
	for id, n := range refs {
		o, err := e.r.GetObject(ctx, s.TenantID, id)
		if err != nil || o.RefCount != n {
			t.Fatalf("object %d: %+v %v, want refcount %d", id, o, err, n)
		}
	}
	t.Logf("deliveries: %d won, %d lost to the collector; %d objects deleted", won, lost, deletes.Load())
	checkCounters(t, e.r, s)
}

func testQuota(t *testing.T, f Factory) {
	e := newEnv(t, f)
	ctx := context.Background()
	s := e.account(t)
	inbox := e.inbox(t, s).ID
	if err := e.r.SetQuota(ctx, s, 2500, 0); err != nil {
		t.Fatal(err)
	}
	e.appendN(t, s, inbox, 2, 0) // 2000 bytes
	_, err := e.r.Append(ctx, s, inbox, repo.AppendRequest{ObjectID: e.object(t, 1000)})
	wantErr(t, "append over quota", err, repo.ErrOverQuota)
	obj := e.object(t, 1000)
	res, err := e.r.Deliver(ctx, repo.Delivery{TenantID: s.TenantID, DeliveryID: "d", Recipients: []int64{s.AccountID}, ObjectID: obj})
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, "deliver over quota", res[0].Err, repo.ErrOverQuota)
	if o, _ := e.r.GetObject(ctx, s.TenantID, obj); o.RefCount != 0 {
		t.Fatalf("refused delivery took a reference: %d", o.RefCount)
	}
	// A refused delivery is not remembered as done.
	if err := e.r.SetQuota(ctx, s, 0, 3); err != nil {
		t.Fatal(err)
	}
	res, _ = e.r.Deliver(ctx, repo.Delivery{TenantID: s.TenantID, DeliveryID: "d", Recipients: []int64{s.AccountID}, ObjectID: obj})
	if res[0].Err != nil || res[0].Duplicate {
		t.Fatalf("retried delivery: %+v", res[0])
	}
	other, err := e.r.CreateMailbox(ctx, s, "Other", "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.r.Copy(ctx, s, inbox, repo.UIDSet{{Start: 1, Stop: 1}}, other.ID)
	wantErr(t, "copy over message quota", err, repo.ErrOverQuota)
	q, _ := e.r.GetQuota(ctx, s)
	if q.UsedBytes != 3000 || q.UsedMessages != 3 || q.LimitMessages != 3 || q.LimitBytes != 0 {
		t.Fatalf("quota %+v", q)
	}
	// Move needs no quota.
	if _, err := e.r.Move(ctx, s, inbox, repo.UIDSet{{Start: 1, Stop: 1}}, other.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.r.SetQuota(ctx, s, 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.Copy(ctx, s, inbox, nil, other.ID); err != nil {
		t.Fatal(err)
	}
	q, _ = e.r.GetQuota(ctx, s)
	if q.UsedBytes != 5000 || q.UsedMessages != 5 {
		t.Fatalf("quota after copy %+v", q)
	}
	deleteAndExpunge(t, e.r, s, other.ID, nil)
	if err := e.r.DeleteMailbox(ctx, s, "Other"); err != nil {
		t.Fatal(err)
	}
	q, _ = e.r.GetQuota(ctx, s)
	if q.UsedBytes != 2000 || q.UsedMessages != 2 {
		t.Fatalf("quota after expunge and delete %+v", q)
	}
	checkCounters(t, e.r, s)
}

func testIsolation(t *testing.T, f Factory) {
	e := newEnv(t, f)
	ctx := context.Background()
	a := e.account(t)
	b := e.account(t) // same tenant
	t2, err := e.r.CreateTenant(ctx, "other-"+t.Name())
	if err != nil {
		t.Fatal(err)
	}
	d2, err := e.r.CreateDomain(ctx, t2.ID, "other.example")
	if err != nil {
		t.Fatal(err)
	}
	acc, err := e.r.CreateAccount(ctx, t2.ID, d2.ID, "c", "")
	if err != nil {
		t.Fatal(err)
	}
	c := repo.Scope{TenantID: t2.ID, AccountID: acc.ID}
	aInbox := e.inbox(t, a)
	e.appendN(t, a, aInbox.ID, 2, 0)
	bInbox, cInbox := e.inbox(t, b), e.inbox(t, c)
	one := repo.UIDSet{{Start: 1, Stop: 1}}
	objA := e.object(t, 10)
	intruders := map[string]repo.Scope{
		"same tenant":            b,
		"other tenant":           c,
		"A's id, wrong tenant":   {TenantID: t2.ID, AccountID: a.AccountID},
		"wrong account, tenant1": {TenantID: a.TenantID, AccountID: acc.ID},
	}
	for name, s := range intruders {
		ops := map[string]error{}
		_, ops["MailboxByID"] = e.r.MailboxByID(ctx, s, aInbox.ID)
		_, ops["UIDs"] = e.r.UIDs(ctx, s, aInbox.ID)
		ops["FetchMeta"] = e.r.FetchMeta(ctx, s, aInbox.ID, nil, repo.FetchFlags|repo.FetchObject, 0, func(*repo.MessageMeta) error { return nil })
		_, ops["StoreFlags"] = e.r.StoreFlags(ctx, s, aInbox.ID, one, repo.FlagsAdd, repo.Flags{System: repo.FlagDeleted}, 0)
		_, ops["Expunge"] = e.r.Expunge(ctx, s, aInbox.ID, nil)
		_, ops["ChangesSince"] = e.r.ChangesSince(ctx, s, aInbox.ID, 0)
		_, ops["ClaimRecent"] = e.r.ClaimRecent(ctx, s, aInbox.ID)
		_, ops["Append"] = e.r.Append(ctx, s, aInbox.ID, repo.AppendRequest{ObjectID: objA})
		own := bInbox.ID
		if s.TenantID == t2.ID {
			own = cInbox.ID
		}
		_, ops["Copy from A"] = e.r.Copy(ctx, s, aInbox.ID, nil, own)
		_, ops["Copy to A"] = e.r.Copy(ctx, s, own, nil, aInbox.ID)
		_, ops["Move from A"] = e.r.Move(ctx, s, aInbox.ID, nil, own)
		for op, err := range ops {
			if !errors.Is(err, repo.ErrNotFound) {
				t.Errorf("%s: %s on A's mailbox: got %v, want ErrNotFound", name, op, err)
			}
		}
	}
	// Wrong-tenant scope of A's own account id sees nothing of A.
	wrong := repo.Scope{TenantID: t2.ID, AccountID: a.AccountID}
	_, err = e.r.GetQuota(ctx, wrong)
	wantErr(t, "GetQuota wrong tenant", err, repo.ErrNotFound)
	_, err = e.r.MailboxByName(ctx, wrong, "INBOX")
	wantErr(t, "MailboxByName wrong tenant", err, repo.ErrNotFound)
	_, err = e.r.CreateMailbox(ctx, wrong, "x", "")
	wantErr(t, "CreateMailbox wrong tenant", err, repo.ErrNotFound)
	_, err = e.r.ListMailboxes(ctx, wrong, "", "*", false)
	wantErr(t, "List wrong tenant", err, repo.ErrNotFound)
	// Objects are per tenant: C cannot link A's tenant's object.
	_, err = e.r.Append(ctx, c, cInbox.ID, repo.AppendRequest{ObjectID: objA})
	wantErr(t, "Append of another tenant's object", err, repo.ErrNotFound)
	_, err = e.r.Deliver(ctx, repo.Delivery{TenantID: t2.ID, DeliveryID: "z", Recipients: []int64{c.AccountID}, ObjectID: objA})
	wantErr(t, "Deliver of another tenant's object", err, repo.ErrNotFound)
	res, err := e.r.Deliver(ctx, repo.Delivery{TenantID: t2.ID, DeliveryID: "z", Recipients: []int64{a.AccountID}, ObjectID: e.object(t, 1)})
	if err == nil && (len(res) != 1 || !errors.Is(res[0].Err, repo.ErrNotFound)) {
		t.Fatalf("delivery into another tenant's account: %+v", res)
	}
	// A is untouched.
	after := e.inbox(t, a)
	if after.Messages != 2 || after.HighestModSeq != aInbox.HighestModSeq+2 || after.Deleted != 0 {
		t.Fatalf("A's INBOX changed: %+v (was %+v)", after, aInbox)
	}
	for _, s := range []repo.Scope{a, b, c} {
		checkCounters(t, e.r, s)
	}
}

func names(es []repo.ListEntry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Name)
	}
	return out
}

func testList(t *testing.T, f Factory) {
	e := newEnv(t, f)
	ctx := context.Background()
	s := e.account(t)
	for _, n := range []string{"a/b/c", "a/d", "x", "INBOX/sub"} {
		if _, err := e.r.CreateMailbox(ctx, s, n, ""); err != nil {
			t.Fatal(err)
		}
	}
	_, err := e.r.CreateMailbox(ctx, s, "a/b", "")
	wantErr(t, "create existing parent", err, repo.ErrExists)
	_, err = e.r.CreateMailbox(ctx, s, "a//b", "")
	wantErr(t, "create empty component", err, repo.ErrInvalidName)
	if _, err := e.r.CreateMailbox(ctx, s, "Sent", `\Sent`); err != nil {
		t.Fatal(err)
	}
	if err := e.r.Subscribe(ctx, s, "a/d"); err != nil {
		t.Fatal(err)
	}
	if err := e.r.Subscribe(ctx, s, "gone"); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		ref, pat string
		sub      bool
		want     []string
	}{
		{"", "%", false, []string{"INBOX", "Sent", "a", "x"}},
		{"", "*", false, []string{"INBOX", "INBOX/sub", "Sent", "a", "a/b", "a/b/c", "a/d", "x"}},
		{"", "a/%", false, []string{"a/b", "a/d"}},
		{"a/", "%", false, []string{"a/b", "a/d"}},
		{"", "a/*", false, []string{"a/b", "a/b/c", "a/d"}},
		{"", "inbox", false, []string{"INBOX"}},
		{"", "inbox/%", false, []string{"INBOX/sub"}},
		{"", "%/%", false, []string{"INBOX/sub", "a/b", "a/d"}},
		{"", "*", true, []string{"INBOX", "a/d", "gone"}},
		{"", "nomatch", false, nil},
	}
	for _, c := range cases {
		got, err := e.r.ListMailboxes(ctx, s, c.ref, c.pat, c.sub)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(names(got), c.want) {
			t.Errorf("LIST %q %q (subscribed %v) = %v, want %v", c.ref, c.pat, c.sub, names(got), c.want)
		}
	}
	all, _ := e.r.ListMailboxes(ctx, s, "", "*", false)
	attrs := map[string]repo.ListEntry{}
	for _, x := range all {
		attrs[x.Name] = x
	}
	if !attrs["a"].HasChildren || !attrs["a/b"].HasChildren || attrs["a/b/c"].HasChildren || !attrs["INBOX"].HasChildren ||
		!attrs["a/d"].Subscribed || attrs["a/b"].Subscribed || attrs["Sent"].SpecialUse != `\Sent` {
		t.Fatalf("attributes %+v", attrs)
	}
	sub, _ := e.r.ListMailboxes(ctx, s, "", "gone", true)
	if len(sub) != 1 || !sub[0].NonExistent {
		t.Fatalf("subscription to a missing mailbox: %+v", sub)
	}
	if err := e.r.Unsubscribe(ctx, s, "gone"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "unsubscribe twice", e.r.Unsubscribe(ctx, s, "gone"), repo.ErrNotFound)
}

func testRenameChildren(t *testing.T, f Factory) {
	e := newEnv(t, f)
	ctx := context.Background()
	s := e.account(t)
	c, err := e.r.CreateMailbox(ctx, s, "a/b/c", "")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := e.r.MailboxByName(ctx, s, "a/b")
	e.appendN(t, s, c.ID, 2, 0)
	if err := e.r.Subscribe(ctx, s, "a/b/c"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "rename into itself", e.r.RenameMailbox(ctx, s, "a/b", "a/b/x"), repo.ErrNotAllowed)
	wantErr(t, "rename onto existing", e.r.RenameMailbox(ctx, s, "a/b", "a"), repo.ErrExists)
	wantErr(t, "rename missing", e.r.RenameMailbox(ctx, s, "nope", "z"), repo.ErrNotFound)
	if err := e.r.RenameMailbox(ctx, s, "a/b", "z/y"); err != nil {
		t.Fatal(err)
	}
	all, _ := e.r.ListMailboxes(ctx, s, "", "*", false)
	if got := names(all); !slices.Equal(got, []string{"INBOX", "a", "z", "z/y", "z/y/c"}) {
		t.Fatalf("after rename: %v", got)
	}
	nc, err := e.r.MailboxByName(ctx, s, "z/y/c")
	if err != nil || nc.ID != c.ID || nc.UIDValidity != c.UIDValidity || nc.Messages != 2 {
		t.Fatalf("renamed child %+v %v (was %+v)", nc, err, c)
	}
	if nb, _ := e.r.MailboxByName(ctx, s, "z/y"); nb.ID != b.ID {
		t.Fatalf("renamed mailbox has a new id")
	}
	subs, _ := e.r.ListMailboxes(ctx, s, "", "*", true)
	if !slices.Equal(names(subs), []string{"INBOX", "z/y/c"}) {
		t.Fatalf("subscriptions after rename: %v", names(subs))
	}
	// A new mailbox under the old name gets a new UIDVALIDITY.
	nb, err := e.r.CreateMailbox(ctx, s, "a/b", "")
	if err != nil || nb.UIDValidity == b.UIDValidity {
		t.Fatalf("recreated a/b: %+v %v", nb, err)
	}
}

func testRenameInbox(t *testing.T, f Factory) {
	e := newEnv(t, f)
	ctx := context.Background()
	s := e.account(t)
	inbox := e.inbox(t, s)
	e.appendN(t, s, inbox.ID, 3, repo.FlagSeen)
	if _, err := e.r.CreateMailbox(ctx, s, "INBOX/child", ""); err != nil {
		t.Fatal(err)
	}
	before := e.inbox(t, s)
	if err := e.r.RenameMailbox(ctx, s, "inbox", "Old Mail"); err != nil {
		t.Fatal(err)
	}
	after := e.inbox(t, s)
	if after.ID != inbox.ID || after.Messages != 0 || after.Size != 0 || after.UIDValidity != inbox.UIDValidity || after.UIDNext != before.UIDNext {
		t.Fatalf("INBOX after rename: %+v", after)
	}
	old, err := e.r.MailboxByName(ctx, s, "Old Mail")
	if err != nil || old.Messages != 3 || old.UIDNext != 4 || old.UIDValidity == inbox.UIDValidity {
		t.Fatalf("renamed INBOX: %+v %v", old, err)
	}
	uids, _ := e.r.UIDs(ctx, s, old.ID)
	if !slices.Equal(uids, []repo.UIDRange{{Start: 1, Stop: 3}}) {
		t.Fatalf("moved UIDs %v", uids)
	}
	ch, _ := e.r.ChangesSince(ctx, s, inbox.ID, before.HighestModSeq)
	if !slices.Equal(ch.Vanished, []uint32{1, 2, 3}) {
		t.Fatalf("INBOX vanished %v", ch.Vanished)
	}
	if _, err := e.r.MailboxByName(ctx, s, "INBOX/child"); err != nil {
		t.Fatalf("INBOX's child moved: %v", err)
	}
	// INBOX keeps working, continuing its UIDs.
	if got := e.appendN(t, s, inbox.ID, 1, 0); got[0] != 4 {
		t.Fatalf("append after rename got UID %d", got[0])
	}
	checkCounters(t, e.r, s)
}

func testDeleteUIDValidity(t *testing.T, f Factory) {
	e := newEnv(t, f)
	ctx := context.Background()
	s := e.account(t)
	wantErr(t, "delete INBOX", e.r.DeleteMailbox(ctx, s, "INBOX"), repo.ErrNotAllowed)
	seen := map[uint32]bool{e.inbox(t, s).UIDValidity: true}
	for range 3 {
		mb, err := e.r.CreateMailbox(ctx, s, "f", "")
		if err != nil {
			t.Fatal(err)
		}
		if seen[mb.UIDValidity] {
			t.Fatalf("UIDVALIDITY %d reused", mb.UIDValidity)
		}
		seen[mb.UIDValidity] = true
		e.appendN(t, s, mb.ID, 1, 0)
		if err := e.r.DeleteMailbox(ctx, s, "f"); err != nil {
			t.Fatal(err)
		}
	}
	// A mailbox with children becomes \Noselect; then it cannot be
	// deleted again while the children exist.
	p, _ := e.r.CreateMailbox(ctx, s, "p/q", "")
	parent, _ := e.r.MailboxByName(ctx, s, "p")
	e.appendN(t, s, parent.ID, 2, 0)
	if err := e.r.DeleteMailbox(ctx, s, "p"); err != nil {
		t.Fatal(err)
	}
	ps, _ := e.r.ListMailboxes(ctx, s, "", "p", false)
	if len(ps) != 1 || !ps[0].NoSelect || !ps[0].HasChildren {
		t.Fatalf("deleted parent: %+v", ps)
	}
	_, err := e.r.Append(ctx, s, parent.ID, repo.AppendRequest{ObjectID: e.object(t, 1)})
	wantErr(t, "append to \\Noselect", err, repo.ErrNoSelect)
	wantErr(t, "delete \\Noselect with children", e.r.DeleteMailbox(ctx, s, "p"), repo.ErrNotAllowed)
	if err := e.r.DeleteMailbox(ctx, s, "p/q"); err != nil {
		t.Fatal(err)
	}
	if all, _ := e.r.ListMailboxes(ctx, s, "", "*", false); !slices.Equal(names(all), []string{"INBOX"}) {
		t.Fatalf("placeholder not removed with its last child: %v", names(all))
	}
	_ = p
	// Re-creating gives a selectable mailbox with a fresh UIDVALIDITY.
	np, err := e.r.CreateMailbox(ctx, s, "p", "")
	if err != nil || np.NoSelect || seen[np.UIDValidity] || np.UIDValidity == parent.UIDValidity {
		t.Fatalf("recreated p: %+v %v", np, err)
	}
	q, _ := e.r.GetQuota(ctx, s)
	if q.UsedMessages != 0 {
		t.Fatalf("usage after deleting every mailbox: %+v", q)
	}
	checkCounters(t, e.r, s)
}

func testStoreUnchangedSince(t *testing.T, f Factory) {
	e := newEnv(t, f)
	ctx := context.Background()
	s := e.account(t)
	mb := e.inbox(t, s)
	e.appendN(t, s, mb.ID, 3, 0)
	base := e.inbox(t, s).HighestModSeq
	// Another client changes UID 2.
	r1, err := e.r.StoreFlags(ctx, s, mb.ID, repo.UIDSet{{Start: 2, Stop: 2}}, repo.FlagsAdd, repo.Flags{System: repo.FlagFlagged}, 0)
	if err != nil || len(r1.Changed) != 1 || r1.Changed[0].ModSeq != base+1 {
		t.Fatalf("store: %+v %v", r1, err)
	}
	r2, err := e.r.StoreFlags(ctx, s, mb.ID, nil, repo.FlagsAdd, repo.Flags{System: repo.FlagSeen}, base)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r2.Modified, []uint32{2}) || len(r2.Changed) != 2 || r2.Changed[0].UID != 1 || r2.Changed[1].UID != 3 ||
		r2.Changed[0].ModSeq != base+2 || r2.Changed[0].Flags.System != repo.FlagSeen {
		t.Fatalf("UNCHANGEDSINCE: %+v", r2)
	}
	st := e.inbox(t, s)
	if st.Unseen != 1 || st.HighestModSeq != base+2 {
		t.Fatalf("mailbox after store: %+v", st)
	}
	// A no-op store changes nothing and allocates no MODSEQ.
	r3, _ := e.r.StoreFlags(ctx, s, mb.ID, repo.UIDSet{{Start: 1, Stop: 1}}, repo.FlagsAdd, repo.Flags{System: repo.FlagSeen}, 0)
	if len(r3.Changed) != 0 || e.inbox(t, s).HighestModSeq != base+2 {
		t.Fatalf("no-op store: %+v", r3)
	}
	// Replace and remove.
	r4, _ := e.r.StoreFlags(ctx, s, mb.ID, nil, repo.FlagsReplace, repo.Flags{System: repo.FlagDeleted}, 0)
	if len(r4.Changed) != 3 || e.inbox(t, s).Deleted != 3 || e.inbox(t, s).Unseen != 3 {
		t.Fatalf("replace: %+v %+v", r4, e.inbox(t, s))
	}
	r5, _ := e.r.StoreFlags(ctx, s, mb.ID, repo.UIDSet{{Start: 3, Stop: 9}}, repo.FlagsRemove, repo.Flags{System: repo.FlagDeleted}, 0)
	if len(r5.Changed) != 1 || r5.Changed[0].UID != 3 || r5.Changed[0].Flags.System != 0 {
		t.Fatalf("remove: %+v", r5)
	}
	checkCounters(t, e.r, s)
}

func testChangesSince(t *testing.T, f Factory) {
	e := newEnv(t, f)
	ctx := context.Background()
	s := e.account(t)
	mb := e.inbox(t, s)
	e.appendN(t, s, mb.ID, 4, 0)
	hms := e.inbox(t, s).HighestModSeq
	ch, err := e.r.ChangesSince(ctx, s, mb.ID, hms)
	if err != nil || len(ch.Changed) != 0 || len(ch.Vanished) != 0 || ch.HighestModSeq != hms || ch.TooOld {
		t.Fatalf("no changes: %+v %v", ch, err)
	}
	if _, err := e.r.StoreFlags(ctx, s, mb.ID, repo.UIDSet{{Start: 2, Stop: 3}}, repo.FlagsAdd, repo.Flags{System: repo.FlagDeleted}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.Expunge(ctx, s, mb.ID, repo.UIDSet{{Start: 3, Stop: 3}}); err != nil {
		t.Fatal(err)
	}
	ch, _ = e.r.ChangesSince(ctx, s, mb.ID, hms)
	if len(ch.Changed) != 1 || ch.Changed[0].UID != 2 || !slices.Equal(ch.Vanished, []uint32{3}) || ch.HighestModSeq != hms+2 {
		t.Fatalf("changes: %+v", ch)
	}
	var fetched []uint32
	_ = e.r.FetchMeta(ctx, s, mb.ID, nil, repo.FetchFlags, hms, func(m *repo.MessageMeta) error {
		fetched = append(fetched, m.UID)
		return nil
	})
	if !slices.Equal(fetched, []uint32{2}) {
		t.Fatalf("FETCH CHANGEDSINCE: %v", fetched)
	}
	// Forgetting tombstones raises the mark; an older client is told.
	if _, err := e.r.PruneExpunged(ctx, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	ch, _ = e.r.ChangesSince(ctx, s, mb.ID, hms)
	if !ch.TooOld || len(ch.Vanished) != 0 {
		t.Fatalf("after pruning: %+v", ch)
	}
	ch, _ = e.r.ChangesSince(ctx, s, mb.ID, hms+2)
	if ch.TooOld {
		t.Fatalf("current client told its state is too old")
	}
}

func testCopyMove(t *testing.T, f Factory) {
	e := newEnv(t, f)
	ctx := context.Background()
	s := e.account(t)
	src := e.inbox(t, s)
	dst, _ := e.r.CreateMailbox(ctx, s, "Archive", "")
	e.appendN(t, s, src.ID, 5, repo.FlagSeen)
	e.appendN(t, s, dst.ID, 2, 0)
	set := repo.UIDSet{{Start: 2, Stop: 3}, {Start: 5, Stop: 7}}
	cp, err := e.r.Copy(ctx, s, src.ID, set, dst.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := []repo.UIDPair{{Src: 2, Dst: 3}, {Src: 3, Dst: 4}, {Src: 5, Dst: 5}}
	if !slices.Equal(cp.Map, want) || cp.DstUIDValidity != dst.UIDValidity {
		t.Fatalf("COPYUID %+v", cp)
	}
	mv, err := e.r.Move(ctx, s, src.ID, repo.UIDSet{{Start: 1, Stop: 2}}, dst.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(mv.Map, []repo.UIDPair{{Src: 1, Dst: 6}, {Src: 2, Dst: 7}}) || mv.SrcModSeq == 0 {
		t.Fatalf("MOVE map %+v", mv)
	}
	srcAfter, dstAfter := e.inbox(t, s), must(e.r.MailboxByID(ctx, s, dst.ID))
	if srcAfter.Messages != 3 || dstAfter.Messages != 7 || dstAfter.Unseen != 2 || dstAfter.UIDNext != 8 {
		t.Fatalf("after copy and move: src %+v dst %+v", srcAfter, dstAfter)
	}
	ch, _ := e.r.ChangesSince(ctx, s, src.ID, mv.SrcModSeq-1)
	if !slices.Equal(ch.Vanished, []uint32{1, 2}) {
		t.Fatalf("move tombstones %+v", ch)
	}
	msgs := fetchAll(t, e.r, s, dst.ID, repo.FetchFlags|repo.FetchObject)
	for _, m := range msgs[2:] {
		if m.Flags.System != repo.FlagSeen || m.ObjectID == 0 {
			t.Fatalf("copied message lost flags or object: %+v", m)
		}
	}
	empty, err := e.r.Copy(ctx, s, src.ID, repo.UIDSet{{Start: 100, Stop: 200}}, dst.ID)
	if err != nil || len(empty.Map) != 0 {
		t.Fatalf("copy of nothing: %+v %v", empty, err)
	}
	checkCounters(t, e.r, s)
}

func testKeywords(t *testing.T, f Factory) {
	e := newEnv(t, f)
	ctx := context.Background()
	s := e.account(t)
	mb := e.inbox(t, s)
	e.appendN(t, s, mb.ID, 2, 0)
	r, err := e.r.StoreFlags(ctx, s, mb.ID, nil, repo.FlagsAdd, repo.Flags{Keywords: []string{"$Label1", "work"}}, 0)
	if err != nil || len(r.Changed) != 2 || !slices.Equal(r.Changed[0].Flags.Keywords, []string{"$Label1", "work"}) {
		t.Fatalf("add keywords: %+v %v", r, err)
	}
	// Case-insensitive: WORK is the same keyword.
	r, _ = e.r.StoreFlags(ctx, s, mb.ID, repo.UIDSet{{Start: 1, Stop: 1}}, repo.FlagsRemove, repo.Flags{Keywords: []string{"WORK"}}, 0)
	if len(r.Changed) != 1 || !slices.Equal(r.Changed[0].Flags.Keywords, []string{"$Label1"}) {
		t.Fatalf("remove keyword: %+v", r)
	}
	msgs := fetchAll(t, e.r, s, mb.ID, repo.FetchFlags)
	if !slices.Equal(msgs[1].Flags.Keywords, []string{"$Label1", "work"}) {
		t.Fatalf("fetched keywords %+v", msgs)
	}
}

func testLookup(t *testing.T, f Factory) {
	e := newEnv(t, f)
	ctx := context.Background()
	s := e.account(t)
	s2 := e.account(t)
	got, err := e.r.LookupAddress(ctx, fmt.Sprintf("USER%d@%s", 1, e.domain.Name))
	if err != nil || !slices.Equal(got, []repo.Scope{s}) {
		t.Fatalf("lookup account: %v %v", got, err)
	}
	if err := e.r.CreateAlias(ctx, e.tenant.ID, e.domain.ID, "team", []string{"user1@" + e.domain.Name, "user2@" + e.domain.Name}); err != nil {
		t.Fatal(err)
	}
	got, err = e.r.LookupAddress(ctx, "team@"+e.domain.Name)
	if err != nil || len(got) != 2 {
		t.Fatalf("lookup alias: %v %v (want %v %v)", got, err, s, s2)
	}
	_, err = e.r.LookupAddress(ctx, "nobody@"+e.domain.Name)
	wantErr(t, "unknown address", err, repo.ErrNotFound)
	if err := e.r.CreateAlias(ctx, e.tenant.ID, e.domain.ID, "", []string{"user2@" + e.domain.Name}); err != nil {
		t.Fatal(err)
	}
	got, err = e.r.LookupAddress(ctx, "nobody@"+e.domain.Name)
	if err != nil || !slices.Equal(got, []repo.Scope{s2}) {
		t.Fatalf("catch-all: %v %v", got, err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
