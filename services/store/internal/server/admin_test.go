package server

import (
	"context"
	"slices"
	"strings"
	"testing"

	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/petrel-mail/petrel/services/store/internal/auth"
)

// TestAdminOperatorLifecycle walks an operator through creating and
// removing a tenant with everything in it.
func TestAdminOperatorLifecycle(t *testing.T) {
	f := newDirFixture(t)
	ctx := as(f.operator)
	name := f.uniq + "-life"
	tr, err := f.admin.CreateTenant(ctx, &storev1.CreateTenantRequest{Name: name, QuotaBytes: 1 << 30, MaxAccounts: 2})
	if err != nil {
		t.Fatal(err)
	}
	if tr.GetTenant().GetName() != name || tr.GetTenant().GetQuotaBytes() != 1<<30 || tr.GetTenant().GetMaxAccounts() != 2 || tr.GetTenant().GetCreatedAt() == nil {
		t.Fatalf("tenant: %+v", tr)
	}
	_, err = f.admin.CreateTenant(ctx, &storev1.CreateTenantRequest{Name: name})
	wantStatus(t, "duplicate tenant", err, codes.AlreadyExists, storev1.Reason_REASON_ALREADY_EXISTS)
	lt, err := f.admin.ListTenants(ctx, &storev1.ListTenantsRequest{})
	if err != nil || !slices.ContainsFunc(lt.GetTenants(), func(x *storev1.Tenant) bool { return x.GetName() == name }) {
		t.Fatalf("list tenants: %v %v", lt, err)
	}

	domain := "Life." + f.uniq + ".Example."
	lower := strings.TrimSuffix(strings.ToLower(domain), ".")
	dr, err := f.admin.CreateDomain(ctx, &storev1.CreateDomainRequest{Tenant: name, Name: domain})
	if err != nil || dr.GetDomain().GetName() != lower || dr.GetDomain().GetTenant() != name {
		t.Fatalf("create domain: %+v %v", dr, err)
	}
	_, err = f.admin.CreateDomain(ctx, &storev1.CreateDomainRequest{Tenant: name, Name: lower})
	wantStatus(t, "duplicate domain", err, codes.AlreadyExists, storev1.Reason_REASON_ALREADY_EXISTS)
	_, err = f.admin.CreateDomain(ctx, &storev1.CreateDomainRequest{Tenant: "no-such-tenant", Name: "x." + lower})
	wantStatus(t, "domain of unknown tenant", err, codes.NotFound, storev1.Reason_REASON_NOT_FOUND)

	ar, err := f.admin.CreateAccount(ctx, &storev1.CreateAccountRequest{Address: "Joe@" + lower, Password: "joe-password", QuotaBytes: 5000, QuotaMessages: 50})
	if err != nil {
		t.Fatal(err)
	}
	if a := ar.GetAccount(); a.GetAddress() != "joe@"+lower || a.GetTenant() != name || a.GetQuotaBytes() != 5000 || a.GetQuotaMessages() != 50 || a.GetDisabled() {
		t.Fatalf("account: %+v", a)
	}
	_, err = f.admin.CreateAccount(ctx, &storev1.CreateAccountRequest{Address: "joe@" + lower, Password: "joe-password"})
	wantStatus(t, "duplicate account", err, codes.AlreadyExists, storev1.Reason_REASON_ALREADY_EXISTS)
	if _, err := f.admin.CreateAccount(ctx, &storev1.CreateAccountRequest{Address: "ann@" + lower, Password: "ann-password"}); err != nil {
		t.Fatal(err)
	}
	_, err = f.admin.CreateAccount(ctx, &storev1.CreateAccountRequest{Address: "third@" + lower, Password: "third-password"})
	wantStatus(t, "account limit", err, codes.FailedPrecondition, storev1.Reason_REASON_CANNOT)

	got, err := f.admin.GetAccount(ctx, &storev1.GetAccountRequest{Address: "JOE@" + strings.ToUpper(lower)})
	if err != nil || got.GetAccount().GetId() != ar.GetAccount().GetId() {
		t.Fatalf("get account: %+v %v", got, err)
	}
	la, err := f.admin.ListAccounts(ctx, &storev1.ListAccountsRequest{Domain: lower})
	if err != nil || len(la.GetAccounts()) != 2 || la.GetAccounts()[0].GetAddress() != "ann@"+lower {
		t.Fatalf("list accounts: %+v %v", la, err)
	}
	zero, yes := int64(0), true
	ur, err := f.admin.UpdateAccount(ctx, &storev1.UpdateAccountRequest{Address: "joe@" + lower, QuotaBytes: &zero, Disabled: &yes})
	if a := ur.GetAccount(); err != nil || a.GetQuotaBytes() != 0 || a.GetQuotaMessages() != 50 || !a.GetDisabled() {
		t.Fatalf("update: %+v %v", a, err)
	}

	al, err := f.admin.CreateAlias(ctx, &storev1.CreateAliasRequest{Address: "Sales@" + lower, Targets: []string{"joe@" + lower, "ann@" + lower}, SendAs: true})
	if err != nil || al.GetAlias().GetAddress() != "sales@"+lower || !al.GetAlias().GetSendAs() || len(al.GetAlias().GetTargets()) != 2 {
		t.Fatalf("alias: %+v %v", al, err)
	}
	if _, err := f.admin.CreateAlias(ctx, &storev1.CreateAliasRequest{Address: "@" + lower, Targets: []string{"ann@" + lower}}); err != nil {
		t.Fatalf("catch-all: %v", err)
	}
	ls, err := f.admin.ListAliases(ctx, &storev1.ListAliasesRequest{Domain: lower})
	if err != nil || len(ls.GetAliases()) != 2 || ls.GetAliases()[0].GetAddress() != "@"+lower {
		t.Fatalf("list aliases: %+v %v", ls, err)
	}
	_, err = f.admin.CreateAlias(ctx, &storev1.CreateAliasRequest{Address: "sales@" + lower, Targets: []string{"ann@" + lower}})
	wantStatus(t, "duplicate alias", err, codes.AlreadyExists, storev1.Reason_REASON_ALREADY_EXISTS)

	apr, err := f.admin.CreateAppPassword(ctx, &storev1.CreateAppPasswordRequest{Address: "ann@" + lower, Name: "laptop"})
	if err != nil || apr.GetPassword() == "" || apr.GetAppPassword().GetName() != "laptop" || apr.GetAppPassword().GetLastUsedAt() != nil {
		t.Fatalf("app password: %+v %v", apr, err)
	}
	lap, err := f.admin.ListAppPasswords(ctx, &storev1.ListAppPasswordsRequest{Address: "ann@" + lower})
	if err != nil || len(lap.GetAppPasswords()) != 1 || lap.GetAppPasswords()[0].GetId() != apr.GetAppPassword().GetId() {
		t.Fatalf("list app passwords: %+v %v", lap, err)
	}
	// The password is shown once and never stored: nothing in the listing
	// carries it.
	if strings.Contains(lap.String(), apr.GetPassword()) {
		t.Fatal("listing shows the app password")
	}

	// Deletes refuse while something depends on the object.
	_, err = f.admin.DeleteTenant(ctx, &storev1.DeleteTenantRequest{Name: name})
	wantStatus(t, "delete tenant with domains", err, codes.FailedPrecondition, storev1.Reason_REASON_CANNOT)
	_, err = f.admin.DeleteDomain(ctx, &storev1.DeleteDomainRequest{Name: lower})
	wantStatus(t, "delete domain with accounts", err, codes.FailedPrecondition, storev1.Reason_REASON_CANNOT)
	if _, err := f.admin.DeleteAlias(ctx, &storev1.DeleteAliasRequest{Address: "sales@" + lower}); err != nil {
		t.Fatal(err)
	}
	_, err = f.admin.DeleteAlias(ctx, &storev1.DeleteAliasRequest{Address: "sales@" + lower})
	wantStatus(t, "delete deleted alias", err, codes.NotFound, storev1.Reason_REASON_NOT_FOUND)
	for _, a := range []string{"joe", "ann"} {
		if _, err := f.admin.DeleteAccount(ctx, &storev1.DeleteAccountRequest{Address: a + "@" + lower}); err != nil {
			t.Fatal(err)
		}
	}
	_, err = f.admin.GetAccount(ctx, &storev1.GetAccountRequest{Address: "joe@" + lower})
	wantStatus(t, "deleted account", err, codes.NotFound, storev1.Reason_REASON_NOT_FOUND)
	if _, err := f.admin.DeleteDomain(ctx, &storev1.DeleteDomainRequest{Name: lower}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.admin.DeleteTenant(ctx, &storev1.DeleteTenantRequest{Name: name}); err != nil {
		t.Fatal(err)
	}
	_, err = f.admin.DeleteTenant(ctx, &storev1.DeleteTenantRequest{Name: name})
	wantStatus(t, "delete deleted tenant", err, codes.NotFound, storev1.Reason_REASON_NOT_FOUND)
}

// TestAdminValidation: malformed input is INVALID_ARGUMENT with a message
// that says what is wrong.
func TestAdminValidation(t *testing.T) {
	f := newDirFixture(t)
	tenant, domain := f.setup(t, "valid", "ann")
	ctx := as(f.operator)
	neg := int64(-1)
	for _, tc := range []struct {
		name string
		call func() error
		msg  string
	}{
		{"tenant name", func() error {
			_, err := f.admin.CreateTenant(ctx, &storev1.CreateTenantRequest{Name: "Bad Name"})
			return err
		}, "tenant name"},
		{"negative tenant quota", func() error {
			_, err := f.admin.CreateTenant(ctx, &storev1.CreateTenantRequest{Name: f.uniq + "-neg", QuotaBytes: -1})
			return err
		}, "quota_bytes"},
		{"domain label", func() error {
			_, err := f.admin.CreateDomain(ctx, &storev1.CreateDomainRequest{Tenant: tenant.GetName(), Name: "bad_domain.example"})
			return err
		}, "only letters, digits"},
		{"empty label", func() error {
			_, err := f.admin.CreateDomain(ctx, &storev1.CreateDomainRequest{Tenant: tenant.GetName(), Name: "a..example"})
			return err
		}, "empty label"},
		{"unicode domain", func() error {
			_, err := f.admin.CreateDomain(ctx, &storev1.CreateDomainRequest{Tenant: tenant.GetName(), Name: "bücher.example"})
			return err
		}, "A-label"},
		{"address without @", func() error {
			_, err := f.admin.CreateAccount(ctx, &storev1.CreateAccountRequest{Address: "ann", Password: "long-enough"})
			return err
		}, "no '@'"},
		{"double dot", func() error {
			_, err := f.admin.CreateAccount(ctx, &storev1.CreateAccountRequest{Address: "a..b@" + domain, Password: "long-enough"})
			return err
		}, "double dot"},
		{"short password", func() error {
			_, err := f.admin.CreateAccount(ctx, &storev1.CreateAccountRequest{Address: "bob@" + domain, Password: "short"})
			return err
		}, "at least 8"},
		{"negative account quota", func() error {
			_, err := f.admin.UpdateAccount(ctx, &storev1.UpdateAccountRequest{Address: "ann@" + domain, QuotaMessages: &neg})
			return err
		}, "quota_messages"},
		{"alias without targets", func() error {
			_, err := f.admin.CreateAlias(ctx, &storev1.CreateAliasRequest{Address: "x@" + domain})
			return err
		}, "at least one target"},
		{"bad alias target", func() error {
			_, err := f.admin.CreateAlias(ctx, &storev1.CreateAliasRequest{Address: "x@" + domain, Targets: []string{"x y@" + domain}})
			return err
		}, "needs quoting"},
		{"send-as catch-all", func() error {
			_, err := f.admin.CreateAlias(ctx, &storev1.CreateAliasRequest{Address: "@" + domain, Targets: []string{"ann@" + domain}, SendAs: true})
			return err
		}, "catch-all"},
		{"app password name", func() error {
			_, err := f.admin.CreateAppPassword(ctx, &storev1.CreateAppPasswordRequest{Address: "ann@" + domain})
			return err
		}, "app password name"},
		{"app password id", func() error {
			_, err := f.admin.DeleteAppPassword(ctx, &storev1.DeleteAppPasswordRequest{Address: "ann@" + domain, Id: "abc"})
			return err
		}, "positive number"},
	} {
		err := tc.call()
		if st, ok := status.FromError(err); !ok || st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), tc.msg) {
			t.Errorf("%s: got %v, want INVALID_ARGUMENT mentioning %q", tc.name, err, tc.msg)
		}
	}
}

