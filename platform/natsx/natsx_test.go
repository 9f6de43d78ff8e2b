package natsx_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/petrel-mail/petrel/platform/natsx"
	"github.com/petrel-mail/petrel/platform/natsx/embedded"
	"github.com/petrel-mail/petrel/platform/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// logBuffer collects log output safely across goroutines; NATS callbacks may
// run after a test has finished, so tests cannot log through t.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func startEmbedded(t *testing.T, dir string, port int) *embedded.Server {
	t.Helper()
	srv, err := embedded.Start(embedded.Config{StoreDir: dir, Port: port})
	if err != nil {
		t.Fatalf("start embedded nats: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// fastConfig reconnects quickly so tests that restart servers finish fast.
func fastConfig(logs *logBuffer, urls ...string) natsx.Config {
	return natsx.Config{
		URLs:             urls,
		Name:             "natsx-test",
		ReconnectWait:    10 * time.Millisecond,
		MaxReconnectWait: 100 * time.Millisecond,
		ReconnectJitter:  10 * time.Millisecond,
		Logger:           logs.logger(),
	}
}

func connect(t *testing.T, cfg natsx.Config) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, js, err := natsx.Connect(context.Background(), cfg)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc, js
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func streamMsgs(t *testing.T, ctx context.Context, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream %s info: %v", name, err)
	}
	return info.State.Msgs
}

func portOf(t *testing.T, clientURL string) int {
	t.Helper()
	u, err := url.Parse(clientURL)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// fetchOne pulls one queue entry from the delivery consumer.
func fetchOne(t *testing.T, ctx context.Context, js jetstream.JetStream, o natsx.Options) jetstream.Msg {
	t.Helper()
	cons, err := natsx.OpenDeliveryConsumer(ctx, js, o)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(10*time.Second))
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	var got []jetstream.Msg
	for m := range batch.Messages() {
		got = append(got, m)
	}
	if err := batch.Error(); err != nil {
		t.Fatalf("fetch: %v", err)
	}
	if len(got) != 1 {
		t.Fatalf("fetched %d messages, want 1", len(got))
	}
	return got[0]
}

// ackAndExpectEmpty acknowledges m (with an in-progress ack first, as a slow
// delivery worker does) and checks the work queue drops it.
func ackAndExpectEmpty(t *testing.T, ctx context.Context, js jetstream.JetStream, o natsx.Options, m jetstream.Msg) {
	t.Helper()
	if err := m.InProgress(); err != nil {
		t.Fatalf("in progress: %v", err)
	}
	if err := m.DoubleAck(ctx); err != nil {
		t.Fatalf("ack: %v", err)
	}
	waitFor(t, "acked entry to leave the work queue", func() bool {
		return streamMsgs(t, ctx, js, o.QueueStream()) == 0
	})
}

// The acceptance test: a JetStream publish with a dedupe id that is
// acknowledged and still there after the embedded server restarts.
func TestPublishDedupSurvivesRestart(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	srv := startEmbedded(t, dir, 0)
	port := portOf(t, srv.ClientURL())
	logs := &logBuffer{}
	nc, js := connect(t, fastConfig(logs, srv.ClientURL()))
	if err := natsx.WaitConnected(ctx, nc); err != nil {
		t.Fatal(err)
	}
	o := natsx.Options{}
	if err := natsx.EnsureStreams(ctx, js, o); err != nil {
		t.Fatal(err)
	}

	subject := o.QueueInboundSubject()
	first, err := natsx.PublishDedup(ctx, js, subject, "Q0001", []byte("entry-1"))
	if err != nil {
		t.Fatal(err)
	}
	if first.Duplicate || first.Stream != o.QueueStream() {
		t.Fatalf("first publish: %+v", first)
	}
	again, err := natsx.PublishDedup(ctx, js, subject, "Q0001", []byte("entry-1"))
	if err != nil {
		t.Fatal(err)
	}
	if !again.Duplicate || again.Sequence != first.Sequence {
		t.Fatalf("second publish with the same id: %+v, want duplicate of seq %d", again, first.Sequence)
	}
	if n := streamMsgs(t, ctx, js, o.QueueStream()); n != 1 {
		t.Fatalf("stream holds %d messages, want 1", n)
	}

	srv.Shutdown()
	waitFor(t, "client to notice the server is gone", func() bool { return natsx.Ready(nc) != nil })

	// A new server on the same store and port: the client reconnects by
	// itself.
	startEmbedded(t, dir, port)
	if err := natsx.WaitConnected(ctx, nc); err != nil {
		t.Fatal(err)
	}
	if err := natsx.Ready(nc); err != nil {
		t.Fatalf("Ready after reconnect: %v", err)
	}
	// nats.go runs the reconnect handler, which logs, on its own
	// goroutine: the line may come after WaitConnected returns.
	for _, want := range []string{"nats disconnected", "nats reconnected"} {
		waitFor(t, "log line "+strconv.Quote(want), func() bool { return strings.Contains(logs.String(), want) })
	}
	// Starting again after a restart must be harmless.
	if err := natsx.EnsureStreams(ctx, js, o); err != nil {
		t.Fatal(err)
	}
	if n := streamMsgs(t, ctx, js, o.QueueStream()); n != 1 {
		t.Fatalf("after restart the stream holds %d messages, want 1", n)
	}
	// The de-duplication window survives the restart too: smtp retrying a
	// publish across a NATS restart does not queue the message twice.
	retried, err := natsx.PublishDedup(ctx, js, subject, "Q0001", []byte("entry-1"))
	if err != nil {
		t.Fatal(err)
	}
	if !retried.Duplicate {
		t.Fatalf("publish after restart with the same id: %+v, want duplicate", retried)
	}

	m := fetchOne(t, ctx, js, o)
	if string(m.Data()) != "entry-1" || m.Subject() != subject || m.Headers().Get(jetstream.MsgIDHeader) != "Q0001" {
		t.Fatalf("consumed %s %q headers %v", m.Subject(), m.Data(), m.Headers())
	}
	ackAndExpectEmpty(t, ctx, js, o, m)
}

// TestEnsureStreamsIdempotent: on an embedded server, one replica at a
// time. Concurrent replicas are TestSharedServer's, against the external
// server: run in this process under -race, nats-server v2.15.2 itself has
// a data race between a stream update and a consumer create
// (fileStore.UpdateConfig against fileStore.ConsumerStore) that the race
// detector reports as this test's failure.
func TestEnsureStreamsIdempotent(t *testing.T) {
	ctx := testCtx(t)
	srv := startEmbedded(t, t.TempDir(), 0)
	checkEnsureStreamsIdempotent(t, ctx, srv.ClientURL(), natsx.Options{}, 1)
}

// checkEnsureStreamsIdempotent starts replicas "replicas" at once on a
// server where the streams do not exist yet, then again one after the
// other, then with a changed declaration, and checks the result each time.
func checkEnsureStreamsIdempotent(t *testing.T, ctx context.Context, url string, o natsx.Options, replicas int) jetstream.JetStream {
	t.Helper()
	jss := make([]jetstream.JetStream, replicas)
	for i := range jss {
		_, jss[i] = connect(t, fastConfig(&logBuffer{}, url))
	}
	var wg sync.WaitGroup
	errs := make([]error, replicas)
	for i, js := range jss {
		wg.Go(func() { errs[i] = natsx.EnsureStreams(ctx, js, o) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent EnsureStreams: %v", err)
	}
	js := jss[0]
	for range 2 {
		if err := natsx.EnsureStreams(ctx, js, o); err != nil {
			t.Fatalf("repeated EnsureStreams: %v", err)
		}
	}

	s, err := js.Stream(ctx, o.QueueStream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := info.Config
	if c.Retention != jetstream.WorkQueuePolicy || c.Storage != jetstream.FileStorage ||
		c.Duplicates != 2*time.Minute || len(c.Subjects) != 1 || c.Subjects[0] != o.QueueSubjects() ||
		c.Discard != jetstream.DiscardNew || c.MaxMsgSize != natsx.DefaultQueueMaxMsgSize {
		t.Fatalf("stream config %+v", c)
	}
	var names []string
	for name := range s.ListConsumers(ctx).Info() {
		names = append(names, name.Name)
	}
	if len(names) != 1 || names[0] != o.DeliveryConsumer() {
		t.Fatalf("consumers %v, want only %s", names, o.DeliveryConsumer())
	}
	cons, err := natsx.OpenDeliveryConsumer(ctx, js, o)
	if err != nil {
		t.Fatal(err)
	}
	cc := cons.CachedInfo().Config
	if cc.AckPolicy != jetstream.AckExplicitPolicy || cc.AckWait != natsx.DefaultDeliveryAckWait ||
		cc.MaxDeliver != -1 || cc.MaxAckPending != natsx.DefaultDeliveryMaxAckPending {
		t.Fatalf("consumer config %+v", cc)
	}

	// A new release changing a declaration updates it in place.
	changed := o
	changed.DeliveryMaxAckPending = 10
	changed.QueueMaxMsgSize = 4096
	if err := natsx.EnsureStreams(ctx, js, changed); err != nil {
		t.Fatalf("EnsureStreams with changed declaration: %v", err)
	}
	cons, err = natsx.OpenDeliveryConsumer(ctx, js, o)
	if err != nil {
		t.Fatal(err)
	}
	if got := cons.CachedInfo().Config.MaxAckPending; got != 10 {
		t.Fatalf("MaxAckPending after update = %d", got)
	}
	// The bounded entry size is enforced.
	if _, err := natsx.PublishDedup(ctx, js, o.QueueInboundSubject(), "too-big", make([]byte, 5000)); err == nil {
		t.Fatal("publishing an entry above QueueMaxMsgSize succeeded")
	}
	if err := natsx.EnsureStreams(ctx, js, o); err != nil {
		t.Fatal(err)
	}
	return js
}

// A service started before NATS connects once NATS comes up.
func TestConnectBeforeServerStarts(t *testing.T) {
	ctx := testCtx(t)
	port := testenv.FreePort(t)

	logs := &logBuffer{}
	nc, js := connect(t, fastConfig(logs, "nats://127.0.0.1:"+strconv.Itoa(port)))
	if err := natsx.Ready(nc); err == nil {
		t.Fatal("Ready with no server running")
	}

	startEmbedded(t, t.TempDir(), port)
	if err := natsx.WaitConnected(ctx, nc); err != nil {
		t.Fatal(err)
	}
	if err := natsx.Ready(nc); err != nil {
		t.Fatal(err)
	}
	// Logged by nats.go's connect handler, on its own goroutine.
	waitFor(t, "the late connection in the log", func() bool { return strings.Contains(logs.String(), "nats connected") })
	if err := natsx.EnsureStreams(ctx, js, natsx.Options{}); err != nil {
		t.Fatal(err)
	}
}

// Standalone mode: no TCP listener at all.
func TestInProcessConnection(t *testing.T) {
	ctx := testCtx(t)
	srv, err := embedded.Start(embedded.Config{StoreDir: t.TempDir(), NoListen: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, js := connect(t, natsx.Config{InProcess: srv, Name: "standalone", Logger: (&logBuffer{}).logger()})
	if err := natsx.WaitConnected(ctx, nc); err != nil {
		t.Fatal(err)
	}
	o := natsx.Options{}
	if err := natsx.EnsureStreams(ctx, js, o); err != nil {
		t.Fatal(err)
	}
	if _, err := natsx.PublishDedup(ctx, js, o.QueueInboundSubject(), "Q1", []byte("x")); err != nil {
		t.Fatal(err)
	}
	ackAndExpectEmpty(t, ctx, js, o, fetchOne(t, ctx, js, o))
}

// Against the shared real NATS server, with every name prefixed.
func TestSharedServer(t *testing.T) {
	ctx := testCtx(t)
	o := natsx.Options{Prefix: testenv.Prefix()}
	nc, js := connect(t, fastConfig(&logBuffer{}, testenv.NATSURL(t)))
	if err := natsx.WaitConnected(ctx, nc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := natsx.DeleteStreams(ctx, js, o); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if !strings.HasPrefix(o.QueueStream(), testenv.Prefix()+"_") || !strings.HasPrefix(o.QueueInboundSubject(), testenv.Prefix()+".") {
		t.Fatalf("names not prefixed: %s %s", o.QueueStream(), o.QueueInboundSubject())
	}
	checkEnsureStreamsIdempotent(t, ctx, testenv.NATSURL(t), o, 4)

	id := testenv.Prefix() + "-Q1"
	for i, wantDup := range []bool{false, true} {
		ack, err := natsx.PublishDedup(ctx, js, o.QueueInboundSubject(), id, []byte("entry"))
		if err != nil {
			t.Fatal(err)
		}
		if ack.Duplicate != wantDup {
			t.Fatalf("publish %d: duplicate=%v", i, ack.Duplicate)
		}
	}
	m := fetchOne(t, ctx, js, o)
	if string(m.Data()) != "entry" {
		t.Fatalf("consumed %q", m.Data())
	}
	ackAndExpectEmpty(t, ctx, js, o, m)

	// Mailbox change events travel on core NATS.
	subject, err := o.EventSubject("tenant1", "account1")
	if err != nil {
		t.Fatal(err)
	}
	sub, err := nc.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	other, err := o.EventSubject("tenant1", "account2")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish(other, []byte("not for us")); err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish(subject, []byte("changed")); err != nil {
		t.Fatal(err)
	}
	got, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Data) != "changed" {
		t.Fatalf("event %q", got.Data)
	}
}

func TestEventSubject(t *testing.T) {
	s, err := natsx.Options{}.EventSubject("7f3a", "acc-42")
	if err != nil || s != "petrel.events.7f3a.acc-42" {
		t.Fatalf("EventSubject = %q, %v", s, err)
	}
	s, err = natsx.Options{Prefix: "t1"}.EventSubject("7f3a", "acc-42")
	if err != nil || s != "t1.petrel.events.7f3a.acc-42" {
		t.Fatalf("prefixed EventSubject = %q, %v", s, err)
	}
	for _, bad := range []string{"", "a.b", "a*", "*", ">", "a>", "a b", "a\tb", "a\nb", "\x00", "\xff"} {
		if _, err := (natsx.Options{}).EventSubject("tenant", bad); !errors.Is(err, natsx.ErrBadToken) {
			t.Errorf("account %q: err = %v, want ErrBadToken", bad, err)
		}
		if _, err := (natsx.Options{}).EventSubject(bad, "account"); !errors.Is(err, natsx.ErrBadToken) {
			t.Errorf("tenant %q: err = %v, want ErrBadToken", bad, err)
		}
	}
}

func TestValidate(t *testing.T) {
	if err := (natsx.Options{Prefix: "a.b", Replicas: 7}).Validate(); err == nil ||
		!strings.Contains(err.Error(), "prefix") || !strings.Contains(err.Error(), "replicas") {
		t.Errorf("Options.Validate = %v, want prefix and replicas problems", err)
	}
	if err := (natsx.Options{Prefix: testenv.Prefix(), Replicas: 3}).Validate(); err != nil {
		t.Errorf("valid options: %v", err)
	}
	err := natsx.Config{Token: "x", User: "u", ReconnectWait: -1}.Validate()
	if err == nil {
		t.Fatal("Config.Validate accepted an empty config")
	}
	for _, want := range []string{"no server", "at most one", "negative"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Config.Validate = %q, lacks %q", err, want)
		}
	}
	if _, _, err := natsx.Connect(context.Background(), natsx.Config{}); err == nil {
		t.Error("Connect accepted an empty config")
	}
	if _, err := natsx.PublishDedup(context.Background(), nil, "s", "", nil); err == nil {
		t.Error("PublishDedup accepted an empty message id")
	}
}

// TestEnsureKeyValueReplacesMemoryBucket: a bucket of an earlier version,
// in memory, cannot be updated to file storage; EnsureKeyValue replaces it
// (its keys are leases and hints) and is idempotent afterwards.
func TestEnsureKeyValueReplacesMemoryBucket(t *testing.T) {
	ctx := testCtx(t)
	o := natsx.Options{Prefix: testenv.Prefix() + "_kv"}
	nc, js := connect(t, fastConfig(&logBuffer{}, testenv.NATSURL(t)))
	if err := natsx.WaitConnected(ctx, nc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = natsx.DeleteStreams(ctx, js, o)
	})
	cfg := o.DeadDestinationsConfig()
	old := cfg
	old.Storage = jetstream.MemoryStorage
	kv, err := js.CreateKeyValue(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "d.old", []byte("x")); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		kv, err = natsx.EnsureKeyValue(ctx, js, cfg)
		if err != nil {
			t.Fatal(err)
		}
		st, err := kv.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Storage; got != jetstream.FileStorage {
			t.Fatalf("storage %v, want file", got)
		}
	}
	if _, err := kv.Get(ctx, "d.old"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("the old bucket's key: %v, want it gone with the bucket", err)
	}
}
