package delivery_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	queuev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/queue/v1"

	"github.com/petrel-mail/petrel/platform/blob"
	"github.com/petrel-mail/petrel/platform/natsx"
	"github.com/petrel-mail/petrel/platform/natsx/embedded/embeddedtest"
	"github.com/petrel-mail/petrel/platform/testenv"
	"github.com/petrel-mail/petrel/services/delivery/internal/queue"
	"github.com/petrel-mail/petrel/services/delivery/internal/retry"
)

// TestThreeLocalRecipients: one entry for three local accounts ends with one
// copy in each INBOX, the entry acknowledged, and the object kept (the
// store references it now).
func TestThreeLocalRecipients(t *testing.T) {
	e := newEnv(t)
	rcpts := []string{e.account("alice"), e.account("bob"), e.account("carol")}
	en := e.entry("Q3LOCAL", "sender@remote.test", rcpts...)
	e.publish(e.js, en, en.GetQueueId())
	e.runConsumer(consumerOpts{})
	for _, r := range rcpts {
		waitFor(t, "delivery to "+r, func() bool { return e.inbox(r) >= 1 })
	}
	waitFor(t, "the entry to be acknowledged", func() bool { return streamMsgs(t, e.js, e.nopts.QueueStream()) == 0 })
	for _, r := range rcpts {
		if n := e.inbox(r); n != 1 {
			t.Errorf("INBOX of %s holds %d messages, want 1", r, n)
		}
	}
	if _, err := e.blobs.Stat(testCtx(t), en.GetBlobKey()); err != nil {
		t.Errorf("object of a delivered entry: %v", err)
	}
}

// TestPublishedTwice: the same queue id published twice, once deduplicated
// by JetStream and once under another message id (as after the duplicate
// window), gives one copy.
func TestPublishedTwice(t *testing.T) {
	e := newEnv(t)
	alice := e.account("alice")
	en := e.entry("QTWICE", "sender@remote.test", alice)
	e.publish(e.js, en, en.GetQueueId())
	e.publish(e.js, en, en.GetQueueId())
	e.publish(e.js, en, en.GetQueueId()+"-after-window")
	if n := streamMsgs(t, e.js, e.nopts.QueueStream()); n != 2 {
		t.Fatalf("stream holds %d entries, want 2 (one deduplicated)", n)
	}
	e.runConsumer(consumerOpts{})
	waitFor(t, "both entries to be acknowledged", func() bool { return streamMsgs(t, e.js, e.nopts.QueueStream()) == 0 })
	if n := e.inbox(alice); n != 1 {
		t.Fatalf("INBOX holds %d messages, want 1", n)
	}
}

// TestRedeliveryAfterCrash: the consumer dies between the store's Deliver
// and the ack; a new consumer gets the entry again and the recipient still
// has exactly one copy.
func TestRedeliveryAfterCrash(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.account("alice"), e.account("bob")
	en := e.entry("QCRASH", "sender@remote.test", alice, bob)
	e.publish(e.js, en, en.GetQueueId())

	delivered := make(chan struct{})
	var once sync.Once
	stopFirst := e.runConsumer(consumerOpts{wrap: func(a queue.Attempter) queue.Attempter {
		return attempterFunc(func(ctx context.Context, entry *queuev1.QueueEntry, pending []int) (queue.Attempt, error) {
			att, err := a.Attempt(ctx, entry, pending)
			// Crash: the store has the message, the ack never happens.
			once.Do(func() { close(delivered) })
			<-ctx.Done()
			return att, err
		})
	}})
	<-delivered
	stopFirst()
	if a, b := e.inbox(alice), e.inbox(bob); a != 1 || b != 1 {
		t.Fatalf("after the first attempt: %d and %d messages, want 1 and 1", a, b)
	}
	if n := streamMsgs(t, e.js, e.nopts.QueueStream()); n != 1 {
		t.Fatalf("the entry was acknowledged by a crashed consumer (%d left)", n)
	}

	var attempts atomic.Int32
	e.runConsumer(consumerOpts{wrap: func(a queue.Attempter) queue.Attempter {
		return attempterFunc(func(ctx context.Context, entry *queuev1.QueueEntry, pending []int) (queue.Attempt, error) {
			attempts.Add(1)
			return a.Attempt(ctx, entry, pending)
		})
	}})
	waitFor(t, "the redelivered entry to be acknowledged", func() bool { return streamMsgs(t, e.js, e.nopts.QueueStream()) == 0 })
	if attempts.Load() == 0 {
		t.Fatal("the second consumer never attempted the entry")
	}
	if a, b := e.inbox(alice), e.inbox(bob); a != 1 || b != 1 {
		t.Fatalf("after redelivery: %d and %d messages, want 1 and 1", a, b)
	}
}

