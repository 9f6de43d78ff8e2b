package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/petrel-mail/petrel/platform/grpcx"
	"github.com/petrel-mail/petrel/platform/testenv"
	"github.com/petrel-mail/petrel/services/store/internal/auth"
	"github.com/petrel-mail/petrel/services/store/internal/repo/pgrepo"
)

// The directory and admin tests share one database of their own (not the
// package's shared one), so that ListTenants sees only what they made;
// every test names its tenants and domains uniquely.
var (
	dirRepoOnce sync.Once
	dirRepo     *pgrepo.Repo
	dirRepoErr  error
	dirSeq      atomic.Int64
)

// dirFixture is the DirectoryService and AdminService over real gRPC (an
// in-process connection) with the store's auth interceptors and rules, on
// real PostgreSQL.
type dirFixture struct {
	dir    storev1.DirectoryServiceClient
	admin  storev1.AdminServiceClient
	tokens *auth.Tokens
	// operator is an operator token, smtp a service token of smtp.
	operator, smtp string
	uniq           string
}

// cheapHashParams keep argon2id fast in tests; production uses the
// defaults.
var cheapHashParams = auth.Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

func newDirFixture(t *testing.T) *dirFixture {
	t.Helper()
	dirRepoOnce.Do(func() {
		dirRepo, dirRepoErr = pgrepo.Open(context.Background(), testenv.NewDatabase(t), pgrepo.Options{})
	})
	if dirRepoErr != nil {
		t.Fatal(dirRepoErr)
	}
	key, err := auth.GenerateKey("k1")
	if err != nil {
		t.Fatal(err)
	}
	kr, err := auth.NewKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := auth.NewTokens(auth.TokenOptions{Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	hasher, err := auth.NewHasher(cheapHashParams)
	if err != nil {
		t.Fatal(err)
	}
	// Three failures lock a login name at once: no delay stage, so the
	// test never waits.
	throttler, err := auth.NewThrottler(auth.ThrottleOptions{User: auth.Limits{DelayAfter: 3, LockAfter: 3}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	authn, err := auth.NewAuthenticator(auth.AuthenticatorOptions{Source: NewCredentialSource(dirRepo), Hasher: hasher, Tokens: tokens, Throttler: throttler})
	if err != nil {
		t.Fatal(err)
	}
	dir, err := NewDirectoryServer(DirectoryOptions{Repo: dirRepo, Authenticator: authn})
	if err != nil {
		t.Fatal(err)
	}
	adm, err := NewAdminServer(AdminOptions{Repo: dirRepo, Hasher: hasher})
	if err != nil {
		t.Fatal(err)
	}
	ic, err := auth.NewInterceptors(auth.InterceptorOptions{Tokens: tokens, Rules: auth.StoreRules()})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := grpcx.NewServer(grpcx.ServerOptions{Extra: ic.ServerOptions()})
	if err != nil {
		t.Fatal(err)
	}
	storev1.RegisterDirectoryServiceServer(srv, dir)
	storev1.RegisterAdminServiceServer(srv, adm)
	ln := grpcx.ListenInProcess()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	conn, err := grpcx.Dial(grpcx.InProcessTarget, ln.ClientOptions(grpcx.ClientOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		srv.Stop()
		if err := <-served; err != nil {
			t.Error(err)
		}
		if n := srv.Panics(); n != 0 {
			t.Errorf("%d panics recovered in handlers", n)
		}
	})
	f := &dirFixture{
		dir:    storev1.NewDirectoryServiceClient(conn),
		admin:  storev1.NewAdminServiceClient(conn),
		tokens: tokens,
		uniq:   fmt.Sprintf("t%d", dirSeq.Add(1)),
	}
	f.operator = f.issue(t, auth.Principal{Kind: auth.KindOperator})
	f.smtp = f.issue(t, auth.Principal{Kind: auth.KindService, Service: auth.ServiceSMTP})
	return f
}

func (f *dirFixture) issue(t *testing.T, p auth.Principal) string {
	t.Helper()
	tok, _, err := f.tokens.Issue(p, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// as returns a context that calls with token.
func as(token string) context.Context { return auth.WithToken(context.Background(), token) }

// tenantAdmin returns a tenant-admin token for a tenant created by the
// operator.
func (f *dirFixture) tenantAdmin(t *testing.T, tenantID string) string {
	return f.issue(t, auth.Principal{Kind: auth.KindTenantAdmin, TenantID: tenantID})
}

// setup creates, as the operator, a tenant with one domain and the given
// accounts (local parts, password "password-"+local), and returns the
// tenant and the domain name.
func (f *dirFixture) setup(t *testing.T, name string, locals ...string) (*storev1.Tenant, string) {
	t.Helper()
	ctx := as(f.operator)
	tr, err := f.admin.CreateTenant(ctx, &storev1.CreateTenantRequest{Name: f.uniq + "-" + name})
	if err != nil {
		t.Fatal(err)
	}
	domain := name + "." + f.uniq + ".example"
	if _, err := f.admin.CreateDomain(ctx, &storev1.CreateDomainRequest{Tenant: tr.Tenant.Name, Name: domain}); err != nil {
		t.Fatal(err)
	}
	for _, l := range locals {
		if _, err := f.admin.CreateAccount(ctx, &storev1.CreateAccountRequest{Address: l + "@" + domain, Password: "password-" + l}); err != nil {
			t.Fatal(err)
		}
	}
	return tr.Tenant, domain
}

func (f *dirFixture) login(t *testing.T, user, password string) *storev1.AuthenticateResponse {
	t.Helper()
	resp, err := f.dir.Authenticate(as(f.smtp), &storev1.AuthenticateRequest{Username: user, Password: password, Service: "submission", RemoteIp: "192.0.2.1"})
	if err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	return resp
}

// wantStatus checks a call's gRPC code and, when reason is not
// unspecified, its ErrorInfo reason.
func wantStatus(t *testing.T, what string, err error, code codes.Code, reason storev1.Reason) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code {
		t.Fatalf("%s: got %v, want %s", what, err, code)
	}
	if reason == storev1.Reason_REASON_UNSPECIFIED {
		return
	}
	for _, d := range st.Details() {
		if info, ok := d.(*storev1.ErrorInfo); ok && info.GetReason() == reason {
			return
		}
	}
	t.Fatalf("%s: %v lacks reason %s", what, err, reason)
}

func TestAuthenticate(t *testing.T) {
	f := newDirFixture(t)
	_, domain := f.setup(t, "auth", "ann", "dis")
	ctx := as(f.operator)

	resp := f.login(t, "Ann@"+strings.ToUpper(domain), "password-ann")
	if resp.GetAddress() != "ann@"+domain || resp.GetAccountId() == "" || resp.GetTenantId() == "" || resp.GetSessionToken() == "" ||
		!resp.GetExpiresAt().AsTime().After(time.Now()) {
		t.Fatalf("login answer: %+v", resp)
	}
	// The token is a session of that account.
	p, err := f.tokens.Verify(resp.GetSessionToken())
	if err != nil || p.Kind != auth.KindSession || p.AccountID != resp.GetAccountId() || p.Service != "submission" {
		t.Fatalf("session token: %+v %v", p, err)
	}

	// App password: shown once, accepted with or without dashes and case.
	ap, err := f.admin.CreateAppPassword(ctx, &storev1.CreateAppPasswordRequest{Address: "ann@" + domain, Name: "phone"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ap.GetPassword()) < auth.AppPasswordLen {
		t.Fatalf("app password %q", ap.GetPassword())
	}
	f.login(t, "ann@"+domain, strings.ToUpper(strings.ReplaceAll(ap.GetPassword(), "-", "")))
	list, err := f.admin.ListAppPasswords(ctx, &storev1.ListAppPasswordsRequest{Address: "ann@" + domain})
	if err != nil || len(list.GetAppPasswords()) != 1 || list.GetAppPasswords()[0].GetLastUsedAt() == nil {
		t.Fatalf("app password use not recorded: %+v %v", list, err)
	}
	// Revoked, it no longer logs in.
	if _, err := f.admin.DeleteAppPassword(ctx, &storev1.DeleteAppPasswordRequest{Address: "ann@" + domain, Id: ap.GetAppPassword().GetId()}); err != nil {
		t.Fatal(err)
	}
	_, err = f.dir.Authenticate(as(f.smtp), &storev1.AuthenticateRequest{Username: "ann@" + domain, Password: ap.GetPassword(), RemoteIp: "192.0.2.1"})
	wantStatus(t, "revoked app password", err, codes.Unauthenticated, storev1.Reason_REASON_AUTH_FAILED)

	// Wrong password and unknown user get the same answer.
	for _, user := range []string{"ann@" + domain, "nobody@" + domain, "not-an-address"} {
		_, err := f.dir.Authenticate(as(f.smtp), &storev1.AuthenticateRequest{Username: user, Password: "wrong-password", RemoteIp: "192.0.2.2"})
		wantStatus(t, "wrong password for "+user, err, codes.Unauthenticated, storev1.Reason_REASON_AUTH_FAILED)
	}

	// Disabled: only someone who knows the password learns it.
	yes := true
	if _, err := f.admin.UpdateAccount(ctx, &storev1.UpdateAccountRequest{Address: "dis@" + domain, Disabled: &yes}); err != nil {
		t.Fatal(err)
	}
	_, err = f.dir.Authenticate(as(f.smtp), &storev1.AuthenticateRequest{Username: "dis@" + domain, Password: "password-dis", RemoteIp: "192.0.2.3"})
	wantStatus(t, "disabled", err, codes.PermissionDenied, storev1.Reason_REASON_DISABLED)
	_, err = f.dir.Authenticate(as(f.smtp), &storev1.AuthenticateRequest{Username: "dis@" + domain, Password: "wrong-password", RemoteIp: "192.0.2.3"})
	wantStatus(t, "disabled, wrong password", err, codes.Unauthenticated, storev1.Reason_REASON_AUTH_FAILED)

	// Throttling: ann had two failures above (the revoked app password
	// and the wrong password); a third locks the name, and then even the
	// right password is refused.
	_, err = f.dir.Authenticate(as(f.smtp), &storev1.AuthenticateRequest{Username: "ann@" + domain, Password: "wrong-password", RemoteIp: "192.0.2.4"})
	wantStatus(t, "failure before lock", err, codes.Unauthenticated, storev1.Reason_REASON_AUTH_FAILED)
	_, err = f.dir.Authenticate(as(f.smtp), &storev1.AuthenticateRequest{Username: "ann@" + domain, Password: "password-ann", RemoteIp: "192.0.2.4"})
	wantStatus(t, "throttled", err, codes.ResourceExhausted, storev1.Reason_REASON_THROTTLED)

	// A password changed by the admin takes effect.
	pw := "a-new-password"
	if _, err := f.admin.UpdateAccount(ctx, &storev1.UpdateAccountRequest{Address: "dis@" + domain, Password: &pw, Disabled: new(bool)}); err != nil {
		t.Fatal(err)
	}
	f.login(t, "dis@"+domain, pw)
}

func TestAuthenticateNeedsLoginService(t *testing.T) {
	f := newDirFixture(t)
	_, domain := f.setup(t, "svc", "ann")
	session := f.login(t, "ann@"+domain, "password-ann").GetSessionToken()
	delivery := f.issue(t, auth.Principal{Kind: auth.KindService, Service: auth.ServiceDelivery})
	for name, tok := range map[string]string{"session": session, "delivery": delivery} {
		_, err := f.dir.Authenticate(as(tok), &storev1.AuthenticateRequest{Username: "ann@" + domain, Password: "password-ann"})
		wantStatus(t, name+" token", err, codes.PermissionDenied, storev1.Reason_REASON_UNSPECIFIED)
	}
	_, err := f.dir.Authenticate(context.Background(), &storev1.AuthenticateRequest{Username: "ann@" + domain, Password: "password-ann"})
	wantStatus(t, "no token", err, codes.Unauthenticated, storev1.Reason_REASON_AUTH_FAILED)
}

func TestResolveRecipient(t *testing.T) {
	f := newDirFixture(t)
	tenant, domain := f.setup(t, "rcpt", "a", "b", "c", "full", "off")
	ctx := as(f.operator)
	mustAlias := func(addr string, sendAs bool, targets ...string) {
		t.Helper()
		if _, err := f.admin.CreateAlias(ctx, &storev1.CreateAliasRequest{Address: addr, Targets: targets, SendAs: sendAs}); err != nil {
			t.Fatal(err)
		}
	}
	mustAlias("team@"+domain, false, "a@"+domain, "b@"+domain, "A@"+domain)
	mustAlias("@"+domain, false, "c@"+domain)
	mustAlias("gone@"+domain, false, "off@"+domain)
	one := int64(1)
	if _, err := f.admin.UpdateAccount(ctx, &storev1.UpdateAccountRequest{Address: "full@" + domain, QuotaBytes: &one}); err != nil {
		t.Fatal(err)
	}
	yes := true
	if _, err := f.admin.UpdateAccount(ctx, &storev1.UpdateAccountRequest{Address: "off@" + domain, Disabled: &yes}); err != nil {
		t.Fatal(err)
	}

	resolve := func(addr string, size int64) *storev1.ResolveRecipientResponse {
		t.Helper()
		resp, err := f.dir.ResolveRecipient(as(f.smtp), &storev1.ResolveRecipientRequest{Address: addr, Size: size})
		if err != nil {
			t.Fatalf("resolve %s: %v", addr, err)
		}
		return resp
	}
	addrs := func(r *storev1.ResolveRecipientResponse) string {
		var out []string
		for _, a := range r.GetAccounts() {
			if a.GetAccountId() == "" {
				t.Fatalf("account without id: %+v", a)
			}
			out = append(out, strings.TrimSuffix(a.GetAddress(), "@"+domain))
		}
		return strings.Join(out, ",")
	}
	for _, tc := range []struct {
		addr     string
		size     int64
		want     storev1.RecipientStatus
		accounts string
	}{
		{"A@" + domain, 0, storev1.RecipientStatus_RECIPIENT_STATUS_LOCAL, "a"},
		{"team@" + domain, 0, storev1.RecipientStatus_RECIPIENT_STATUS_LOCAL, "a,b"},
		{"whoever@" + domain, 0, storev1.RecipientStatus_RECIPIENT_STATUS_LOCAL, "c"},
		{"full@" + domain, 0, storev1.RecipientStatus_RECIPIENT_STATUS_LOCAL, "full"},
		{"full@" + domain, 2, storev1.RecipientStatus_RECIPIENT_STATUS_OVER_QUOTA, "full"},
		{"off@" + domain, 0, storev1.RecipientStatus_RECIPIENT_STATUS_DISABLED, ""},
		{"gone@" + domain, 0, storev1.RecipientStatus_RECIPIENT_STATUS_DISABLED, ""},
		{"a@elsewhere.example", 0, storev1.RecipientStatus_RECIPIENT_STATUS_NOT_LOCAL, ""},
	} {
		r := resolve(tc.addr, tc.size)
		if r.GetStatus() != tc.want || addrs(r) != tc.accounts {
			t.Errorf("%s (size %d): %s [%s], want %s [%s]", tc.addr, tc.size, r.GetStatus(), addrs(r), tc.want, tc.accounts)
		}
		if tc.want != storev1.RecipientStatus_RECIPIENT_STATUS_NOT_LOCAL && r.GetTenantId() != tenant.GetId() {
			t.Errorf("%s: tenant %q, want %q", tc.addr, r.GetTenantId(), tenant.GetId())
		}
	}
	// Without the catch-all, an unknown name is an unknown user.
	if _, err := f.admin.DeleteAlias(ctx, &storev1.DeleteAliasRequest{Address: "@" + domain}); err != nil {
		t.Fatal(err)
	}
	if r := resolve("whoever@"+domain, 0); r.GetStatus() != storev1.RecipientStatus_RECIPIENT_STATUS_UNKNOWN_USER {
		t.Fatalf("unknown user: %+v", r)
	}
	_, err := f.dir.ResolveRecipient(as(f.smtp), &storev1.ResolveRecipientRequest{Address: "no at sign"})
	wantStatus(t, "malformed address", err, codes.InvalidArgument, storev1.Reason_REASON_INVALID_NAME)
	// A session may not look up recipients.
	session := f.login(t, "a@"+domain, "password-a").GetSessionToken()
	_, err = f.dir.ResolveRecipient(as(session), &storev1.ResolveRecipientRequest{Address: "a@" + domain})
	wantStatus(t, "session token", err, codes.PermissionDenied, storev1.Reason_REASON_UNSPECIFIED)
}

func TestCanSendAs(t *testing.T) {
	f := newDirFixture(t)
	_, domain := f.setup(t, "sendas", "a", "b")
	ctx := as(f.operator)
	if _, err := f.admin.CreateAlias(ctx, &storev1.CreateAliasRequest{Address: "sales@" + domain, Targets: []string{"a@" + domain}, SendAs: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.admin.CreateAlias(ctx, &storev1.CreateAliasRequest{Address: "info@" + domain, Targets: []string{"a@" + domain}}); err != nil {
		t.Fatal(err)
	}
	a := as(f.login(t, "a@"+domain, "password-a").GetSessionToken())
	b := as(f.login(t, "b@"+domain, "password-b").GetSessionToken())
	for _, tc := range []struct {
		who     string
		ctx     context.Context
		address string
		want    bool
	}{
		{"a", a, "A@" + domain, true},
		{"a", a, "sales@" + domain, true},
		{"a", a, "info@" + domain, false},
		{"a", a, "b@" + domain, false},
		{"b", b, "sales@" + domain, false},
		{"b", b, "b@" + domain, true},
	} {
		resp, err := f.dir.CanSendAs(tc.ctx, &storev1.CanSendAsRequest{Address: tc.address})
		if err != nil || resp.GetAllowed() != tc.want {
			t.Errorf("%s as %s: %v %v, want %v", tc.who, tc.address, resp.GetAllowed(), err, tc.want)
		}
	}
	_, err := f.dir.CanSendAs(a, &storev1.CanSendAsRequest{Address: "@" + domain})
	wantStatus(t, "malformed address", err, codes.InvalidArgument, storev1.Reason_REASON_INVALID_NAME)
	// Only a session has an account to answer for.
	_, err = f.dir.CanSendAs(as(f.smtp), &storev1.CanSendAsRequest{Address: "a@" + domain})
	wantStatus(t, "service token", err, codes.PermissionDenied, storev1.Reason_REASON_UNSPECIFIED)
}

// TestCredentialSourceUnknownUser: the adapter reports unknown and
// malformed names as auth.ErrUnknownUser, which Authenticate turns into
// the one failure answer.
func TestCredentialSourceUnknownUser(t *testing.T) {
	newDirFixture(t)
	src := NewCredentialSource(dirRepo)
	for _, name := range []string{"nobody@nowhere.example", "", "x"} {
		if _, err := src.Credentials(context.Background(), name); !errors.Is(err, auth.ErrUnknownUser) {
			t.Errorf("credentials of %q: %v", name, err)
		}
	}
}
