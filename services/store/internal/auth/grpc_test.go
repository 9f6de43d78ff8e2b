package auth

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Test servers: thin handlers that show what the interceptor put in the
// context, the way the real store handlers will use it.

type testDirectory struct {
	storev1.UnimplementedDirectoryServiceServer
	auth *Authenticator
}

func (d *testDirectory) Authenticate(ctx context.Context, req *storev1.AuthenticateRequest) (*storev1.AuthenticateResponse, error) {
	s, err := d.auth.Authenticate(ctx, req.GetUsername(), req.GetPassword(), req.GetService(), req.GetRemoteIp())
	if err != nil {
		return nil, StatusError(err)
	}
	return &storev1.AuthenticateResponse{SessionToken: s.Token, AccountId: s.Principal.AccountID, TenantId: s.Principal.TenantID, Address: s.Principal.Address}, nil
}

func (d *testDirectory) ResolveRecipient(context.Context, *storev1.ResolveRecipientRequest) (*storev1.ResolveRecipientResponse, error) {
	return &storev1.ResolveRecipientResponse{Status: storev1.RecipientStatus_RECIPIENT_STATUS_NOT_LOCAL}, nil
}

func (d *testDirectory) CanSendAs(ctx context.Context, req *storev1.CanSendAsRequest) (*storev1.CanSendAsResponse, error) {
	p, _ := FromContext(ctx)
	return &storev1.CanSendAsResponse{Allowed: p.Address == req.GetAddress()}, nil
}

type testAdmin struct {
	storev1.UnimplementedAdminServiceServer
}

func (testAdmin) CreateDomain(ctx context.Context, req *storev1.CreateDomainRequest) (*storev1.CreateDomainResponse, error) {
	if err := RequireTenant(ctx, req.GetTenant()); err != nil {
		return nil, err
	}
	return &storev1.CreateDomainResponse{Domain: &storev1.Domain{Tenant: req.GetTenant(), Name: req.GetName()}}, nil
}

func (testAdmin) CreateTenant(_ context.Context, req *storev1.CreateTenantRequest) (*storev1.CreateTenantResponse, error) {
	return &storev1.CreateTenantResponse{Tenant: &storev1.Tenant{Name: req.GetName()}}, nil
}

type testMailbox struct {
	storev1.UnimplementedMailboxServiceServer
	calls atomic.Int64
}

func (m *testMailbox) ListMailboxes(ctx context.Context, _ *storev1.ListMailboxesRequest) (*storev1.ListMailboxesResponse, error) {
	m.calls.Add(1)
	p, ok := FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Internal, "no principal")
	}
	return &storev1.ListMailboxesResponse{Mailboxes: []*storev1.Mailbox{{Id: p.AccountID, Name: "INBOX"}}}, nil
}

type testMessage struct {
	storev1.UnimplementedMessageServiceServer
}

func (testMessage) Deliver(context.Context, *storev1.DeliverRequest) (*storev1.DeliverResponse, error) {
	return &storev1.DeliverResponse{}, nil
}

func (testMessage) FetchMessages(_ *storev1.FetchMessagesRequest, stream grpc.ServerStreamingServer[storev1.FetchMessagesResponse]) error {
	p, ok := FromContext(stream.Context())
	if !ok {
		return status.Error(codes.Internal, "no principal")
	}
	return stream.Send(&storev1.FetchMessagesResponse{Messages: []*storev1.MessageMeta{{Flags: []string{p.AccountID}}}})
}

type grpcFixture struct {
	*authFixture
	conn    *grpc.ClientConn
	addr    string
	mailbox *testMailbox
}