// TestStoreDown: while the store is stopped the entry is not acknowledged
// and is retried; once the store is back it is delivered, once.
func TestStoreDown(t *testing.T) {
	e := newEnv(t)
	alice := e.account("alice")
	en := e.entry("QDOWN", "sender@remote.test", alice)
	e.store.stop(t)

	failures := make(chan error, 100)
	e.runConsumer(consumerOpts{wrap: func(a queue.Attempter) queue.Attempter {
		return attempterFunc(func(ctx context.Context, entry *queuev1.QueueEntry, pending []int) (queue.Attempt, error) {
			att, err := a.Attempt(ctx, entry, pending)
			if err != nil {
				select {
				case failures <- err:
				default:
				}
			}
			return att, err
		})
	}})
	e.publish(e.js, en, en.GetQueueId())
	for range 2 {
		select {
		case <-failures:
		case <-time.After(60 * time.Second):
			t.Fatal("no failed attempt while the store is down")
		}
	}
	if n := streamMsgs(t, e.js, e.nopts.QueueStream()); n != 1 {
		t.Fatalf("entry acknowledged while the store is down (%d left)", n)
	}
	if n := streamMsgs(t, e.js, queue.DeferredStream(e.nopts)); n != 0 {
		t.Fatalf("a store outage was counted as a recipient failure (%d deferred)", n)
	}
	e.store.start(t)
	waitFor(t, "delivery after the store is back", func() bool { return streamMsgs(t, e.js, e.nopts.QueueStream()) == 0 })
	if n := e.inbox(alice); n != 1 {
		t.Fatalf("INBOX holds %d messages, want 1", n)
	}
}

// TestNATSRestart: the NATS server (embedded, on disk) restarts while
// entries are being delivered; every entry is delivered exactly once.
func TestNATSRestart(t *testing.T) {
	e := newEnv(t)
	srv := embeddedtest.Start(t)
	js := connectJS(t, srv.ClientURL())
	ctx := testCtx(t)
	if err := natsx.EnsureStreams(ctx, js, e.nopts); err != nil {
		t.Fatal(err)
	}
	if err := queue.EnsureDeferred(ctx, js, e.nopts); err != nil {
		t.Fatal(err)
	}
	rcpts := []string{e.account("alice"), e.account("bob")}
	const n = 40
	for i := range n {
		e.publish(js, e.entry(qid("QNR", i), "sender@remote.test", rcpts[i%2]), qid("QNR", i))
	}
	var attempts atomic.Int32
	halfway := make(chan struct{})
	var once sync.Once
	e.runConsumer(consumerOpts{js: js, wrap: func(a queue.Attempter) queue.Attempter {
		return attempterFunc(func(ctx context.Context, entry *queuev1.QueueEntry, pending []int) (queue.Attempt, error) {
			if attempts.Add(1) == n/4 {
				once.Do(func() { close(halfway) })
			}
			return a.Attempt(ctx, entry, pending)
		})
	}})
	<-halfway
	srv.Restart()
	waitFor(t, "every entry to be acknowledged after the restart", func() bool {
		return streamMsgs(t, js, e.nopts.QueueStream()) == 0
	})
	if a, b := e.inbox(rcpts[0]), e.inbox(rcpts[1]); a != n/2 || b != n/2 {
		t.Fatalf("INBOXes hold %d and %d messages, want %d each", a, b, n/2)
	}
}

