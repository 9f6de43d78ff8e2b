package delivery_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	deliveryv1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/delivery/v1"
	queuev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/queue/v1"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/petrel-mail/petrel/platform/blob"
	"github.com/petrel-mail/petrel/services/delivery/internal/admin"
	"github.com/petrel-mail/petrel/services/delivery/internal/queue"
	"github.com/petrel-mail/petrel/services/delivery/internal/retry"
	"github.com/petrel-mail/petrel/services/store/storeclient"
)

// scriptedOutbound answers the n-th Send of each entry with the n-th reply
// of its script (the last one from then on).
type scriptedOutbound struct {
	mu     sync.Mutex
	script []queue.Result
	calls  int
	per    map[string]int
}

func (o *scriptedOutbound) Send(_ context.Context, entry *queuev1.QueueEntry, rcpts []int) ([]queue.Result, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.per == nil {
		o.per = map[string]int{}
	}
	r := o.script[min(o.per[entry.GetQueueId()], len(o.script)-1)]
	o.per[entry.GetQueueId()]++
	o.calls++
	var out []queue.Result
	for _, i := range rcpts {
		r.Index = i
		out = append(out, r)
	}
	return out, nil
}

func (o *scriptedOutbound) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.calls
}

// adminClient serves the queue admin API; resume is its Options.Resume
// (may be nil).
func (e *env) adminClient(resume func(context.Context, []string)) deliveryv1.QueueAdminServiceClient {
	e.t.Helper()
	srv, err := admin.New(admin.Options{JS: e.js, NATS: e.nopts, Blobs: e.blobs, Verifier: &admin.StoreVerifier{Admin: e.service.Admin},
		Resume: resume})
	if err != nil {
		e.t.Fatal(err)
	}
	gs := grpc.NewServer()
	deliveryv1.RegisterQueueAdminServiceServer(gs, srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	go gs.Serve(ln)
	e.t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cc.Close() })
	return deliveryv1.NewQueueAdminServiceClient(cc)
}

