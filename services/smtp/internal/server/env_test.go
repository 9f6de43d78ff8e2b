package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/petrel-mail/petrel/platform/blob"
	"github.com/petrel-mail/petrel/platform/blob/s3blob"
	"github.com/petrel-mail/petrel/platform/natsx"
	"github.com/petrel-mail/petrel/platform/testenv"
	"github.com/petrel-mail/petrel/platform/tlsutil"
	queuev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/queue/v1"
	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"
	"github.com/petrel-mail/petrel/services/smtp/internal/authcheck"
	"github.com/petrel-mail/petrel/services/smtp/internal/directory"
	"github.com/petrel-mail/petrel/services/smtp/internal/ingest"
	"github.com/petrel-mail/petrel/services/smtp/internal/limits"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const serviceToken = "svc-smtp-token"

// fakeDirectory is a DirectoryService with a fixed set of users, served
// over real gRPC so the client's metadata and error mapping are exercised.
type fakeDirectory struct {
	storev1.UnimplementedDirectoryServiceServer
	mu      sync.Mutex
	down    bool
	calls   int
	lastIPs []string
}

type fakeUser struct {
	password, account, tenant string
	sendAs                    []string
}

var fakeUsers = map[string]fakeUser{
	"alice@example.com": {password: "alice-secret", account: "acc-alice", tenant: "tenant-a", sendAs: []string{"alice@example.com", "sales@example.com"}},
}

var localRecipients = map[string]string{
	"alice@example.com": "tenant-a",
	"bob@example.com":   "tenant-a",
	"sales@example.com": "tenant-a",
	"carol@other.test":  "tenant-b",
}

func bearer(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	v := md.Get("authorization")
	if len(v) != 1 {
		return ""
	}
	return strings.TrimPrefix(v[0], "Bearer ")
}

func (f *fakeDirectory) check() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.down {
		return status.Error(codes.Unavailable, "down")
	}
	return nil
}

func (f *fakeDirectory) ResolveRecipient(ctx context.Context, req *storev1.ResolveRecipientRequest) (*storev1.ResolveRecipientResponse, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	if bearer(ctx) != serviceToken {
		return nil, status.Error(codes.Unauthenticated, "no service token")
	}
	addr := strings.ToLower(req.GetAddress())
	if !strings.Contains(addr, "@") {
		return nil, status.Error(codes.InvalidArgument, "not an address")
	}
	if addr == "full@example.com" {
		return &storev1.ResolveRecipientResponse{Status: storev1.RecipientStatus_RECIPIENT_STATUS_OVER_QUOTA, TenantId: "tenant-a"}, nil
	}
	if t, ok := localRecipients[addr]; ok {
		return &storev1.ResolveRecipientResponse{Status: storev1.RecipientStatus_RECIPIENT_STATUS_LOCAL, TenantId: t}, nil
	}
	domain := addr[strings.LastIndex(addr, "@")+1:]
	if domain == "example.com" || domain == "other.test" {
		return &storev1.ResolveRecipientResponse{Status: storev1.RecipientStatus_RECIPIENT_STATUS_UNKNOWN_USER}, nil
	}
	return &storev1.ResolveRecipientResponse{Status: storev1.RecipientStatus_RECIPIENT_STATUS_NOT_LOCAL}, nil
}

func (f *fakeDirectory) Authenticate(ctx context.Context, req *storev1.AuthenticateRequest) (*storev1.AuthenticateResponse, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.lastIPs = append(f.lastIPs, req.GetRemoteIp())
	f.mu.Unlock()
	u, ok := fakeUsers[req.GetUsername()]
	if !ok || u.password != req.GetPassword() || req.GetService() != "submission" {
		st, _ := status.New(codes.Unauthenticated, "authentication failed").WithDetails(&storev1.ErrorInfo{Reason: storev1.Reason_REASON_AUTH_FAILED})
		return nil, st.Err()
	}
	return &storev1.AuthenticateResponse{
		SessionToken: "session-" + u.account, AccountId: u.account, TenantId: u.tenant, Address: req.GetUsername(),
		ExpiresAt: timestamppb.New(time.Now().Add(time.Hour)),
	}, nil
}