// TestUnknownUserBouncesAndFreesObject: a recipient that does not exist is
// a permanent failure; the entry is finished and, since no mailbox
// references the object, delivery deletes it. The null sender gets no
// bounce.
func TestUnknownUserBouncesAndFreesObject(t *testing.T) {
	e := newEnv(t)
	b := &recordingBouncer{}
	en := e.entry("QUNKNOWN", "sender@remote.test", "nobody@"+e.domain)
	nullSender := e.entry("QNULL", "", "nobody@"+e.domain)
	e.publish(e.js, en, en.GetQueueId())
	e.publish(e.js, nullSender, nullSender.GetQueueId())
	e.runConsumer(consumerOpts{bouncer: b})
	waitFor(t, "the entries to be finished", func() bool { return streamMsgs(t, e.js, e.nopts.QueueStream()) == 0 })
	for _, key := range []string{en.GetBlobKey(), nullSender.GetBlobKey()} {
		waitFor(t, "the object to be deleted", func() bool {
			_, err := e.blobs.Stat(testCtx(t), key)
			return errors.Is(err, blob.ErrNotFound)
		})
	}
	got := b.bounced()
	if len(got) != 1 || got[0] != "QUNKNOWN nobody@"+e.domain+" 550 5.1.1 mailbox unavailable: no such user" {
		t.Fatalf("bounces: %q", got)
	}
}

// TestOverQuota: a full mailbox defers the recipient (the deferred item
// carries the reply) and bounces once the message is older than the
// over-quota limit.
func TestOverQuota(t *testing.T) {
	e := newEnv(t)
	full := e.account("full")
	if _, err := e.operator.Admin.UpdateAccount(testCtx(t), updateQuota(full, 10)); err != nil {
		t.Fatalf("set quota: %v", err)
	}
	b := &recordingBouncer{}
	en := e.entry("QFULL", "sender@remote.test", full)
	e.publish(e.js, en, en.GetQueueId())
	// Each retry comes after 50-100 ms; after 1.5 s the message is old
	// enough to bounce.
	e.runConsumer(consumerOpts{bouncer: b, overQuota: 1500 * time.Millisecond, schedule: retry.Schedule{
		Floor: 50 * time.Millisecond, Ceiling: 100 * time.Millisecond, Jitter: 1, Lifetime: time.Hour,
	}})
	waitFor(t, "the bounce", func() bool { return len(b.bounced()) == 1 })
	waitFor(t, "the queue to empty", func() bool {
		return streamMsgs(t, e.js, e.nopts.QueueStream()) == 0 && streamMsgs(t, e.js, queue.DeferredStream(e.nopts)) == 0
	})
	if got := b.bounced()[0]; got != "QFULL "+full+" 552 5.2.2 mailbox full" {
		t.Fatalf("bounce: %q", got)
	}
	if n := e.inbox(full); n != 0 {
		t.Fatalf("full INBOX got %d messages", n)
	}
}

var _ = testenv.Prefix

