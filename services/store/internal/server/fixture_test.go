package server

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/petrel-mail/petrel/platform/blob/s3blob"
	"github.com/petrel-mail/petrel/platform/grpcx"
	"github.com/petrel-mail/petrel/platform/natsx"
	"github.com/petrel-mail/petrel/platform/testenv"
	"github.com/petrel-mail/petrel/services/store/internal/auth"
	"github.com/petrel-mail/petrel/services/store/internal/repo"
	"github.com/petrel-mail/petrel/services/store/internal/repo/pgrepo"
	"github.com/petrel-mail/petrel/services/store/storeclient"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var (
	bucketOnce sync.Once
	bucket     testenv.S3Config
	repoOnce   sync.Once
	sharedRepo *pgrepo.Repo
	repoErr    error
)

// fixture is a store gRPC server over real PostgreSQL, MinIO and NATS,
// reached through storeclient on an in-process connection, with one tenant
// and domain to create accounts in.
type fixture struct {
	repo    *pgrepo.Repo
	blobs   *s3blob.Store
	nc      *nats.Conn
	names   natsx.Options
	tokens  *auth.Tokens
	events  *Events
	client  *storeclient.Client
	tenant  repo.Tenant
	domain  repo.Domain
	n       atomic.Int64
	srv     *grpcx.Server
	maxSize int64
}

type fixtureOptions struct {
	// natsClosed gives the server a NATS connection that is already
	// closed, as if NATS were gone for good.
	natsClosed bool
	maxSize    int64
}

func newFixture(t testing.TB, o fixtureOptions) *fixture {
	t.Helper()
	ctx := context.Background()
	repoOnce.Do(func() {
		sharedRepo, repoErr = pgrepo.Open(ctx, testenv.Database(t), pgrepo.Options{})
	})
	if repoErr != nil {
		t.Fatal(repoErr)
	}
	bucketOnce.Do(func() { bucket = testenv.NewBucket(t) })
	blobs, err := s3blob.New(s3blob.Config{Endpoint: bucket.Endpoint, AccessKey: bucket.AccessKey, SecretKey: bucket.SecretKey, Bucket: bucket.Bucket, Region: bucket.Region, UseTLS: bucket.UseTLS})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{repo: sharedRepo, blobs: blobs, names: natsx.Options{Prefix: testenv.Prefix()}, maxSize: o.maxSize}
	f.nc, _, err = natsx.Connect(ctx, natsx.Config{URLs: []string{testenv.NATSURL(t)}, Name: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.nc.Close)
	if err := natsx.WaitConnected(ctxTimeout(t), f.nc); err != nil {
		t.Fatal(err)
	}
	serverNC := f.nc
	if o.natsClosed {
		serverNC, _, err = natsx.Connect(ctx, natsx.Config{URLs: []string{testenv.NATSURL(t)}})
		if err != nil {
			t.Fatal(err)
		}
		serverNC.Close()
	}
	if f.events, err = NewEvents(serverNC, f.names, nil, prometheus.NewRegistry()); err != nil {
		t.Fatal(err)
	}
	key, err := auth.GenerateKey("test")
	if err != nil {
		t.Fatal(err)
	}
	kr, err := auth.NewKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	if f.tokens, err = auth.NewTokens(auth.TokenOptions{Keyring: kr}); err != nil {
		t.Fatal(err)
	}
	ic, err := auth.NewInterceptors(auth.InterceptorOptions{Tokens: f.tokens})
	if err != nil {
		t.Fatal(err)
	}
	d := Deps{Repo: f.repo, Blobs: blobs, Events: f.events, MaxMessageSize: o.maxSize}
	mailboxes, err := NewMailboxServer(d)
	if err != nil {
		t.Fatal(err)
	}
	messages, err := NewMessageServer(d)
	if err != nil {
		t.Fatal(err)
	}
	f.srv, err = grpcx.NewServer(grpcx.ServerOptions{Extra: ic.ServerOptions()})
	if err != nil {
		t.Fatal(err)
	}
	Register(f.srv, mailboxes, messages)
	ln := grpcx.ListenInProcess()
	go f.srv.Serve(ln)
	t.Cleanup(func() {
		f.srv.Stop()
		if n := f.srv.Panics(); n != 0 {
			t.Errorf("%d panics recovered in handlers", n)
		}
	})
	f.client, err = storeclient.Dial(grpcx.InProcessTarget, storeclient.Options{Insecure: true, Dialer: ln.Dial})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.client.Close() })
	if f.tenant, err = f.repo.CreateTenant(ctx, fmt.Sprintf("tenant-%s-%d", t.Name(), time.Now().UnixNano())); err != nil {
		t.Fatal(err)
	}
	if f.domain, err = f.repo.CreateDomain(ctx, f.tenant.ID, fmt.Sprintf("t%d.example", f.tenant.ID)); err != nil {
		t.Fatal(err)
	}
	return f
}