func (f *fakeDirectory) CanSendAs(ctx context.Context, req *storev1.CanSendAsRequest) (*storev1.CanSendAsResponse, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	for _, u := range fakeUsers {
		if bearer(ctx) == "session-"+u.account {
			for _, a := range u.sendAs {
				if strings.EqualFold(a, req.GetAddress()) {
					return &storev1.CanSendAsResponse{Allowed: true}, nil
				}
			}
			return &storev1.CanSendAsResponse{Allowed: false}, nil
		}
	}
	return nil, status.Error(codes.Unauthenticated, "bad session token")
}

func startDirectory(t *testing.T) (*fakeDirectory, directory.Directory) {
	t.Helper()
	fd := &fakeDirectory{}
	gs := grpc.NewServer()
	storev1.RegisterDirectoryServiceServer(gs, fd)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return fd, directory.NewClient(cc, serviceToken)
}

// env is a running set of listeners with their dependencies.
type env struct {
	t       *testing.T
	dir     *fakeDirectory
	blob    blob.Store
	js      jetstream.JetStream
	nc      *nats.Conn
	nopts   natsx.Options
	tls     *tls.Config // client side
	metrics *Metrics
	addr    map[Kind]string
	servers map[Kind]*Server
}

type envConfig struct {
	blob      blob.Store
	natsURL   string
	prefix    string
	auth      authcheck.Authenticator
	tweak     func(*Options)
	wrapLn    func(net.Listener) net.Listener
	publishTO time.Duration
}

var (
	sharedOnce  sync.Once
	sharedBlob  blob.Store
	sharedErr   error
	streamCount int
	streamMu    sync.Mutex
)

func minioStore(t *testing.T) blob.Store {
	sharedOnce.Do(func() {
		c := testenv.NewBucket(t)
		sharedBlob, sharedErr = s3blob.New(s3blob.Config{Endpoint: c.Endpoint, AccessKey: c.AccessKey, SecretKey: c.SecretKey, Bucket: c.Bucket, Region: c.Region})
	})
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return sharedBlob
}

// uniquePrefix gives each env its own stream on the shared NATS server.
func uniquePrefix() string {
	streamMu.Lock()
	defer streamMu.Unlock()
	streamCount++
	return fmt.Sprintf("%s_%d", testenv.Prefix(), streamCount)
}

func newEnv(t *testing.T, cfg envConfig) *env {
	t.Helper()
	fd, dir := startDirectory(t)
	if cfg.blob == nil {
		cfg.blob = minioStore(t)
	}
	if cfg.natsURL == "" {
		cfg.natsURL = testenv.NATSURL(t)
	}
	nopts := natsx.Options{Prefix: uniquePrefix()}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("SMTP_TEST_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	nc, js, err := natsx.Connect(context.Background(), natsx.Config{URLs: []string{cfg.natsURL}, Name: t.Name(), Logger: logger, ReconnectWait: 50 * time.Millisecond, MaxReconnectWait: 100 * time.Millisecond, ReconnectJitter: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := natsx.WaitConnected(ctx, nc); err != nil {
		t.Fatal(err)
	}
	if err := natsx.EnsureStreams(ctx, js, nopts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = natsx.DeleteStreams(ctx, js, nopts)
	})
	cert, err := tlsutil.GenerateSelfSigned(tlsutil.SelfSignedOptions{Hosts: []string{"mx.test", "127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	pto := cfg.publishTO
	if pto == 0 {
		pto = 2 * time.Second
	}
	ing, err := ingest.New(ingest.Options{
		Blob: cfg.blob, JetStream: js, Conn: nc, Subject: nopts.QueueInboundSubject(),
		Hostname: "mx.test", MaxMessageBytes: 1 << 20, Authenticator: cfg.auth, Logger: logger,
		PublishTimeout: pto, PublishAttempts: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: fd, blob: cfg.blob, js: js, nc: nc, nopts: nopts, metrics: NewMetrics(nil),
		tls: &tls.Config{RootCAs: cert.CertPool(), ServerName: "mx.test"}, addr: map[Kind]string{}, servers: map[Kind]*Server{}}
	opts := Options{
		Hostname: "mx.test", Directory: dir, Ingester: ing,
		TLSConfig:       tlsutil.ServerConfig(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert.Pair, nil }),
		MaxMessageBytes: 1 << 20, MaxRecipients: 5,
		Metrics: e.metrics, Logger: logger,
	}
	if cfg.tweak != nil {
		cfg.tweak(&opts)
	}
	for _, k := range []Kind{MX, Submission, Submissions} {
		srv, err := New(k, opts)
		if err != nil {
			t.Fatal(err)
		}
		var ln net.Listener
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		e.addr[k] = ln.Addr().String()
		if cfg.wrapLn != nil {
			ln = cfg.wrapLn(ln)
		}
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ln) }()
		e.servers[k] = srv
		t.Cleanup(func() {
			srv.Close()
			<-done
		})
	}
	t.Cleanup(func() {
		if n := e.metrics.Panics(); n != 0 {
			t.Errorf("%d session panics recovered", n)
		}
	})
	return e
}