// TestTraceHeaders: every copy starts with Return-Path: and Delivered-To:
// for its own recipient, as Postfix's local delivery writes them, before
// the shared object (the Received: smtp wrote); the null sender is <>.
func TestTraceHeaders(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.account("alice"), e.account("bob")
	en := e.entry("QTRACE", "sender@remote.test", alice, bob)
	en.Recipients[1] = e.resolved(bob)
	dsn := e.entry("QTRACENULL", "", alice)
	e.publish(e.js, en, en.GetQueueId())
	e.publish(e.js, dsn, dsn.GetQueueId())
	e.runConsumer(consumerOpts{})
	waitFor(t, "both deliveries", func() bool { return e.inbox(alice) == 2 && e.inbox(bob) == 1 })
	want := map[string]string{
		"alice": "Return-Path: <sender@remote.test>\r\nDelivered-To: " + alice + "\r\nReceived: from test\r\n",
		"bob":   "Return-Path: <sender@remote.test>\r\nDelivered-To: " + bob + "\r\nReceived: from test\r\n",
	}
	got := map[string]string{"alice": e.messageBody(alice, 1), "bob": e.messageBody(bob, 1)}
	if !strings.HasPrefix(got["alice"], "Return-Path: <sender@remote.test>") {
		// The two entries may arrive in either order.
		got["alice"] = e.messageBody(alice, 2)
	}
	for who, w := range want {
		if !strings.HasPrefix(got[who], w) {
			t.Errorf("%s's copy starts %q, want %q", who, got[who][:min(len(got[who]), 120)], w)
		}
	}
	null := e.messageBody(alice, 1)
	if !strings.HasPrefix(null, "Return-Path: <>") {
		null = e.messageBody(alice, 2)
	}
	if w := "Return-Path: <>\r\nDelivered-To: " + alice + "\r\n"; !strings.HasPrefix(null, w) {
		t.Errorf("null sender copy starts %q, want %q", null[:min(len(null), 120)], w)
	}
}

// TestOverQuotaRetryOutlivesGCGrace: the first attempt to a full mailbox
// records the object with no reference; the store's collector (grace
// 100 ms here, an hour by default) would delete its bytes before the
// retries (every 400-800 ms here, up to a day by default) if the queue
// entry did not hold it. Once the quota is raised, the retry delivers the
// message whole.
func TestOverQuotaRetryOutlivesGCGrace(t *testing.T) {
	e := newEnvWith(t, "--gc-grace=100ms", "--gc-interval=20ms")
	full := e.account("full")
	if _, err := e.operator.Admin.UpdateAccount(testCtx(t), updateQuota(full, 10)); err != nil {
		t.Fatalf("set quota: %v", err)
	}
	en := e.entry("QHELD", "sender@remote.test", full)
	// Resolved at RCPT time, as smtp sends it: the attempt is a store
	// Deliver (which records the object), not a look-up that stops at the
	// quota.
	en.Recipients[0] = e.resolved(full)
	e.publish(e.js, en, en.GetQueueId())
	var attempts atomic.Int32
	e.runConsumer(consumerOpts{
		overQuota: time.Hour,
		schedule:  retry.Schedule{Floor: 400 * time.Millisecond, Ceiling: 800 * time.Millisecond, Jitter: 1, Lifetime: time.Hour},
		wrap: func(a queue.Attempter) queue.Attempter {
			return attempterFunc(func(ctx context.Context, entry *queuev1.QueueEntry, pending []int) (queue.Attempt, error) {
				att, err := a.Attempt(ctx, entry, pending)
				attempts.Add(1)
				return att, err
			})
		},
	})
	// Three attempts: two gaps, each several grace periods and many
	// collector runs long.
	waitFor(t, "three attempts", func() bool { return attempts.Load() >= 3 })
	if _, err := e.blobs.Stat(testCtx(t), en.GetBlobKey()); err != nil {
		t.Fatalf("the object of a deferred entry was collected: %v", err)
	}
	if _, err := e.operator.Admin.UpdateAccount(testCtx(t), updateQuota(full, 0)); err != nil {
		t.Fatalf("raise quota: %v", err)
	}
	waitFor(t, "the delivery", func() bool { return e.inbox(full) == 1 })
	waitFor(t, "the queue to empty", func() bool {
		return streamMsgs(t, e.js, e.nopts.QueueStream()) == 0 && streamMsgs(t, e.js, queue.DeferredStream(e.nopts)) == 0
	})
}

// flakyHolds fails the first Release and records the rest.
type flakyHolds struct {
	queue.Holder
	mu       sync.Mutex
	failed   int
	released chan string // keys released
}

