package repotest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mail/petrel/services/store/internal/mimeparse"
	"github.com/petrel-mail/petrel/services/store/internal/repo"
)

// testAdmin checks repo.Admin: directory administration, login
// credentials, recipient resolution and send-as.
func testAdmin(t *testing.T, f Factory) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, f Factory)
	}{
		{"TenantsAndDomains", testAdminTenantsDomains},
		{"Accounts", testAdminAccounts},
		{"DeleteAccountReleasesObjects", testAdminDeleteAccount},
		{"AppPasswords", testAdminAppPasswords},
		{"Aliases", testAdminAliases},
		{"Credentials", testAdminCredentials},
		{"ResolveRecipient", testAdminResolve},
		{"CanSendAs", testAdminSendAs},
		{"AddressValidation", testAdminValidation},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, f) })
	}
}

func (e *env) namedAccount(t *testing.T, local string) repo.Scope {
	t.Helper()
	a, err := e.r.CreateAccount(context.Background(), e.tenant.ID, e.domain.ID, local, "$argon2id$x")
	if err != nil {
		t.Fatal(err)
	}
	return repo.Scope{TenantID: a.TenantID, AccountID: a.ID}
}

func (e *env) addr(local string) string { return local + "@" + e.domain.Name }

func testAdminTenantsDomains(t *testing.T, f Factory) {
	e := newEnv(t, f)
	ctx := context.Background()
	t2, err := e.r.CreateTenantWithLimits(ctx, "acme", repo.TenantLimits{QuotaBytes: 1 << 30, MaxAccounts: 5})
	if err != nil {
		t.Fatal(err)
	}
	if t2.QuotaBytes != 1<<30 || t2.MaxAccounts != 5 || t2.CreatedAt.IsZero() {
		t.Fatalf("created tenant: %+v", t2)
	}
	_, err = e.r.CreateTenantWithLimits(ctx, "acme", repo.TenantLimits{})
	wantErr(t, "duplicate tenant", err, repo.ErrExists)
	got, err := e.r.TenantByName(ctx, "acme")
	if err != nil || got.ID != t2.ID || got.QuotaBytes != 1<<30 {
		t.Fatalf("tenant by name: %+v %v", got, err)
	}
	if got, err = e.r.TenantByID(ctx, e.tenant.ID); err != nil || got.Name != e.tenant.Name || got.QuotaBytes != 0 {
		t.Fatalf("tenant by id: %+v %v", got, err)
	}
	_, err = e.r.TenantByName(ctx, "nope")
	wantErr(t, "unknown tenant", err, repo.ErrNotFound)
	all, err := e.r.ListTenants(ctx)
	if err != nil || len(all) != 2 || all[0].Name != "acme" {
		t.Fatalf("list tenants: %+v %v", all, err)
	}

	d2, err := e.r.CreateDomain(ctx, t2.ID, "Acme.Example")
	if err != nil {
		t.Fatal(err)
	}
	doms, err := e.r.ListDomains(ctx, t2.ID)
	if err != nil || len(doms) != 1 || doms[0].Name != "acme.example" || doms[0].TenantName != "acme" {
		t.Fatalf("list domains of acme: %+v %v", doms, err)
	}
	if doms, err = e.r.ListDomains(ctx, 0); err != nil || len(doms) != 2 {
		t.Fatalf("list all domains: %+v %v", doms, err)
	}
	if d, err := e.r.DomainByName(ctx, "ACME.example."); err != nil || d.ID != d2.ID || d.TenantID != t2.ID {
		t.Fatalf("domain by name: %+v %v", d, err)
	}

	// Deletes refuse while something depends on the object.
	wantErr(t, "delete tenant with domains", e.r.DeleteTenant(ctx, t2.ID), repo.ErrNotAllowed)
	a, err := e.r.CreateAccount(ctx, t2.ID, d2.ID, "x", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.CreateAliasWithOptions(ctx, t2.ID, d2.ID, "", []string{"x@acme.example"}, false); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "delete domain with accounts", e.r.DeleteDomain(ctx, t2.ID, d2.ID), repo.ErrNotAllowed)
	// Another tenant's domain is not found in this tenant.
	wantErr(t, "delete domain of another tenant", e.r.DeleteDomain(ctx, e.tenant.ID, d2.ID), repo.ErrNotFound)
	if err := e.r.DeleteAccount(ctx, repo.Scope{TenantID: t2.ID, AccountID: a.ID}); err != nil {
		t.Fatal(err)
	}
	if err := e.r.DeleteDomain(ctx, t2.ID, d2.ID); err != nil {
		t.Fatalf("delete empty domain (with its catch-all): %v", err)
	}
	_, err = e.r.AliasByAddress(ctx, "@acme.example")
	wantErr(t, "alias of deleted domain", err, repo.ErrNotFound)
	if err := e.r.DeleteTenant(ctx, t2.ID); err != nil {
		t.Fatal(err)
	}
	_, err = e.r.TenantByID(ctx, t2.ID)
	wantErr(t, "deleted tenant", err, repo.ErrNotFound)
	wantErr(t, "delete deleted tenant", e.r.DeleteTenant(ctx, t2.ID), repo.ErrNotFound)
}