// TestDeferredEntryAdmin: a remote recipient that fails temporarily makes
// the entry DEFERRED with its reply recorded; the admin API lists, shows and
// counts it; "retry now" makes the next attempt happen at once, which
// delivers, and the object (never seen by the store) is deleted.
func TestDeferredEntryAdmin(t *testing.T) {
	e := newEnv(t)
	var (
		mu      sync.Mutex
		resumed [][]string // Options.Resume's calls
	)
	adm := e.adminClient(func(_ context.Context, domains []string) {
		mu.Lock()
		defer mu.Unlock()
		resumed = append(resumed, domains)
	})
	ctx := storeclient.WithToken(testCtx(t), e.opToken)
	out := &scriptedOutbound{script: []queue.Result{
		{Outcome: queue.Temporary, Reply: "451 4.7.1 greylisted, try later"},
		{Outcome: queue.Delivered, Reply: "250 2.0.0 ok"},
	}}
	en := e.entry("QREMOTE", "alice@"+e.domain, "bob@remote.test")
	other := e.entry("QOTHER", "carol@"+e.domain, "dave@elsewhere.test")
	reg := prometheus.NewRegistry()
	e.runConsumer(consumerOpts{outbound: out, registry: reg, schedule: retry.Schedule{Floor: time.Hour, Ceiling: 4 * time.Hour, Jitter: 1, Lifetime: 24 * time.Hour}})
	e.publish(e.js, en, en.GetQueueId())
	e.publish(e.js, other, other.GetQueueId())
	waitFor(t, "both entries to be deferred", func() bool {
		return streamMsgs(t, e.js, queue.DeferredStream(e.nopts)) == 2 && streamMsgs(t, e.js, e.nopts.QueueStream()) == 0
	})
	// What an administrator's dashboard shows (mailq | tail -1).
	if a, d := metricValue(t, reg, "petrel_delivery_queue_entries", "state", "active"),
		metricValue(t, reg, "petrel_delivery_queue_entries", "state", "deferred"); a != 0 || d != 2 {
		t.Errorf("queue entries metric: active %v deferred %v, want 0 and 2", a, d)
	}

	counts, err := adm.CountQueueEntries(ctx, &deliveryv1.CountQueueEntriesRequest{})
	if err != nil || counts.GetActive() != 0 || counts.GetDeferred() != 2 {
		t.Fatalf("counts: %v %v", counts, err)
	}
	list, err := adm.ListQueueEntries(ctx, &deliveryv1.ListQueueEntriesRequest{RecipientDomain: "REMOTE.test"})
	if err != nil || len(list.GetItems()) != 1 {
		t.Fatalf("list by domain: %v %v", list, err)
	}
	item := list.GetItems()[0]
	rs := item.GetRecipients()[0]
	if item.GetEntry().GetQueueId() != "QREMOTE" || item.GetState() != deliveryv1.QueueState_QUEUE_STATE_DEFERRED ||
		item.GetAttempts() != 1 || rs.GetOutcome() != deliveryv1.RecipientOutcome_RECIPIENT_OUTCOME_DEFERRED ||
		rs.GetLastReply() != "451 4.7.1 greylisted, try later" || !item.GetNextAttemptAt().AsTime().After(time.Now().Add(50*time.Minute)) {
		t.Fatalf("deferred item: %v", item)
	}
	if list, err := adm.ListQueueEntries(ctx, &deliveryv1.ListQueueEntriesRequest{Sender: "carol@" + e.domain, State: deliveryv1.QueueState_QUEUE_STATE_DEFERRED}); err != nil || len(list.GetItems()) != 1 || list.GetItems()[0].GetEntry().GetQueueId() != "QOTHER" {
		t.Fatalf("list by sender: %v %v", list, err)
	}
	page, err := adm.ListQueueEntries(ctx, &deliveryv1.ListQueueEntriesRequest{PageSize: 1})
	if err != nil || len(page.GetItems()) != 1 || page.GetNextPageToken() == "" {
		t.Fatalf("first page: %v %v", page, err)
	}
	page2, err := adm.ListQueueEntries(ctx, &deliveryv1.ListQueueEntriesRequest{PageSize: 1, PageToken: page.GetNextPageToken()})
	if err != nil || len(page2.GetItems()) != 1 || page2.GetItems()[0].GetEntry().GetQueueId() == page.GetItems()[0].GetEntry().GetQueueId() {
		t.Fatalf("second page: %v %v", page2, err)
	}
	if _, err := adm.GetQueueEntry(ctx, &deliveryv1.GetQueueEntryRequest{QueueId: "NOPE"}); status.Code(err) != codes.NotFound {
		t.Fatalf("get a missing entry: %v", err)
	}

	if _, err := adm.RetryQueueEntry(ctx, &deliveryv1.RetryQueueEntryRequest{QueueId: "QREMOTE"}); err != nil {
		t.Fatal(err)
	}
	// A retry is meant to try now: the suspension of the destination of
	// its unfinished recipients, if any, ends (Remote.Resume).
	mu.Lock()
	if len(resumed) != 1 || len(resumed[0]) != 1 || resumed[0][0] != "remote.test" {
		t.Errorf("retry resumed %q, want [[remote.test]]", resumed)
	}
	mu.Unlock()
	waitFor(t, "the retried entry to be delivered", func() bool {
		_, err := adm.GetQueueEntry(ctx, &deliveryv1.GetQueueEntryRequest{QueueId: "QREMOTE"})
		return status.Code(err) == codes.NotFound
	})
	if n := out.count(); n != 3 {
		t.Fatalf("outbound called %d times, want 3 (two first attempts, one retry)", n)
	}
	if n := metricValue(t, reg, "petrel_delivery_delay_seconds", "outcome", "delivered"); n != 1 {
		t.Errorf("delivery delay observed for %v delivered recipients, want 1", n)
	}
	if n := metricValue(t, reg, "petrel_delivery_recipient_attempts_total", "outcome", "deferred"); n != 2 {
		t.Errorf("%v deferred attempts counted, want 2", n)
	}
	if d := metricValue(t, reg, "petrel_delivery_queue_entries", "state", "deferred"); d != 1 {
		t.Errorf("queue entries metric after the retry: deferred %v, want 1", d)
	}
	waitFor(t, "the object of the delivered remote-only entry to be deleted", func() bool {
		_, err := e.blobs.Stat(testCtx(t), en.GetBlobKey())
		return errors.Is(err, blob.ErrNotFound)
	})

	if _, err := adm.DeleteQueueEntry(ctx, &deliveryv1.DeleteQueueEntryRequest{QueueId: "QOTHER"}); err != nil {
		t.Fatal(err)
	}
	if counts, err := adm.CountQueueEntries(ctx, &deliveryv1.CountQueueEntriesRequest{}); err != nil || counts.GetDeferred() != 0 {
		t.Fatalf("counts after delete: %v %v", counts, err)
	}
	if _, err := e.blobs.Stat(testCtx(t), other.GetBlobKey()); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("object of a deleted remote-only entry: %v", err)
	}
}

// TestAdminNeedsOperator: no token, a service token, a tenant's forged
// operator claim: refused; the operator token: accepted.
func TestAdminNeedsOperator(t *testing.T) {
	e := newEnv(t)
	adm := e.adminClient(nil)
	req := &deliveryv1.CountQueueEntriesRequest{}
	if _, err := adm.CountQueueEntries(testCtx(t), req); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no token: %v", err)
	}
	if _, err := adm.CountQueueEntries(storeclient.WithToken(testCtx(t), e.svcToken), req); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("service token: %v", err)
	}
	// The delivery token's claims rewritten to say "operator": the store's
	// signature no longer matches.
	parts := strings.Split(e.svcToken, ".")
	claims, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	forged := strings.Replace(string(claims), `"knd":"service"`, `"knd":"operator"`, 1)
	if forged == string(claims) {
		t.Fatalf("unexpected claims %s", claims)
	}
	parts[2] = base64.RawURLEncoding.EncodeToString([]byte(forged))
	if _, err := adm.CountQueueEntries(storeclient.WithToken(testCtx(t), strings.Join(parts, ".")), req); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("forged token: %v", err)
	}
	if _, err := adm.CountQueueEntries(storeclient.WithToken(testCtx(t), e.opToken), req); err != nil {
		t.Fatalf("operator token: %v", err)
	}
}
