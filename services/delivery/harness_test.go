package delivery_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	deliveryv1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/delivery/v1"
	queuev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/queue/v1"
	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/petrel-mail/petrel/platform/blob"
	"github.com/petrel-mail/petrel/platform/blob/s3blob"
	"github.com/petrel-mail/petrel/platform/lifecycle/lifecycletest"
	"github.com/petrel-mail/petrel/platform/natsx"
	"github.com/petrel-mail/petrel/platform/testenv"
	"github.com/petrel-mail/petrel/services/delivery"
	"github.com/petrel-mail/petrel/services/delivery/internal/local"
	"github.com/petrel-mail/petrel/services/delivery/internal/queue"
	"github.com/petrel-mail/petrel/services/delivery/internal/retry"
	"github.com/petrel-mail/petrel/services/store/storeclient"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// buildStore compiles the real petrel-store (the Go build cache makes
// every build after the first a link).
func buildStore(t testing.TB) string {
	return lifecycletest.Build(t, "../store/cmd/petrel-store")
}

// storeProc is a running petrel-store binary on a fixed loopback port, so
// that it can be stopped and started again at the same address.
type storeProc struct {
	bin  string
	args []string
	addr string
	proc *lifecycletest.Process
}

func (s *storeProc) start(t testing.TB) {
	t.Helper()
	p, addrs := lifecycletest.Start(t, s.bin, append(s.args, "--grpc-listen="+s.addr)...)
	if addrs["grpc"] != s.addr {
		t.Fatalf("store listens on %s, want %s", addrs["grpc"], s.addr)
	}
	s.proc = p
}

func (s *storeProc) stop(t testing.TB) {
	t.Helper()
	if code := s.proc.Terminate(t); code != 0 {
		t.Fatalf("store exit code %d:\n%s", code, s.proc.Output())
	}
}

// env is one test's world: a real store (PostgreSQL, MinIO), its own
// streams on the shared NATS server, a tenant with accounts.
type env struct {
	t        testing.TB
	store    *storeProc
	operator *storeclient.Client // operator token
	service  *storeclient.Client // delivery service token
	opToken  string
	svcToken string
	blobs    blob.Store
	nopts    natsx.Options
	js       jetstream.JetStream
	tenantID string
	domain   string
	password string
}

var envSeq atomic.Int64

func newEnv(t testing.TB) *env {
	t.Helper()
	return newEnvWith(t)
}

// newEnvWith starts the environment with extra petrel-store flags.
func newEnvWith(t testing.TB, storeArgs ...string) *env {
	t.Helper()
	s3 := testenv.NewBucket(t)
	dataDir := t.TempDir()
	e := &env{t: t, password: "correct horse battery"}
	e.store = &storeProc{
		bin:  buildStore(t),
		addr: testenv.FreeAddr(t),
		args: []string{
			"--postgres-url=" + testenv.NewDatabase(t),
			"--s3-endpoint=" + s3.Endpoint, "--s3-bucket=" + s3.Bucket,
			"--s3-access-key=" + s3.AccessKey, "--s3-secret-key=" + s3.SecretKey, "--s3-region=" + s3.Region, "--s3-tls=false",
			"--nats-url=" + testenv.NATSURL(t), "--nats-subject-prefix=" + testenv.Prefix(),
			"--dev-generate-secrets", "--data-dir=" + dataDir,
			"--metrics-listen=127.0.0.1:0", "--log-format=text",
		},
	}
	e.store.args = append(e.store.args, storeArgs...)
	e.store.start(t)
	var err error
	if e.opToken, err = storeclient.ReadTokenFile(filepath.Join(dataDir, "operator.token")); err != nil {
		t.Fatal(err)
	}
	if e.svcToken, err = storeclient.ReadTokenFile(filepath.Join(dataDir, "delivery.token")); err != nil {
		t.Fatal(err)
	}
	if e.operator, err = storeclient.Dial(e.store.addr, storeclient.Options{Insecure: true, Token: e.opToken}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.operator.Close() })
	if e.service, err = storeclient.Dial(e.store.addr, storeclient.Options{Insecure: true, Token: e.svcToken}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.service.Close() })
	if e.blobs, err = s3blob.New(s3blob.Config{Endpoint: s3.Endpoint, Bucket: s3.Bucket, AccessKey: s3.AccessKey, SecretKey: s3.SecretKey, Region: s3.Region}); err != nil {
		t.Fatal(err)
	}

	ctx := testCtx(t)
	n := envSeq.Add(1)
	e.domain = fmt.Sprintf("d%d.example.test", n)
	ten, err := e.operator.Admin.CreateTenant(ctx, &storev1.CreateTenantRequest{Name: fmt.Sprintf("tenant%d", n)})
	if err != nil {
		t.Fatalf("create tenant: %v", err)
	}
	e.tenantID = ten.GetTenant().GetId()
	if _, err := e.operator.Admin.CreateDomain(ctx, &storev1.CreateDomainRequest{Tenant: ten.GetTenant().GetName(), Name: e.domain}); err != nil {
		t.Fatalf("create domain: %v", err)
	}

	e.nopts = natsx.Options{Prefix: fmt.Sprintf("%s_d%d", testenv.Prefix(), n), DeliveryAckWait: 3 * time.Second}
	e.js = connectJS(t, testenv.NATSURL(t))
	if err := natsx.EnsureStreams(ctx, e.js, e.nopts); err != nil {
		t.Fatal(err)
	}
	if err := queue.EnsureDeferred(ctx, e.js, e.nopts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = natsx.DeleteStreams(ctx, e.js, e.nopts)
		_ = queue.DeleteDeferred(ctx, e.js, e.nopts)
	})
	return e
}