func testAdminAccounts(t *testing.T, f Factory) {
	e := newEnv(t, f)
	ctx := context.Background()
	s := e.namedAccount(t, "Bob")
	e.namedAccount(t, "alice")
	a, err := e.r.AccountByAddress(ctx, "BOB@"+strings.ToUpper(e.domain.Name))
	if err != nil || a.ID != s.AccountID || a.Address != e.addr("bob") || a.TenantName != e.tenant.Name || a.Disabled {
		t.Fatalf("account by address: %+v %v", a, err)
	}
	_, err = e.r.AccountByAddress(ctx, e.addr("carol"))
	wantErr(t, "unknown account", err, repo.ErrNotFound)

	list, err := e.r.ListAccounts(ctx, 0, e.domain.ID)
	if err != nil || len(list) != 2 || list[0].LocalPart != "alice" || list[1].LocalPart != "bob" {
		t.Fatalf("list accounts of domain: %+v %v", list, err)
	}
	other, err := e.r.CreateTenantWithLimits(ctx, "other", repo.TenantLimits{})
	if err != nil {
		t.Fatal(err)
	}
	if list, err = e.r.ListAccounts(ctx, other.ID, 0); err != nil || len(list) != 0 {
		t.Fatalf("list accounts of another tenant: %+v %v", list, err)
	}

	hash, disabled, qb, qm := "$argon2id$new", true, int64(1000), int64(10)
	a, err = e.r.UpdateAccount(ctx, s, repo.AccountUpdate{PasswordHash: &hash, Disabled: &disabled, QuotaBytes: &qb, QuotaMessages: &qm})
	if err != nil || a.PasswordHash != hash || !a.Disabled || a.Quota.LimitBytes != 1000 || a.Quota.LimitMessages != 10 {
		t.Fatalf("update all: %+v %v", a, err)
	}
	// Absent fields stay; a zero quota means unlimited.
	zero := int64(0)
	a, err = e.r.UpdateAccount(ctx, s, repo.AccountUpdate{QuotaBytes: &zero})
	if err != nil || a.PasswordHash != hash || !a.Disabled || a.Quota.LimitBytes != 0 || a.Quota.LimitMessages != 10 {
		t.Fatalf("update quota only: %+v %v", a, err)
	}
	_, err = e.r.UpdateAccount(ctx, repo.Scope{TenantID: other.ID, AccountID: s.AccountID}, repo.AccountUpdate{Disabled: &disabled})
	wantErr(t, "update through another tenant", err, repo.ErrNotFound)
}