func ctxTimeout(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// account creates an account and returns its scope and a context that
// carries its session token.
func (f *fixture) account(t testing.TB) (repo.Scope, context.Context) {
	t.Helper()
	a, err := f.repo.CreateAccount(context.Background(), f.tenant.ID, f.domain.ID, fmt.Sprintf("user%d", f.n.Add(1)), "")
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := f.tokens.IssueSession(strconv.FormatInt(a.TenantID, 10), strconv.FormatInt(a.ID, 10), a.Address, "imap")
	if err != nil {
		t.Fatal(err)
	}
	return repo.Scope{TenantID: a.TenantID, AccountID: a.ID}, storeclient.WithToken(ctxTimeout(t), tok)
}

// service returns a context carrying a service token.
func (f *fixture) service(t testing.TB, name string) context.Context {
	t.Helper()
	tok, _, err := f.tokens.Issue(auth.Principal{Kind: auth.KindService, Service: name}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return storeclient.WithToken(ctxTimeout(t), tok)
}

// appendMsg appends raw in chunks of 1000 bytes and returns the UID.
func (f *fixture) appendMsg(t *testing.T, ctx context.Context, mailbox string, raw []byte, flags ...string) (*storev1.AppendMessageResponse, error) {
	t.Helper()
	return f.appendDeclared(ctx, mailbox, raw, int64(len(raw)), flags...)
}

func (f *fixture) appendDeclared(ctx context.Context, mailbox string, raw []byte, size int64, flags ...string) (*storev1.AppendMessageResponse, error) {
	st, err := f.client.Messages.AppendMessage(ctx)
	if err != nil {
		return nil, err
	}
	if err := st.Send(&storev1.AppendMessageRequest{Part: &storev1.AppendMessageRequest_Header{Header: &storev1.AppendHeader{
		Mailbox: mailbox, Flags: flags, Size: size, InternalDate: timestamppb.New(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)),
	}}}); err != nil {
		return nil, err
	}
	for off := 0; off < len(raw); off += 1000 {
		chunk := raw[off:min(off+1000, len(raw))]
		if err := st.Send(&storev1.AppendMessageRequest{Part: &storev1.AppendMessageRequest_Chunk{Chunk: chunk}}); err != nil {
			if err == io.EOF {
				break // the server answered early; CloseAndRecv has it
			}
			return nil, err
		}
	}
	return st.CloseAndRecv()
}

func (f *fixture) mustAppend(t *testing.T, ctx context.Context, mailbox string, raw []byte, flags ...string) uint32 {
	t.Helper()
	res, err := f.appendMsg(t, ctx, mailbox, raw, flags...)
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	return res.GetUid()
}

func (f *fixture) fetch(t *testing.T, ctx context.Context, req *storev1.FetchMessagesRequest) []*storev1.MessageMeta {
	t.Helper()
	st, err := f.client.Messages.FetchMessages(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	var out []*storev1.MessageMeta
	for {
		resp, err := st.Recv()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		out = append(out, resp.GetMessages()...)
	}
}

func (f *fixture) body(ctx context.Context, req *storev1.GetBodyRequest) ([]byte, int64, error) {
	st, err := f.client.Messages.GetBody(ctx, req)
	if err != nil {
		return nil, 0, err
	}
	var out []byte
	var size int64
	for i := 0; ; i++ {
		resp, err := st.Recv()
		if err == io.EOF {
			return out, size, nil
		}
		if err != nil {
			return nil, 0, err
		}
		if i == 0 {
			size = resp.GetSize()
		}
		if len(resp.GetChunk()) > bodyChunk {
			return nil, 0, fmt.Errorf("chunk of %d bytes", len(resp.GetChunk()))
		}
		out = append(out, resp.GetChunk()...)
	}
}

func set(ranges ...uint32) *storev1.UIDSet {
	s := &storev1.UIDSet{}
	for i := 0; i+1 < len(ranges); i += 2 {
		s.Ranges = append(s.Ranges, &storev1.UIDRange{Start: ranges[i], Stop: ranges[i+1]})
	}
	return s
}