// TestAdminTenantIsolation: a tenant admin sees and changes only its own
// tenant; every object of another tenant answers NOT_FOUND, exactly like
// one that does not exist.
func TestAdminTenantIsolation(t *testing.T) {
	f := newDirFixture(t)
	ta, domA := f.setup(t, "iso-a", "alice")
	tb, domB := f.setup(t, "iso-b", "bob")
	if _, err := f.admin.CreateAlias(as(f.operator), &storev1.CreateAliasRequest{Address: "team@" + domB, Targets: []string{"bob@" + domB}}); err != nil {
		t.Fatal(err)
	}
	ctx := as(f.tenantAdmin(t, ta.GetId()))

	// Listings show only tenant A.
	lt, err := f.admin.ListTenants(ctx, &storev1.ListTenantsRequest{})
	if err != nil || len(lt.GetTenants()) != 1 || lt.GetTenants()[0].GetId() != ta.GetId() {
		t.Fatalf("list tenants: %+v %v", lt, err)
	}
	ld, err := f.admin.ListDomains(ctx, &storev1.ListDomainsRequest{})
	if err != nil || len(ld.GetDomains()) != 1 || ld.GetDomains()[0].GetName() != domA {
		t.Fatalf("list domains: %+v %v", ld, err)
	}
	la, err := f.admin.ListAccounts(ctx, &storev1.ListAccountsRequest{})
	if err != nil || len(la.GetAccounts()) != 1 || la.GetAccounts()[0].GetAddress() != "alice@"+domA {
		t.Fatalf("list accounts: %+v %v", la, err)
	}
	ls, err := f.admin.ListAliases(ctx, &storev1.ListAliasesRequest{})
	if err != nil || len(ls.GetAliases()) != 0 {
		t.Fatalf("list aliases: %+v %v", ls, err)
	}

	// Its own tenant works, also with the tenant left empty.
	dr, err := f.admin.CreateDomain(ctx, &storev1.CreateDomainRequest{Name: "more." + domA})
	if err != nil || dr.GetDomain().GetTenant() != ta.GetName() {
		t.Fatalf("create domain in own tenant: %+v %v", dr, err)
	}
	if _, err := f.admin.CreateAccount(ctx, &storev1.CreateAccountRequest{Address: "al@more." + domA, Password: "al-password"}); err != nil {
		t.Fatal(err)
	}

	// Everything of tenant B is NOT_FOUND.
	pw, yes := "new-password", true
	for name, call := range map[string]func() error{
		"list domains of B": func() error {
			_, err := f.admin.ListDomains(ctx, &storev1.ListDomainsRequest{Tenant: tb.GetName()})
			return err
		},
		"create domain in B": func() error {
			_, err := f.admin.CreateDomain(ctx, &storev1.CreateDomainRequest{Tenant: tb.GetName(), Name: "x." + domB})
			return err
		},
		"delete B's domain": func() error {
			_, err := f.admin.DeleteDomain(ctx, &storev1.DeleteDomainRequest{Name: domB})
			return err
		},
		"list B's accounts": func() error {
			_, err := f.admin.ListAccounts(ctx, &storev1.ListAccountsRequest{Domain: domB})
			return err
		},
		"create account in B": func() error {
			_, err := f.admin.CreateAccount(ctx, &storev1.CreateAccountRequest{Address: "eve@" + domB, Password: "eve-password"})
			return err
		},
		"get B's account": func() error {
			_, err := f.admin.GetAccount(ctx, &storev1.GetAccountRequest{Address: "bob@" + domB})
			return err
		},
		"update B's account": func() error {
			_, err := f.admin.UpdateAccount(ctx, &storev1.UpdateAccountRequest{Address: "bob@" + domB, Password: &pw, Disabled: &yes})
			return err
		},
		"delete B's account": func() error {
			_, err := f.admin.DeleteAccount(ctx, &storev1.DeleteAccountRequest{Address: "bob@" + domB})
			return err
		},
		"app password for B's account": func() error {
			_, err := f.admin.CreateAppPassword(ctx, &storev1.CreateAppPasswordRequest{Address: "bob@" + domB, Name: "x"})
			return err
		},
		"list B's app passwords": func() error {
			_, err := f.admin.ListAppPasswords(ctx, &storev1.ListAppPasswordsRequest{Address: "bob@" + domB})
			return err
		},
		"alias in B": func() error {
			_, err := f.admin.CreateAlias(ctx, &storev1.CreateAliasRequest{Address: "x@" + domB, Targets: []string{"alice@" + domA}})
			return err
		},
		"list B's aliases": func() error {
			_, err := f.admin.ListAliases(ctx, &storev1.ListAliasesRequest{Domain: domB})
			return err
		},
		"delete B's alias": func() error {
			_, err := f.admin.DeleteAlias(ctx, &storev1.DeleteAliasRequest{Address: "team@" + domB})
			return err
		},
		"missing account": func() error {
			_, err := f.admin.GetAccount(ctx, &storev1.GetAccountRequest{Address: "nobody@" + domA})
			return err
		},
	} {
		wantStatus(t, name, call(), codes.NotFound, storev1.Reason_REASON_NOT_FOUND)
	}
	// Tenants themselves are the operator's.
	_, err = f.admin.CreateTenant(ctx, &storev1.CreateTenantRequest{Name: f.uniq + "-mine"})
	wantStatus(t, "create tenant", err, codes.PermissionDenied, storev1.Reason_REASON_UNSPECIFIED)
	_, err = f.admin.DeleteTenant(ctx, &storev1.DeleteTenantRequest{Name: tb.GetName()})
	wantStatus(t, "delete tenant", err, codes.PermissionDenied, storev1.Reason_REASON_UNSPECIFIED)

	// B is untouched: bob still logs in with his password and is enabled.
	f.login(t, "bob@"+domB, "password-bob")
}