// queued returns the queue entries published so far.
func (e *env) queued() []*queuev1.QueueEntry {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := e.js.Stream(ctx, e.nopts.QueueStream())
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []*queuev1.QueueEntry
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		var qe queuev1.QueueEntry
		if err := proto.Unmarshal(m.Data, &qe); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, &qe)
	}
	return out
}

// object reads a stored message.
func (e *env) object(key string) string {
	e.t.Helper()
	r, _, err := e.blob.Get(context.Background(), key)
	if err != nil {
		e.t.Fatalf("get %s: %v", key, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

// objectsFor lists the objects of a tenant.
func (e *env) objects(tenant string) []string {
	e.t.Helper()
	var keys []string
	for info, err := range e.blob.List(context.Background(), "msg/"+tenant+"/") {
		if err != nil {
			e.t.Fatal(err)
		}
		keys = append(keys, info.Key)
	}
	return keys
}

// wire is a raw SMTP connection for exact-reply tests.
type wire struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialWire(t *testing.T, addr string) *wire {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	w := &wire{t: t, conn: c, r: bufio.NewReader(c)}
	return w
}

func (w *wire) send(s string) {
	w.t.Helper()
	if _, err := io.WriteString(w.conn, s); err != nil {
		w.t.Fatalf("write: %v", err)
	}
}

// reply reads one (possibly multi-line) reply and returns its last line.
func (w *wire) reply() string {
	w.t.Helper()
	for {
		line, err := w.r.ReadString('\n')
		if err != nil {
			w.t.Fatalf("read reply: %v (got %q)", err, line)
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 4 || line[3] != '-' {
			return line
		}
	}
}

// expect reads a reply and checks that it starts with want.
func (w *wire) expect(want string) string {
	w.t.Helper()
	got := w.reply()
	if !strings.HasPrefix(got, want) {
		w.t.Fatalf("reply %q, want prefix %q", got, want)
	}
	return got
}

func (w *wire) cmd(line, want string) string {
	w.t.Helper()
	w.send(line + "\r\n")
	return w.expect(want)
}

// queueID extracts the id from a "250 2.0.0 OK: queued as <id>" reply.
func queueID(t *testing.T, reply string) string {
	t.Helper()
	i := strings.LastIndex(reply, "queued as ")
	if i < 0 {
		t.Fatalf("no queue id in %q", reply)
	}
	return reply[i+len("queued as "):]
}

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }

func itoa(n int) string { return fmt.Sprint(n) }

type netipPrefix = netip.Prefix

func newTestAuthFailures() *limits.AuthFailures {
	return limits.NewAuthFailures(2, time.Minute, 0, 0, nil)
}