func connectJS(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	nc, js, err := natsx.Connect(context.Background(), natsx.Config{
		URLs: []string{url}, Name: "delivery-test",
		ReconnectWait: 10 * time.Millisecond, MaxReconnectWait: 100 * time.Millisecond, ReconnectJitter: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if err := natsx.WaitConnected(testCtx(t), nc); err != nil {
		t.Fatal(err)
	}
	return js
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func (e *env) account(local string) string {
	e.t.Helper()
	addr := local + "@" + e.domain
	if _, err := e.operator.Admin.CreateAccount(testCtx(e.t), &storev1.CreateAccountRequest{Address: addr, Password: e.password}); err != nil {
		e.t.Fatalf("create account %s: %v", addr, err)
	}
	return addr
}

// inbox counts the messages in the INBOX of addr, read through the store
// with the account's own session token.
func (e *env) inbox(addr string) int {
	e.t.Helper()
	ctx := testCtx(e.t)
	auth, err := e.operator.Directory.Authenticate(ctx, &storev1.AuthenticateRequest{Username: addr, Password: e.password, Service: "imap", RemoteIp: "127.0.0.1"})
	if err != nil {
		e.t.Fatalf("authenticate %s: %v", addr, err)
	}
	st, err := e.operator.Mailboxes.GetMailboxStatus(storeclient.WithToken(ctx, auth.GetSessionToken()), &storev1.GetMailboxStatusRequest{Name: "INBOX"})
	if err != nil {
		e.t.Fatalf("INBOX status of %s: %v", addr, err)
	}
	return int(st.GetStatus().GetMessages())
}

// entry writes a small message object and returns its queue entry.
func (e *env) entry(queueID, from string, rcpts ...string) *queuev1.QueueEntry {
	e.t.Helper()
	body := fmt.Sprintf("Received: from test\r\nFrom: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <%s@test>\r\nDate: %s\r\n\r\nHello.\r\n",
		from, strings.Join(rcpts, ">, <"), queueID, queueID, time.Now().Format(time.RFC1123Z))
	return e.entryOf(queueID, from, body, rcpts...)
}

// entryOf writes body as a message object and returns its queue entry.
func (e *env) entryOf(queueID, from, body string, rcpts ...string) *queuev1.QueueEntry {
	e.t.Helper()
	now := time.Now()
	key := fmt.Sprintf("msg/%s/%04d/%02d/%02d/%s", e.tenantID, now.Year(), now.Month(), now.Day(), queueID)
	info, err := e.blobs.Put(testCtx(e.t), key, strings.NewReader(body))
	if err != nil {
		e.t.Fatalf("put %s: %v", key, err)
	}
	// As smtp writes it: with the SHA-256 of the object and, the message
	// being small, a copy of its bytes.
	sum := sha256.Sum256([]byte(body))
	en := &queuev1.QueueEntry{QueueId: queueID, TenantId: e.tenantID, BlobKey: key, Size: info.Size, MailFrom: from, ReceivedAt: timestamppb.New(now),
		Sha256: hex.EncodeToString(sum[:]), Content: []byte(body)}
	for _, r := range rcpts {
		en.Recipients = append(en.Recipients, &queuev1.Recipient{Address: r, Local: strings.HasSuffix(r, "@"+e.domain)})
	}
	return en
}

func (e *env) publish(js jetstream.JetStream, en *queuev1.QueueEntry, msgID string) {
	e.t.Helper()
	data, err := proto.Marshal(en)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := natsx.PublishDedup(testCtx(e.t), js, e.nopts.QueueInboundSubject(), msgID, data); err != nil {
		e.t.Fatal(err)
	}
}

func streamMsgs(t testing.TB, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	ctx := testCtx(t)
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	return info.State.Msgs
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// consumerOpts are a consumer's settings in tests: fast backoffs.
type consumerOpts struct {
	js          jetstream.JetStream
	wrap        func(queue.Attempter) queue.Attempter
	outbound    delivery.Outbound
	schedule    retry.Schedule
	overQuota   time.Duration
	bouncer     queue.Bouncer
	concurrency int
	quiet       bool
	registry    *prometheus.Registry // the consumer's metrics, if set
	// holds, if set, wraps the consumer's Holder.
	holds func(queue.Holder) queue.Holder
}

// runConsumer starts a delivery consumer; the returned func stops it and
// waits until it has.
func (e *env) runConsumer(co consumerOpts) (stop func()) {
	e.t.Helper()
	loc, err := local.New(local.Options{Directory: e.service.Directory, Messages: e.service.Messages, OverQuotaBounceAfter: co.overQuota})
	if err != nil {
		e.t.Fatal(err)
	}
	var att queue.Attempter = &delivery.Attempter{Local: loc, Outbound: co.outbound}
	if co.wrap != nil {
		att = co.wrap(att)
	}
	if co.js == nil {
		co.js = e.js
	}
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() && !co.quiet {
		log = slog.New(slog.NewTextHandler(tWriter{e.t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	var holds queue.Holder = local.Holds{Messages: e.service.Messages}
	if co.holds != nil {
		holds = co.holds(holds)
	}
	c, err := queue.New(queue.Options{
		JS: co.js, NATS: e.nopts, Attempter: att, Blobs: e.blobs, Holds: holds,
		Schedule: co.schedule, Bouncer: co.bouncer,
		Concurrency: max(co.concurrency, 8), UnavailableBackoff: 20 * time.Millisecond, UnavailableBackoffMax: 200 * time.Millisecond,
		Logger: log, Registry: registerer(co.registry),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				e.t.Errorf("consumer: %v", err)
			}
		})
	}
	e.t.Cleanup(stop)
	return stop
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// attempterFunc adapts a func to queue.Attempter.
type attempterFunc func(ctx context.Context, entry *queuev1.QueueEntry, pending []int) (queue.Attempt, error)

func (f attempterFunc) Attempt(ctx context.Context, entry *queuev1.QueueEntry, pending []int) (queue.Attempt, error) {
	return f(ctx, entry, pending)
}

func qid(prefix string, i int) string { return prefix + strconv.Itoa(i) }

func updateQuota(addr string, bytes int64) *storev1.UpdateAccountRequest {
	return &storev1.UpdateAccountRequest{Address: addr, QuotaBytes: proto.Int64(bytes)}
}

// recordingBouncer records bounces as "<queue id> <address> <reply>".
type recordingBouncer struct {
	mu   sync.Mutex
	list []string
}

func (b *recordingBouncer) Bounce(_ context.Context, item *deliveryv1.QueueItem, failed []int) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, i := range failed {
		st := item.GetRecipients()[i]
		b.list = append(b.list, item.GetEntry().GetQueueId()+" "+st.GetRecipient().GetAddress()+" "+st.GetLastReply())
	}
	return nil
}

func (b *recordingBouncer) Delay(context.Context, *deliveryv1.QueueItem, []int, time.Time) error {
	return nil
}

func (b *recordingBouncer) bounced() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.list...)
}

// resolved is the queue recipient smtp writes for a local address: with
// the store's resolution at RCPT time.
func (e *env) resolved(addr string) *queuev1.Recipient {
	e.t.Helper()
	res, err := e.service.Directory.ResolveRecipient(testCtx(e.t), &storev1.ResolveRecipientRequest{Address: addr})
	if err != nil || res.GetStatus() != storev1.RecipientStatus_RECIPIENT_STATUS_LOCAL {
		e.t.Fatalf("resolve %s: %v %v", addr, res.GetStatus(), err)
	}
	r := &queuev1.Recipient{Address: addr, Local: true, TenantId: res.GetTenantId()}
	for _, a := range res.GetAccounts() {
		r.AccountIds = append(r.AccountIds, a.GetAccountId())
	}
	return r
}

// metricValue is the value of the gauge, counter or histogram count name
// with label=value in reg (-1: no such sample).
func metricValue(t testing.TB, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() != label || lp.GetValue() != value {
					continue
				}
				switch {
				case m.GetGauge() != nil:
					return m.GetGauge().GetValue()
				case m.GetCounter() != nil:
					return m.GetCounter().GetValue()
				case m.GetHistogram() != nil:
					return float64(m.GetHistogram().GetSampleCount())
				}
			}
		}
	}
	return -1
}

// registerer is reg as an interface value: nil stays nil.
func registerer(reg *prometheus.Registry) prometheus.Registerer {
	if reg == nil {
		return nil
	}
	return reg
}