// TestAdminNeedsAdminToken: sessions and services cannot use the admin
// API, and a call without a token is unauthenticated.
func TestAdminNeedsAdminToken(t *testing.T) {
	f := newDirFixture(t)
	_, domain := f.setup(t, "tok", "ann")
	session := f.login(t, "ann@"+domain, "password-ann").GetSessionToken()
	for name, ctx := range map[string]context.Context{
		"session":  as(session),
		"smtp":     as(f.smtp),
		"delivery": as(f.issue(t, auth.Principal{Kind: auth.KindService, Service: auth.ServiceDelivery})),
	} {
		_, err := f.admin.GetAccount(ctx, &storev1.GetAccountRequest{Address: "ann@" + domain})
		wantStatus(t, name+" GetAccount", err, codes.PermissionDenied, storev1.Reason_REASON_UNSPECIFIED)
		_, err = f.admin.ListTenants(ctx, &storev1.ListTenantsRequest{})
		wantStatus(t, name+" ListTenants", err, codes.PermissionDenied, storev1.Reason_REASON_UNSPECIFIED)
		_, err = f.admin.UpdateAccount(ctx, &storev1.UpdateAccountRequest{Address: "ann@" + domain, Disabled: new(bool)})
		wantStatus(t, name+" UpdateAccount", err, codes.PermissionDenied, storev1.Reason_REASON_UNSPECIFIED)
	}
	_, err := f.admin.ListTenants(context.Background(), &storev1.ListTenantsRequest{})
	wantStatus(t, "no token", err, codes.Unauthenticated, storev1.Reason_REASON_AUTH_FAILED)
}