func testAdminDeleteAccount(t *testing.T, f Factory) {
	e := newEnv(t, f)
	ctx := context.Background()
	gone, stays := e.account(t), e.account(t)
	shared, own := e.object(t, 100), e.object(t, 200)
	if _, err := e.r.CreateMailbox(ctx, gone, "Archive/2026", ""); err != nil {
		t.Fatal(err)
	}
	arch, err := e.r.MailboxByName(ctx, gone, "Archive/2026")
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.r.Deliver(ctx, repo.Delivery{TenantID: e.tenant.ID, DeliveryID: "q1", Recipients: []int64{gone.AccountID, stays.AccountID}, ObjectID: shared})
	if err != nil || res[0].Err != nil || res[1].Err != nil {
		t.Fatalf("deliver: %+v %v", res, err)
	}
	for _, mb := range []int64{e.inbox(t, gone).ID, arch.ID} {
		if _, err := e.r.Append(ctx, gone, mb, repo.AppendRequest{ObjectID: own}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.r.CreateAppPassword(ctx, gone, "phone", "$argon2id$ap"); err != nil {
		t.Fatal(err)
	}
	if err := e.r.DeleteAccount(ctx, gone); err != nil {
		t.Fatal(err)
	}
	if o := must(e.r.GetObject(ctx, e.tenant.ID, shared)); o.RefCount != 1 {
		t.Fatalf("shared object refcount %d, want 1", o.RefCount)
	}
	if o := must(e.r.GetObject(ctx, e.tenant.ID, own)); o.RefCount != 0 {
		t.Fatalf("own object refcount %d, want 0", o.RefCount)
	}
	_, err = e.r.MailboxByName(ctx, gone, "INBOX")
	wantErr(t, "mailbox of deleted account", err, repo.ErrNotFound)
	_, err = e.r.AccountByAddress(ctx, e.addr("user1"))
	wantErr(t, "deleted account", err, repo.ErrNotFound)
	wantErr(t, "delete twice", e.r.DeleteAccount(ctx, gone), repo.ErrNotFound)
	// The released object is collected; the shared one is not.
	var deleted []string
	n, err := e.r.Collect(ctx, 0, func(_ context.Context, _ int64, key string) error {
		deleted = append(deleted, key)
		return nil
	})
	if err != nil || n != 1 || len(deleted) != 1 {
		t.Fatalf("collect after delete: %d %v %v", n, deleted, err)
	}
	if _, err := e.r.GetObject(ctx, e.tenant.ID, own); err == nil {
		t.Fatal("own object still there after collection")
	}
	checkCounters(t, e.r, stays)
}

func testAdminAppPasswords(t *testing.T, f Factory) {
	e := newEnv(t, f)
	ctx := context.Background()
	s, s2 := e.account(t), e.account(t)
	ap, err := e.r.CreateAppPassword(ctx, s, "phone", "$argon2id$1")
	if err != nil || ap.ID == 0 || ap.CreatedAt.IsZero() || !ap.LastUsedAt.IsZero() {
		t.Fatalf("create: %+v %v", ap, err)
	}
	_, err = e.r.CreateAppPassword(ctx, s, "phone", "$argon2id$2")
	wantErr(t, "duplicate name", err, repo.ErrExists)
	if _, err := e.r.CreateAppPassword(ctx, s, "laptop", "$argon2id$3"); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	if err := e.r.AppPasswordUsed(ctx, s, ap.ID, at); err != nil {
		t.Fatal(err)
	}
	// An older use never hides a newer one.
	if err := e.r.AppPasswordUsed(ctx, s, ap.ID, at.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	list, err := e.r.ListAppPasswords(ctx, s)
	if err != nil || len(list) != 2 || list[0].Name != "laptop" || list[1].Name != "phone" || !list[1].LastUsedAt.Equal(at) {
		t.Fatalf("list: %+v %v", list, err)
	}
	wantErr(t, "used by another account", e.r.AppPasswordUsed(ctx, s2, ap.ID, at), repo.ErrNotFound)
	wantErr(t, "delete through another account", e.r.DeleteAppPassword(ctx, s2, ap.ID), repo.ErrNotFound)
	if err := e.r.DeleteAppPassword(ctx, s, ap.ID); err != nil {
		t.Fatal(err)
	}
	if list, _ = e.r.ListAppPasswords(ctx, s); len(list) != 1 {
		t.Fatalf("after delete: %+v", list)
	}
}

func testAdminAliases(t *testing.T, f Factory) {
	e := newEnv(t, f)
	ctx := context.Background()
	e.namedAccount(t, "a")
	al, err := e.r.CreateAliasWithOptions(ctx, e.tenant.ID, e.domain.ID, "Team", []string{"A@" + e.domain.Name, e.addr("a"), "x@elsewhere.example"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if al.Address != e.addr("team") || !al.SendAs || !slices.Equal(al.Targets, []string{e.addr("a"), "x@elsewhere.example"}) {
		t.Fatalf("created alias: %+v", al)
	}
	_, err = e.r.CreateAliasWithOptions(ctx, e.tenant.ID, e.domain.ID, "team", []string{e.addr("a")}, false)
	wantErr(t, "duplicate alias", err, repo.ErrExists)
	_, err = e.r.CreateAliasWithOptions(ctx, e.tenant.ID, e.domain.ID, "", []string{e.addr("a")}, true)
	wantErr(t, "send-as catch-all", err, repo.ErrInvalidName)
	_, err = e.r.CreateAliasWithOptions(ctx, e.tenant.ID, e.domain.ID, "bad", []string{"not an address"}, false)
	wantErr(t, "bad target", err, repo.ErrInvalidName)
	_, err = e.r.CreateAliasWithOptions(ctx, e.tenant.ID, e.domain.ID, "bad", nil, false)
	wantErr(t, "no target", err, repo.ErrInvalidName)
	catchAll, err := e.r.CreateAliasWithOptions(ctx, e.tenant.ID, e.domain.ID, "", []string{e.addr("a")}, false)
	if err != nil || catchAll.Address != "@"+e.domain.Name {
		t.Fatalf("catch-all: %+v %v", catchAll, err)
	}
	list, err := e.r.ListAliases(ctx, 0, e.domain.ID)
	if err != nil || len(list) != 2 || list[0].ID != catchAll.ID || list[1].ID != al.ID {
		t.Fatalf("list: %+v %v", list, err)
	}
	if got, err := e.r.AliasByAddress(ctx, "@"+strings.ToUpper(e.domain.Name)); err != nil || got.ID != catchAll.ID {
		t.Fatalf("catch-all by address: %+v %v", got, err)
	}
	other, err := e.r.CreateTenantWithLimits(ctx, "other", repo.TenantLimits{})
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, "delete through another tenant", e.r.DeleteAlias(ctx, other.ID, al.ID), repo.ErrNotFound)
	if err := e.r.DeleteAlias(ctx, e.tenant.ID, al.ID); err != nil {
		t.Fatal(err)
	}
	_, err = e.r.AliasByAddress(ctx, e.addr("team"))
	wantErr(t, "deleted alias", err, repo.ErrNotFound)
}

func testAdminCredentials(t *testing.T, f Factory) {
	e := newEnv(t, f)
	ctx := context.Background()
	s := e.namedAccount(t, "carol")
	if _, err := e.r.CreateAppPassword(ctx, s, "mail app", "$argon2id$ap"); err != nil {
		t.Fatal(err)
	}
	c, err := e.r.Credentials(ctx, "Carol@"+strings.ToUpper(e.domain.Name))
	if err != nil || c.AccountID != s.AccountID || c.TenantID != s.TenantID || c.Address != e.addr("carol") ||
		c.PasswordHash != "$argon2id$x" || c.Disabled || len(c.AppPasswords) != 1 || c.AppPasswords[0].Hash != "$argon2id$ap" {
		t.Fatalf("credentials: %+v %v", c, err)
	}
	if tenant, err := e.r.AccountTenant(ctx, s.AccountID); err != nil || tenant != s.TenantID {
		t.Fatalf("account tenant: %d %v", tenant, err)
	}
	_, err = e.r.AccountTenant(ctx, s.AccountID+1000)
	wantErr(t, "tenant of unknown account", err, repo.ErrNotFound)
	for _, name := range []string{e.addr("nobody"), "carol", "", "carol@unknown.example"} {
		_, err := e.r.Credentials(ctx, name)
		wantErr(t, fmt.Sprintf("credentials of %q", name), err, repo.ErrNotFound)
	}
}

func testAdminResolve(t *testing.T, f Factory) {
	e := newEnv(t, f)
	ctx := context.Background()
	a, b, c := e.namedAccount(t, "a"), e.namedAccount(t, "b"), e.namedAccount(t, "c")
	must(e.r.CreateAliasWithOptions(ctx, e.tenant.ID, e.domain.ID, "team", []string{e.addr("b"), e.addr("a"), e.addr("b"), "x@remote.example"}, false))
	must(e.r.CreateAliasWithOptions(ctx, e.tenant.ID, e.domain.ID, "ghost", []string{"x@remote.example"}, false))
	resolve := func(addr string, size int64) repo.Recipient {
		t.Helper()
		rc, err := e.r.ResolveRecipient(ctx, addr, size)
		if err != nil {
			t.Fatalf("resolve %s: %v", addr, err)
		}
		return rc
	}
	ids := func(rc repo.Recipient) []int64 {
		var out []int64
		for _, ra := range rc.Accounts {
			out = append(out, ra.ID)
		}
		return out
	}
	if rc := resolve("A@"+strings.ToUpper(e.domain.Name), 0); rc.Status != repo.RecipientLocal || rc.TenantID != e.tenant.ID ||
		len(rc.Accounts) != 1 || rc.Accounts[0] != (repo.ResolvedAccount{ID: a.AccountID, Address: e.addr("a")}) {
		t.Fatalf("account: %+v", rc)
	}
	if rc := resolve(e.addr("team"), 0); rc.Status != repo.RecipientLocal || !slices.Equal(ids(rc), []int64{a.AccountID, b.AccountID}) {
		t.Fatalf("alias with several targets: %+v", rc)
	}
	if rc := resolve(e.addr("nobody"), 0); rc.Status != repo.RecipientUnknownUser || len(rc.Accounts) != 0 {
		t.Fatalf("unknown user: %+v", rc)
	}
	if rc := resolve(e.addr("ghost"), 0); rc.Status != repo.RecipientUnknownUser {
		t.Fatalf("alias without local targets: %+v", rc)
	}
	if rc := resolve("a@remote.example", 0); rc.Status != repo.RecipientNotLocal {
		t.Fatalf("not local: %+v", rc)
	}
	must(e.r.CreateAliasWithOptions(ctx, e.tenant.ID, e.domain.ID, "", []string{e.addr("c")}, false))
	if rc := resolve(e.addr("nobody"), 0); rc.Status != repo.RecipientLocal || !slices.Equal(ids(rc), []int64{c.AccountID}) {
		t.Fatalf("catch-all: %+v", rc)
	}
	// An account wins over the catch-all, an alias too.
	if rc := resolve(e.addr("team"), 0); !slices.Equal(ids(rc), []int64{a.AccountID, b.AccountID}) {
		t.Fatalf("alias under a catch-all: %+v", rc)
	}

	// Quota: the announced size counts.
	if err := e.r.SetQuota(ctx, a, 1000, 0); err != nil {
		t.Fatal(err)
	}
	if rc := resolve(e.addr("a"), 1000); rc.Status != repo.RecipientLocal {
		t.Fatalf("exactly at quota: %+v", rc)
	}
	if rc := resolve(e.addr("a"), 1001); rc.Status != repo.RecipientOverQuota || !slices.Equal(ids(rc), []int64{a.AccountID}) {
		t.Fatalf("over quota: %+v", rc)
	}
	// One target with room is enough for the alias.
	if rc := resolve(e.addr("team"), 1001); rc.Status != repo.RecipientLocal {
		t.Fatalf("alias with one target over quota: %+v", rc)
	}
	if err := e.r.SetQuota(ctx, b, 0, 1); err != nil {
		t.Fatal(err)
	}
	e.appendN(t, b, e.inbox(t, b).ID, 1, 0)
	if rc := resolve(e.addr("team"), 1001); rc.Status != repo.RecipientOverQuota {
		t.Fatalf("alias with every target over quota: %+v", rc)
	}

	// Disabled accounts.
	yes := true
	must(e.r.UpdateAccount(ctx, c, repo.AccountUpdate{Disabled: &yes}))
	if rc := resolve(e.addr("c"), 0); rc.Status != repo.RecipientDisabled || len(rc.Accounts) != 0 {
		t.Fatalf("disabled account: %+v", rc)
	}
	if rc := resolve(e.addr("nobody"), 0); rc.Status != repo.RecipientDisabled {
		t.Fatalf("catch-all to a disabled account: %+v", rc)
	}
	must(e.r.UpdateAccount(ctx, a, repo.AccountUpdate{Disabled: &yes}))
	if rc := resolve(e.addr("team"), 0); rc.Status != repo.RecipientOverQuota || !slices.Equal(ids(rc), []int64{b.AccountID}) {
		t.Fatalf("alias with a disabled and a full target: %+v", rc)
	}

	// The tenant-wide limit: the usage of all its accounts plus the size.
	t2 := must(e.r.CreateTenantWithLimits(ctx, "small", repo.TenantLimits{QuotaBytes: 1500}))
	d2 := must(e.r.CreateDomain(ctx, t2.ID, "small.example"))
	acc := must(e.r.CreateAccount(ctx, t2.ID, d2.ID, "u", ""))
	s2 := repo.Scope{TenantID: t2.ID, AccountID: acc.ID}
	obj := must(e.r.CreateObject(ctx, t2.ID, "obj/small", adminParsed(1000)))
	must(e.r.Append(ctx, s2, e.inbox(t, s2).ID, repo.AppendRequest{ObjectID: obj}))
	if rc := resolve("u@small.example", 500); rc.Status != repo.RecipientLocal {
		t.Fatalf("tenant at its limit: %+v", rc)
	}
	if rc := resolve("u@small.example", 501); rc.Status != repo.RecipientOverQuota {
		t.Fatalf("tenant over its limit: %+v", rc)
	}

	_, err := e.r.ResolveRecipient(ctx, "no-at-sign", 0)
	wantErr(t, "malformed address", err, repo.ErrInvalidName)
}

func testAdminSendAs(t *testing.T, f Factory) {
	e := newEnv(t, f)
	ctx := context.Background()
	a, b := e.namedAccount(t, "a"), e.namedAccount(t, "b")
	must(e.r.CreateAliasWithOptions(ctx, e.tenant.ID, e.domain.ID, "sales", []string{e.addr("a")}, true))
	must(e.r.CreateAliasWithOptions(ctx, e.tenant.ID, e.domain.ID, "info", []string{e.addr("a")}, false))
	must(e.r.CreateAliasWithOptions(ctx, e.tenant.ID, e.domain.ID, "", []string{e.addr("a")}, false))
	for _, tc := range []struct {
		s    repo.Scope
		addr string
		want bool
	}{
		{a, "A@" + strings.ToUpper(e.domain.Name), true}, // own address
		{a, e.addr("sales"), true},                       // alias with send-as
		{b, e.addr("sales"), false},                      // not a target
		{a, e.addr("info"), false},                       // alias without send-as
		{a, e.addr("anything"), false},                   // the catch-all never grants it
		{a, e.addr("b"), false},                          // another account
		{a, "a@elsewhere.example", false},
	} {
		got, err := e.r.CanSendAs(ctx, tc.s, tc.addr)
		if err != nil || got != tc.want {
			t.Errorf("account %d as %s: %v %v, want %v", tc.s.AccountID, tc.addr, got, err, tc.want)
		}
	}
}

func testAdminValidation(t *testing.T, f Factory) {
	for _, tc := range []struct {
		in       string
		catchAll bool
		ok       bool
	}{
		{"User.Name+tag@Example.COM.", false, true},
		{"@example.com", true, true},
		{"@example.com", false, false},
		{"a@b", false, true},
		{"no-at", false, false},
		{"a..b@example.com", false, false},
		{".a@example.com", false, false},
		{"a b@example.com", false, false},
		{"a@exa_mple.com", false, false},
		{"a@-example.com", false, false},
		{"a@example..com", false, false},
		{"a@bücher.example", false, false},
		{"a@xn--bcher-kva.example", false, true},
		{strings.Repeat("x", 65) + "@example.com", false, false},
		{"a@" + strings.Repeat("x", 64) + ".com", false, false},
	} {
		_, _, err := repo.ParseAddress(tc.in, tc.catchAll)
		if (err == nil) != tc.ok {
			t.Errorf("ParseAddress(%q, %v) = %v, want ok %v", tc.in, tc.catchAll, err, tc.ok)
		}
	}
	l, d, _ := repo.ParseAddress("User.Name+tag@Example.COM.", false)
	if l != "user.name+tag" || d != "example.com" {
		t.Errorf("normalized to %q %q", l, d)
	}
}

// adminParsed describes a minimal stored message of size bytes.
func adminParsed(size int64) *mimeparse.Parsed {
	return &mimeparse.Parsed{
		Size: size, Envelope: []byte(`(NIL "hi" NIL NIL NIL NIL NIL NIL NIL NIL)`),
		BodyStructure: []byte(`("text" "plain" NIL NIL NIL "7bit" 2 1)`), Body: []byte(`("text" "plain" NIL NIL NIL "7bit" 2 1)`),
		Parts:  []mimeparse.Part{{Path: "", HeaderLen: 10, BodyOffset: 10, BodyLen: size - 10, ContentType: "text/plain"}},
		Header: []byte("Subject: hi\r\n\r\n"), Subject: "hi",
	}
}