func (g *grpcFixture) token(t *testing.T, p Principal) string {
	t.Helper()
	tok, _, err := g.tokens.Issue(p, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func newGRPCFixture(t *testing.T) *grpcFixture {
	t.Helper()
	g := &grpcFixture{authFixture: newAuthFixture(t), mailbox: &testMailbox{}}
	in, err := NewInterceptors(InterceptorOptions{Tokens: g.tokens, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(in.ServerOptions()...)
	storev1.RegisterDirectoryServiceServer(srv, &testDirectory{auth: g.auth})
	storev1.RegisterAdminServiceServer(srv, testAdmin{})
	storev1.RegisterMailboxServiceServer(srv, g.mailbox)
	storev1.RegisterMessageServiceServer(srv, testMessage{})
	healthgrpc.RegisterHealthServer(srv, health.NewServer())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	g.addr = ln.Addr().String()
	g.conn, err = grpc.NewClient(g.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.conn.Close() })
	return g
}

// wantStatus checks a call's code and, for store errors, the ErrorInfo
// reason, and that the message says nothing about the cause.
func wantStatus(t *testing.T, err error, code codes.Code, reason storev1.Reason) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code {
		t.Fatalf("status %v (%q), want %v", st.Code(), st.Message(), code)
	}
	var got []storev1.Reason
	for _, d := range st.Details() {
		if info, ok := d.(*storev1.ErrorInfo); ok {
			got = append(got, info.GetReason())
		}
	}
	if len(got) != 1 || got[0] != reason {
		t.Fatalf("ErrorInfo reasons %v, want [%v]", got, reason)
	}
	for _, leak := range []string{"signature", "expired", "key", "kind", "header", "tenant"} {
		if strings.Contains(strings.ToLower(st.Message()), leak) {
			t.Fatalf("status message %q leaks %q", st.Message(), leak)
		}
	}
}

func TestGRPCLoginThenSession(t *testing.T) {
	g := newGRPCFixture(t)
	imap := g.token(t, Principal{Kind: KindService, Service: ServiceIMAP})
	dir := storev1.NewDirectoryServiceClient(g.conn)

	// A frontend logs a user in with its service token...
	resp, err := dir.Authenticate(context.Background(),
		&storev1.AuthenticateRequest{Username: "alice@example.test", Password: "alice's secret", Service: "imap", RemoteIp: "192.0.2.1"},
		grpc.PerRPCCredentials(StaticToken(imap, true)))
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	// ...and acts for the user with the session token.
	ctx := WithToken(context.Background(), resp.GetSessionToken())
	mb, err := storev1.NewMailboxServiceClient(g.conn).ListMailboxes(ctx, &storev1.ListMailboxesRequest{})
	if err != nil {
		t.Fatalf("ListMailboxes with session: %v", err)
	}
	if got := mb.GetMailboxes()[0].GetId(); got != "a1" {
		t.Fatalf("handler saw account %q, want a1", got)
	}
	sendAs, err := dir.CanSendAs(ctx, &storev1.CanSendAsRequest{Address: "alice@example.test"})
	if err != nil || !sendAs.GetAllowed() {
		t.Fatalf("CanSendAs = %v, %v", sendAs, err)
	}

	// Streams get the principal too.
	stream, err := storev1.NewMessageServiceClient(g.conn).FetchMessages(ctx, &storev1.FetchMessagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := stream.Recv()
	if err != nil || msg.GetMessages()[0].GetFlags()[0] != "a1" {
		t.Fatalf("FetchMessages = %v, %v", msg, err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("stream end: %v", err)
	}

	// The session token is not a service token: it cannot log others in.
	_, err = dir.Authenticate(ctx, &storev1.AuthenticateRequest{Username: "alice@example.test", Password: "alice's secret"})
	wantStatus(t, err, codes.PermissionDenied, storev1.Reason_REASON_UNSPECIFIED)
}

func TestGRPCAuthenticateErrors(t *testing.T) {
	g := newGRPCFixture(t)
	ctx := WithToken(context.Background(), g.token(t, Principal{Kind: KindService, Service: ServiceSMTP}))
	dir := storev1.NewDirectoryServiceClient(g.conn)
	_, errUnknown := dir.Authenticate(ctx, &storev1.AuthenticateRequest{Username: "nobody@example.test", Password: "x", RemoteIp: "192.0.2.1"})
	wantStatus(t, errUnknown, codes.Unauthenticated, storev1.Reason_REASON_AUTH_FAILED)
	_, errWrong := dir.Authenticate(ctx, &storev1.AuthenticateRequest{Username: "alice@example.test", Password: "x", RemoteIp: "192.0.2.1"})
	wantStatus(t, errWrong, codes.Unauthenticated, storev1.Reason_REASON_AUTH_FAILED)
	if errUnknown.Error() != errWrong.Error() {
		t.Fatalf("unknown user %q and wrong password %q differ", errUnknown, errWrong)
	}
	_, err := dir.Authenticate(ctx, &storev1.AuthenticateRequest{Username: "dave@example.test", Password: "dave's secret"})
	wantStatus(t, err, codes.PermissionDenied, storev1.Reason_REASON_DISABLED)
	for range 5 {
		dir.Authenticate(ctx, &storev1.AuthenticateRequest{Username: "alice@example.test", Password: "x"})
	}
	_, err = dir.Authenticate(ctx, &storev1.AuthenticateRequest{Username: "alice@example.test", Password: "alice's secret"})
	wantStatus(t, err, codes.ResourceExhausted, storev1.Reason_REASON_THROTTLED)
}

func TestGRPCRejectsBadTokens(t *testing.T) {
	g := newGRPCFixture(t)
	mailboxes := storev1.NewMailboxServiceClient(g.conn)
	session := Principal{Kind: KindSession, TenantID: "t1", AccountID: "a1"}
	good := g.token(t, session)

	otherKeys := newTestTokens(t, g.clock, mustKeyring(t, mustKey(t, "k1")))
	forged, _, err := otherKeys.Issue(session, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	shortLived, _, err := g.tokens.Issue(session, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	g.clock.Advance(2 * time.Minute)

	tampered := []byte(good)
	tampered[len(tampered)/2] ^= 1

	for name, ctx := range map[string]context.Context{
		"no token":             context.Background(),
		"wrong key":            WithToken(context.Background(), forged),
		"expired":              WithToken(context.Background(), shortLived),
		"tampered":             WithToken(context.Background(), string(tampered)),
		"garbage":              WithToken(context.Background(), "hello"),
		"two tokens":           WithToken(WithToken(context.Background(), good), good),
		"not bearer":           metadataContext("authorization", "Basic "+good),
		"bearer without token": metadataContext("authorization", "Bearer "),
	} {
		t.Run(name, func(t *testing.T) {
			before := g.mailbox.calls.Load()
			_, err := mailboxes.ListMailboxes(ctx, &storev1.ListMailboxesRequest{})
			wantStatus(t, err, codes.Unauthenticated, storev1.Reason_REASON_AUTH_FAILED)
			if g.mailbox.calls.Load() != before {
				t.Fatal("handler ran for a rejected call")
			}
		})
	}
	if _, err := mailboxes.ListMailboxes(WithToken(context.Background(), good), &storev1.ListMailboxesRequest{}); err != nil {
		t.Fatalf("good token after the bad ones: %v", err)
	}
}

func TestGRPCPermissions(t *testing.T) {
	g := newGRPCFixture(t)
	admin := storev1.NewAdminServiceClient(g.conn)
	dir := storev1.NewDirectoryServiceClient(g.conn)
	msgs := storev1.NewMessageServiceClient(g.conn)
	mailboxes := storev1.NewMailboxServiceClient(g.conn)
	as := func(p Principal) context.Context { return WithToken(context.Background(), g.token(t, p)) }

	session := as(Principal{Kind: KindSession, TenantID: "t1", AccountID: "a1"})
	tenantAdmin := as(Principal{Kind: KindTenantAdmin, TenantID: "t1"})
	operator := as(Principal{Kind: KindOperator})
	smtp := as(Principal{Kind: KindService, Service: ServiceSMTP})
	delivery := as(Principal{Kind: KindService, Service: ServiceDelivery})
	pop3 := as(Principal{Kind: KindService, Service: ServicePOP3})

	denied := func(name string, err error) {
		t.Helper()
		t.Run(name, func(t *testing.T) { wantStatus(t, err, codes.PermissionDenied, storev1.Reason_REASON_UNSPECIFIED) })
	}
	allowed := func(name string, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}

	_, err := admin.CreateDomain(session, &storev1.CreateDomainRequest{Tenant: "t1", Name: "example.test"})
	denied("session calls admin", err)
	_, err = admin.CreateDomain(smtp, &storev1.CreateDomainRequest{Tenant: "t1", Name: "example.test"})
	denied("service calls admin", err)
	_, err = admin.CreateTenant(tenantAdmin, &storev1.CreateTenantRequest{Name: "t9"})
	denied("tenant admin creates a tenant", err)
	_, err = admin.CreateDomain(tenantAdmin, &storev1.CreateDomainRequest{Tenant: "t1", Name: "example.test"})
	allowed("tenant admin, own tenant", err)
	_, err = admin.CreateDomain(operator, &storev1.CreateDomainRequest{Tenant: "t2", Name: "example.test"})
	allowed("operator, any tenant", err)
	_, err = admin.CreateTenant(operator, &storev1.CreateTenantRequest{Name: "t9"})
	allowed("operator creates a tenant", err)

	// A tenant admin reaching into another tenant finds nothing there.
	_, err = admin.CreateDomain(tenantAdmin, &storev1.CreateDomainRequest{Tenant: "t2", Name: "example.test"})
	t.Run("tenant admin, other tenant", func(t *testing.T) { wantStatus(t, err, codes.NotFound, storev1.Reason_REASON_NOT_FOUND) })

	_, err = msgs.Deliver(smtp, &storev1.DeliverRequest{})
	denied("smtp delivers", err)
	_, err = msgs.Deliver(session, &storev1.DeliverRequest{})
	denied("session delivers", err)
	_, err = msgs.Deliver(delivery, &storev1.DeliverRequest{})
	allowed("delivery delivers", err)
	_, err = dir.ResolveRecipient(pop3, &storev1.ResolveRecipientRequest{Address: "a@example.test"})
	denied("pop3 resolves recipients", err)
	_, err = dir.ResolveRecipient(smtp, &storev1.ResolveRecipientRequest{Address: "a@example.test"})
	allowed("smtp resolves recipients", err)
	_, err = dir.ResolveRecipient(delivery, &storev1.ResolveRecipientRequest{Address: "a@example.test"})
	allowed("delivery resolves recipients", err)
	_, err = dir.Authenticate(delivery, &storev1.AuthenticateRequest{Username: "alice@example.test", Password: "alice's secret"})
	denied("delivery logs users in", err)
	_, err = mailboxes.ListMailboxes(delivery, &storev1.ListMailboxesRequest{})
	denied("service reads a mailbox", err)
	_, err = mailboxes.ListMailboxes(operator, &storev1.ListMailboxesRequest{})
	denied("operator reads a mailbox without a session", err)

	// Health checks need no token.
	if _, err := healthgrpc.NewHealthClient(g.conn).Check(context.Background(), &healthgrpc.HealthCheckRequest{}); err != nil {
		t.Errorf("health check without token: %v", err)
	}
}

func TestInterceptorDeniesUnlistedMethods(t *testing.T) {
	tokens := newTestTokens(t, newFakeClock(), mustKeyring(t, mustKey(t, "k1")))
	in, err := NewInterceptors(InterceptorOptions{Tokens: tokens, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	op, _, _ := tokens.Issue(Principal{Kind: KindOperator}, time.Hour)
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+op))
	ran := false
	_, err = in.Unary(ctx, nil, &grpc.UnaryServerInfo{FullMethod: "/petrel.store.v1.AdminService/DropEverything"},
		func(context.Context, any) (any, error) { ran = true; return nil, nil })
	wantStatus(t, err, codes.PermissionDenied, storev1.Reason_REASON_UNSPECIFIED)
	if ran {
		t.Fatal("handler of an unlisted method ran, even for an operator")
	}
}

// TestStoreRulesCoverEveryMethod keeps the table in step with the protos:
// a new RPC without a rule would be denied to everyone.
func TestStoreRulesCoverEveryMethod(t *testing.T) {
	rules := StoreRules()
	for _, sd := range []grpc.ServiceDesc{storev1.AdminService_ServiceDesc, storev1.DirectoryService_ServiceDesc, storev1.MailboxService_ServiceDesc, storev1.MessageService_ServiceDesc} {
		var names []string
		for _, m := range sd.Methods {
			names = append(names, m.MethodName)
		}
		for _, s := range sd.Streams {
			names = append(names, s.StreamName)
		}
		for _, n := range names {
			r, ok := rules["/"+sd.ServiceName+"/"+n]
			if !ok || r.Public || len(r.Kinds) == 0 {
				t.Errorf("%s/%s: rule %+v, %v", sd.ServiceName, n, r, ok)
			}
		}
	}
}

func TestTokenCredentialsRefuseInsecureTransport(t *testing.T) {
	g := newGRPCFixture(t)
	token := g.token(t, Principal{Kind: KindSession, TenantID: "t1", AccountID: "a1"})
	conn, err := grpc.NewClient(g.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(StaticToken(token, false)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = storev1.NewMailboxServiceClient(conn).ListMailboxes(context.Background(), &storev1.ListMailboxesRequest{})
	if err == nil {
		t.Fatal("token sent over a plaintext connection")
	}
	if g.mailbox.calls.Load() != 0 {
		t.Fatal("call reached the server")
	}

	// The same connection setup with AllowInsecure (loopback) works.
	conn2, err := grpc.NewClient(g.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(StaticToken(token, IsLoopbackTarget(g.addr))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	if _, err := storev1.NewMailboxServiceClient(conn2).ListMailboxes(context.Background(), &storev1.ListMailboxesRequest{}); err != nil {
		t.Fatalf("loopback with AllowInsecure: %v", err)
	}

	failing := TokenCredentials{Token: func(context.Context) (string, error) { return "", errors.New("no token yet") }, AllowInsecure: true}
	if _, err := failing.GetRequestMetadata(context.Background()); err == nil {
		t.Fatal("token source error swallowed")
	}
}

func TestIsLoopbackTarget(t *testing.T) {
	for target, want := range map[string]bool{
		"127.0.0.1:7400":           true,
		"[::1]:7400":               true,
		"localhost:7400":           true,
		"dns:///localhost:7400":    true,
		"passthrough:///127.0.0.5": true,
		"unix:///run/petrel.sock":  true,
		"store.petrel.svc:7400":    false,
		"10.0.0.1:7400":            false,
		"dns:///[2001:db8::1]:1":   false,
		"localhost.example.test:1": false,
	} {
		if got := IsLoopbackTarget(target); got != want {
			t.Errorf("IsLoopbackTarget(%q) = %v, want %v", target, got, want)
		}
	}
}

func TestRequireTenant(t *testing.T) {
	if err := RequireTenant(context.Background(), "t1"); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no principal: %v", err)
	}
	ctx := NewContext(context.Background(), Principal{Kind: KindSession, TenantID: "t1", AccountID: "a1"})
	if err := RequireTenant(ctx, "t1"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("session, own tenant: %v", err)
	}
	ctx = NewContext(context.Background(), Principal{Kind: KindTenantAdmin, TenantID: "t1"})
	if err := RequireTenant(ctx, "t1"); err != nil {
		t.Errorf("tenant admin, own tenant: %v", err)
	}
	if err := RequireTenant(ctx, ""); status.Code(err) != codes.NotFound {
		t.Errorf("tenant admin, empty tenant: %v", err)
	}
}