func (h *flakyHolds) Release(ctx context.Context, key, queueID string) error {
	h.mu.Lock()
	first := h.failed == 0
	if first {
		h.failed++
	}
	h.mu.Unlock()
	if first {
		return errors.New("store unavailable (test)")
	}
	if err := h.Holder.Release(ctx, key, queueID); err != nil {
		return err
	}
	h.released <- key
	return nil
}

// TestHoldReleaseRetried: a finished entry whose hold cannot be released
// (the store is away at that moment) comes back from the deferred stream
// with nothing to deliver, and its next pass releases the hold; the
// message is delivered once and the queue ends empty.
func TestHoldReleaseRetried(t *testing.T) {
	e := newEnv(t)
	full := e.account("full")
	if _, err := e.operator.Admin.UpdateAccount(testCtx(t), updateQuota(full, 10)); err != nil {
		t.Fatalf("set quota: %v", err)
	}
	en := e.entry("QRELEASE", "sender@remote.test", full)
	en.Recipients[0] = e.resolved(full) // a store Deliver: the object is recorded, then held
	e.publish(e.js, en, en.GetQueueId())
	holds := &flakyHolds{released: make(chan string, 1)}
	var attempts atomic.Int32
	e.runConsumer(consumerOpts{
		overQuota: time.Hour,
		schedule:  retry.Schedule{Floor: 200 * time.Millisecond, Ceiling: 400 * time.Millisecond, Jitter: 1, Lifetime: time.Hour},
		holds:     func(h queue.Holder) queue.Holder { holds.Holder = h; return holds },
		wrap: func(a queue.Attempter) queue.Attempter {
			return attempterFunc(func(ctx context.Context, entry *queuev1.QueueEntry, pending []int) (queue.Attempt, error) {
				attempts.Add(1)
				return a.Attempt(ctx, entry, pending)
			})
		},
	})
	waitFor(t, "an over-quota attempt", func() bool { return attempts.Load() >= 1 })
	if _, err := e.operator.Admin.UpdateAccount(testCtx(t), updateQuota(full, 0)); err != nil {
		t.Fatalf("raise quota: %v", err)
	}
	select {
	case key := <-holds.released:
		if key != en.GetBlobKey() {
			t.Errorf("released %s, want %s", key, en.GetBlobKey())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the hold was never released")
	}
	holds.mu.Lock()
	if holds.failed != 1 {
		t.Errorf("%d failed releases, want 1", holds.failed)
	}
	holds.mu.Unlock()
	if n := e.inbox(full); n != 1 {
		t.Errorf("INBOX holds %d messages, want 1", n)
	}
	n := attempts.Load()
	waitFor(t, "the queue to empty", func() bool {
		return streamMsgs(t, e.js, e.nopts.QueueStream()) == 0 && streamMsgs(t, e.js, queue.DeferredStream(e.nopts)) == 0
	})
	if got := attempts.Load(); got != n {
		t.Errorf("%d delivery attempts after the delivery; the release pass must attempt nothing", got-n)
	}
}

// TestCarriedResolution: a recipient that smtp resolved at RCPT time is
// delivered to the accounts the entry names, without another look-up (the
// address here would not resolve at all); one without is resolved.
func TestCarriedResolution(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.account("alice"), e.account("bob")
	en := e.entry("QCARRIED", "sender@remote.test", "renamed@"+e.domain, bob)
	carried := e.resolved(alice)
	carried.Address = "renamed@" + e.domain
	en.Recipients[0] = carried
	e.publish(e.js, en, en.GetQueueId())
	e.runConsumer(consumerOpts{})
	waitFor(t, "the entry to be acknowledged", func() bool { return streamMsgs(t, e.js, e.nopts.QueueStream()) == 0 })
	if a, b := e.inbox(alice), e.inbox(bob); a != 1 || b != 1 {
		t.Fatalf("INBOXes: alice %d, bob %d; want 1 each", a, b)
	}
}
