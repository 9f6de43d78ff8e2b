package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/petrel-mail/petrel/services/store/storeclient"
)

// The JSON shapes of -o json: stable snake_case fields that scripts can
// rely on, independent of the protobuf field names.
type (
	tenantJSON struct {
		ID          string     `json:"id"`
		Name        string     `json:"name"`
		QuotaBytes  int64      `json:"quota_bytes"`
		MaxAccounts int64      `json:"max_accounts"`
		CreatedAt   *time.Time `json:"created_at,omitempty"`
	}
	domainJSON struct {
		ID        string     `json:"id"`
		Name      string     `json:"name"`
		Tenant    string     `json:"tenant"`
		CreatedAt *time.Time `json:"created_at,omitempty"`
	}
	accountJSON struct {
		ID            string     `json:"id"`
		Address       string     `json:"address"`
		Tenant        string     `json:"tenant"`
		Disabled      bool       `json:"disabled"`
		QuotaBytes    int64      `json:"quota_bytes"`
		QuotaMessages int64      `json:"quota_messages"`
		BytesUsed     int64      `json:"bytes_used"`
		MessagesUsed  int64      `json:"messages_used"`
		CreatedAt     *time.Time `json:"created_at,omitempty"`
	}
	appPasswordJSON struct {
		ID         string     `json:"id"`
		Name       string     `json:"name"`
		CreatedAt  *time.Time `json:"created_at,omitempty"`
		LastUsedAt *time.Time `json:"last_used_at,omitempty"`
		// Password is set only by app-password add, the one time it is
		// shown.
		Password string `json:"password,omitempty"`
	}
	aliasJSON struct {
		ID      string   `json:"id"`
		Address string   `json:"address"`
		Targets []string `json:"targets"`
		SendAs  bool     `json:"send_as"`
	}
	deletedJSON struct {
		Deleted string `json:"deleted"`
		Kind    string `json:"kind"`
	}
)

func jsonTime(ts *timestamppb.Timestamp) *time.Time {
	if ts == nil {
		return nil
	}
	t := ts.AsTime().UTC()
	return &t
}

func humanTime(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return ts.AsTime().UTC().Format("2006-01-02 15:04")
}

func tenantOf(t *storev1.Tenant) tenantJSON {
	return tenantJSON{ID: t.GetId(), Name: t.GetName(), QuotaBytes: t.GetQuotaBytes(), MaxAccounts: t.GetMaxAccounts(), CreatedAt: jsonTime(t.GetCreatedAt())}
}

func domainOf(d *storev1.Domain) domainJSON {
	return domainJSON{ID: d.GetId(), Name: d.GetName(), Tenant: d.GetTenant(), CreatedAt: jsonTime(d.GetCreatedAt())}
}

func accountOf(a *storev1.Account) accountJSON {
	return accountJSON{
		ID: a.GetId(), Address: a.GetAddress(), Tenant: a.GetTenant(), Disabled: a.GetDisabled(),
		QuotaBytes: a.GetQuotaBytes(), QuotaMessages: a.GetQuotaMessages(),
		BytesUsed: a.GetBytesUsed(), MessagesUsed: a.GetMessagesUsed(), CreatedAt: jsonTime(a.GetCreatedAt()),
	}
}

func appPasswordOf(ap *storev1.AppPassword) appPasswordJSON {
	return appPasswordJSON{ID: ap.GetId(), Name: ap.GetName(), CreatedAt: jsonTime(ap.GetCreatedAt()), LastUsedAt: jsonTime(ap.GetLastUsedAt())}
}

func aliasOf(al *storev1.Alias) aliasJSON {
	targets := al.GetTargets()
	if targets == nil {
		targets = []string{}
	}
	return aliasJSON{ID: al.GetId(), Address: al.GetAddress(), Targets: targets, SendAs: al.GetSendAs()}
}

func tenantRows(ts ...*storev1.Tenant) [][]string {
	var rows [][]string
	for _, t := range ts {
		rows = append(rows, []string{t.GetName(), limit(t.GetQuotaBytes(), formatBytes), limit(t.GetMaxAccounts(), strconv.FormatInt), humanTime(t.GetCreatedAt())})
	}
	return rows
}

var tenantHeaders = []string{"NAME", "QUOTA", "MAX ACCOUNTS", "CREATED"}

var domainHeaders = []string{"DOMAIN", "TENANT", "CREATED"}

func domainRows(ds ...*storev1.Domain) [][]string {
	var rows [][]string
	for _, d := range ds {
		rows = append(rows, []string{d.GetName(), d.GetTenant(), humanTime(d.GetCreatedAt())})
	}
	return rows
}

var accountHeaders = []string{"ADDRESS", "TENANT", "STATUS", "USED", "QUOTA", "MESSAGES", "MESSAGE QUOTA", "CREATED"}

func accountRows(as ...*storev1.Account) [][]string {
	var rows [][]string
	for _, a := range as {
		st := "enabled"
		if a.GetDisabled() {
			st = "disabled"
		}
		rows = append(rows, []string{
			a.GetAddress(), a.GetTenant(), st,
			formatBytes(a.GetBytesUsed(), 10), limit(a.GetQuotaBytes(), formatBytes),
			strconv.FormatInt(a.GetMessagesUsed(), 10), limit(a.GetQuotaMessages(), strconv.FormatInt),
			humanTime(a.GetCreatedAt()),
		})
	}
	return rows
}

var aliasHeaders = []string{"ALIAS", "TARGETS", "SEND AS"}

func aliasRows(als ...*storev1.Alias) [][]string {
	var rows [][]string
	for _, al := range als {
		addr := al.GetAddress()
		if strings.HasPrefix(addr, "@") {
			addr += " (catch-all)"
		}
		rows = append(rows, []string{addr, strings.Join(al.GetTargets(), ", "), yesNo(al.GetSendAs())})
	}
	return rows
}

var appPasswordHeaders = []string{"ID", "NAME", "CREATED", "LAST USED"}

func appPasswordRows(aps ...*storev1.AppPassword) [][]string {
	var rows [][]string
	for _, ap := range aps {
		rows = append(rows, []string{ap.GetId(), ap.GetName(), humanTime(ap.GetCreatedAt()), humanTime(ap.GetLastUsedAt())})
	}
	return rows
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// limit shows a limit, where 0 means unlimited (admin.proto).
func limit(v int64, format func(int64, int) string) string {
	if v == 0 {
		return "unlimited"
	}
	return format(v, 10)
}

// formatBytes shows a size in binary units; the base argument lets it
// share limit's signature with strconv.FormatInt.
func formatBytes(n int64, _ int) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// parseSize reads a size such as 500M, 2GiB, 1048576 or "unlimited" (0).
// Units are binary: K, M, G, T, optionally followed by "iB" or "B".
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(strings.ToUpper(s))
	if t == "UNLIMITED" {
		return 0, nil
	}
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mult := int64(1)
	if n := len(t); n > 0 {
		if i := strings.IndexByte("KMGT", t[n-1]); i >= 0 {
			mult = int64(1) << (10 * (i + 1))
			t = t[:n-1]
		}
	}
	v, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
	if err != nil || v < 0 || v > (1<<62)/mult {
		return 0, usagef("%q is not a size (like 500M, 2G, 1048576 or unlimited)", s)
	}
	return v * mult, nil
}

// sizeFlag is a flag holding a size; set reports whether it was given.
type sizeFlag struct {
	v   int64
	set bool
}

func (f *sizeFlag) String() string { return strconv.FormatInt(f.v, 10) }
func (f *sizeFlag) Set(s string) error {
	v, err := parseSize(s)
	if err != nil {
		return err
	}
	f.v, f.set = v, true
	return nil
}

// countFlag is a non-negative count flag where "unlimited" means 0.
type countFlag struct {
	v   int64
	set bool
}

func (f *countFlag) String() string { return strconv.FormatInt(f.v, 10) }
func (f *countFlag) Set(s string) error {
	if strings.EqualFold(s, "unlimited") {
		f.v, f.set = 0, true
		return nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return fmt.Errorf("%q is not a count (a number, 0 or unlimited)", s)
	}
	f.v, f.set = v, true
	return nil
}

// passwordFlags are the ways a command takes a password. None puts it in
// argv by default, where other users of the machine can read it; the
// explicit --password does, with a warning.
type passwordFlags struct {
	stdin bool
	file  string
	value string
}

func (p *passwordFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&p.stdin, "password-stdin", false, "read the password from the first line of standard input")
	fs.StringVar(&p.file, "password-file", "", "read the password from the first line of this file")
	fs.StringVar(&p.value, "password", "", "the password itself (visible to other local users in the process list; prefer --password-stdin)")
}

func (p *passwordFlags) read(inv *invocation) (string, error) {
	n := 0
	for _, set := range []bool{p.stdin, p.file != "", p.value != ""} {
		if set {
			n++
		}
	}
	if n != 1 {
		return "", usagef("give the password with exactly one of --password-stdin, --password-file or --password")
	}
	switch {
	case p.value != "":
		inv.warnf("a password given with --password is visible in the process list; prefer --password-stdin")
		return p.value, nil
	case p.stdin:
		return firstLine(inv.app.Stdin, "standard input")
	default:
		f, err := os.Open(p.file)
		if err != nil {
			return "", fmt.Errorf("read the password: %w", err)
		}
		defer f.Close()
		return firstLine(f, p.file)
	}
}

func firstLine(r io.Reader, from string) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("read the password from %s: %w", from, err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("no password on %s", from)
	}
	return line, nil
}

func init() {
	register(
		&command{path: "tenant add", args: "NAME [--quota SIZE] [--max-accounts N]", summary: "create a tenant", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				var quota sizeFlag
				var maxAccounts countFlag
				fs.Var(&quota, "quota", "storage quota of the whole tenant (500M, 2G, unlimited)")
				fs.Var(&maxAccounts, "max-accounts", "most accounts the tenant may have (0: unlimited)")
				return func(ctx context.Context, inv *invocation) error {
					inv.what = inv.args[0]
					cl, err := inv.store()
					if err != nil {
						return err
					}
					resp, err := cl.Admin.CreateTenant(ctx, &storev1.CreateTenantRequest{Name: inv.args[0], QuotaBytes: quota.v, MaxAccounts: maxAccounts.v})
					if err != nil {
						return err
					}
					return inv.out.result(tenantOf(resp.GetTenant()), func(w io.Writer) { table(w, tenantHeaders, tenantRows(resp.GetTenant())) })
				}
			}},
		&command{path: "tenant list", summary: "list tenants", maxArgs: 0,
			setup: func(fs *flag.FlagSet) runFunc {
				return func(ctx context.Context, inv *invocation) error {
					cl, err := inv.store()
					if err != nil {
						return err
					}
					resp, err := cl.Admin.ListTenants(ctx, &storev1.ListTenantsRequest{})
					if err != nil {
						return err
					}
					out := []tenantJSON{}
					for _, t := range resp.GetTenants() {
						out = append(out, tenantOf(t))
					}
					return inv.out.result(out, func(w io.Writer) { table(w, tenantHeaders, tenantRows(resp.GetTenants()...)) })
				}
			}},
		&command{path: "tenant delete", args: "NAME", summary: "delete a tenant that has no domains", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				return deleter("tenant", func(ctx context.Context, inv *invocation) error {
					_, err := inv.client.Admin.DeleteTenant(ctx, &storev1.DeleteTenantRequest{Name: inv.args[0]})
					return err
				})
			}},

		&command{path: "domain add", args: "DOMAIN [--tenant NAME]", summary: "add a domain (to the default tenant unless --tenant)", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				tenant := fs.String("tenant", "", "tenant that owns the domain (default: \"default\", created on first use)")
				return func(ctx context.Context, inv *invocation) error {
					inv.what = inv.args[0]
					cl, err := inv.store()
					if err != nil {
						return err
					}
					resp, err := cl.Admin.CreateDomain(ctx, &storev1.CreateDomainRequest{Tenant: *tenant, Name: inv.args[0]})
					if errors.Is(err, storeclient.ErrNotFound) && *tenant == "" && ensureDefaultTenant(ctx, inv) {
						resp, err = cl.Admin.CreateDomain(ctx, &storev1.CreateDomainRequest{Name: inv.args[0]})
					}
					if err != nil {
						return err
					}
					return inv.out.result(domainOf(resp.GetDomain()), func(w io.Writer) { table(w, domainHeaders, domainRows(resp.GetDomain())) })
				}
			}},
		&command{path: "domain list", args: "[--tenant NAME]", summary: "list domains", maxArgs: 0,
			setup: func(fs *flag.FlagSet) runFunc {
				tenant := fs.String("tenant", "", "only this tenant's domains")
				return func(ctx context.Context, inv *invocation) error {
					inv.what = *tenant
					cl, err := inv.store()
					if err != nil {
						return err
					}
					resp, err := cl.Admin.ListDomains(ctx, &storev1.ListDomainsRequest{Tenant: *tenant})
					if err != nil {
						return err
					}
					out := []domainJSON{}
					for _, d := range resp.GetDomains() {
						out = append(out, domainOf(d))
					}
					return inv.out.result(out, func(w io.Writer) { table(w, domainHeaders, domainRows(resp.GetDomains()...)) })
				}
			}},
		&command{path: "domain delete", args: "DOMAIN", summary: "delete a domain that has no accounts, with its aliases", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				return deleter("domain", func(ctx context.Context, inv *invocation) error {
					_, err := inv.client.Admin.DeleteDomain(ctx, &storev1.DeleteDomainRequest{Name: inv.args[0]})
					return err
				})
			}},

		&command{path: "account add", args: "ADDRESS (--password-stdin | --password-file FILE) [--quota SIZE] [--quota-messages N]", summary: "create an account with its INBOX", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				var pw passwordFlags
				pw.register(fs)
				var quota sizeFlag
				var msgs countFlag
				fs.Var(&quota, "quota", "storage quota (500M, 2G, unlimited)")
				fs.Var(&msgs, "quota-messages", "most messages the account may hold (0: unlimited)")
				return func(ctx context.Context, inv *invocation) error {
					inv.what = inv.args[0]
					password, err := pw.read(inv)
					if err != nil {
						return err
					}
					cl, err := inv.store()
					if err != nil {
						return err
					}
					resp, err := cl.Admin.CreateAccount(ctx, &storev1.CreateAccountRequest{Address: inv.args[0], Password: password, QuotaBytes: quota.v, QuotaMessages: msgs.v})
					if err != nil {
						return err
					}
					return inv.out.result(accountOf(resp.GetAccount()), func(w io.Writer) { table(w, accountHeaders, accountRows(resp.GetAccount())) })
				}
			}},
		&command{path: "account list", args: "[--domain DOMAIN]", summary: "list accounts", maxArgs: 0,
			setup: func(fs *flag.FlagSet) runFunc {
				domain := fs.String("domain", "", "only this domain's accounts")
				return func(ctx context.Context, inv *invocation) error {
					inv.what = *domain
					cl, err := inv.store()
					if err != nil {
						return err
					}
					resp, err := cl.Admin.ListAccounts(ctx, &storev1.ListAccountsRequest{Domain: *domain})
					if err != nil {
						return err
					}
					out := []accountJSON{}
					for _, a := range resp.GetAccounts() {
						out = append(out, accountOf(a))
					}
					return inv.out.result(out, func(w io.Writer) { table(w, accountHeaders, accountRows(resp.GetAccounts()...)) })
				}
			}},
		&command{path: "account show", args: "ADDRESS", summary: "show an account with its quota and usage", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				return func(ctx context.Context, inv *invocation) error {
					inv.what = inv.args[0]
					cl, err := inv.store()
					if err != nil {
						return err
					}
					resp, err := cl.Admin.GetAccount(ctx, &storev1.GetAccountRequest{Address: inv.args[0]})
					if err != nil {
						return err
					}
					return inv.out.result(accountOf(resp.GetAccount()), func(w io.Writer) { showAccount(w, resp.GetAccount()) })
				}
			}},
		&command{path: "account delete", args: "ADDRESS", summary: "delete an account and all of its mail", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				return deleter("account", func(ctx context.Context, inv *invocation) error {
					_, err := inv.client.Admin.DeleteAccount(ctx, &storev1.DeleteAccountRequest{Address: inv.args[0]})
					return err
				})
			}},
		&command{path: "account passwd", args: "ADDRESS (--password-stdin | --password-file FILE)", summary: "set an account's password", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				var pw passwordFlags
				pw.register(fs)
				return func(ctx context.Context, inv *invocation) error {
					password, err := pw.read(inv)
					if err != nil {
						return err
					}
					return updateAccount(ctx, inv, &storev1.UpdateAccountRequest{Password: &password})
				}
			}},
		&command{path: "account disable", args: "ADDRESS", summary: "refuse the account's logins and mail to it", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				return func(ctx context.Context, inv *invocation) error {
					disabled := true
					return updateAccount(ctx, inv, &storev1.UpdateAccountRequest{Disabled: &disabled})
				}
			}},
		&command{path: "account enable", args: "ADDRESS", summary: "enable a disabled account", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				return func(ctx context.Context, inv *invocation) error {
					disabled := false
					return updateAccount(ctx, inv, &storev1.UpdateAccountRequest{Disabled: &disabled})
				}
			}},
		&command{path: "account quota", args: "ADDRESS [--bytes SIZE] [--messages N]", summary: "show or set an account's quota", minArgs: 1, maxArgs: 1,
			help: "Without --bytes or --messages it shows the quota and usage. \"unlimited\" or 0 removes a limit.",
			setup: func(fs *flag.FlagSet) runFunc {
				var quota sizeFlag
				var msgs countFlag
				fs.Var(&quota, "bytes", "storage quota (500M, 2G, unlimited)")
				fs.Var(&msgs, "messages", "most messages (0: unlimited)")
				return func(ctx context.Context, inv *invocation) error {
					req := &storev1.UpdateAccountRequest{}
					if quota.set {
						req.QuotaBytes = &quota.v
					}
					if msgs.set {
						req.QuotaMessages = &msgs.v
					}
					if req.QuotaBytes == nil && req.QuotaMessages == nil {
						inv.what = inv.args[0]
						cl, err := inv.store()
						if err != nil {
							return err
						}
						resp, err := cl.Admin.GetAccount(ctx, &storev1.GetAccountRequest{Address: inv.args[0]})
						if err != nil {
							return err
						}
						return inv.out.result(accountOf(resp.GetAccount()), func(w io.Writer) { showAccount(w, resp.GetAccount()) })
					}
					return updateAccount(ctx, inv, req)
				}
			}},

		&command{path: "app-password add", args: "ADDRESS NAME", summary: "generate an app password (shown once)", minArgs: 2, maxArgs: 2,
			setup: func(fs *flag.FlagSet) runFunc {
				return func(ctx context.Context, inv *invocation) error {
					inv.what = inv.args[0]
					cl, err := inv.store()
					if err != nil {
						return err
					}
					resp, err := cl.Admin.CreateAppPassword(ctx, &storev1.CreateAppPasswordRequest{Address: inv.args[0], Name: inv.args[1]})
					if err != nil {
						return err
					}
					out := appPasswordOf(resp.GetAppPassword())
					out.Password = resp.GetPassword()
					return inv.out.result(out, func(w io.Writer) {
						fmt.Fprintf(w, "app password %q (id %s) for %s:\n\n    %s\n\nIt is shown only this once.\n", out.Name, out.ID, inv.args[0], out.Password)
					})
				}
			}},
		&command{path: "app-password list", args: "ADDRESS", summary: "list an account's app passwords", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				return func(ctx context.Context, inv *invocation) error {
					inv.what = inv.args[0]
					cl, err := inv.store()
					if err != nil {
						return err
					}
					resp, err := cl.Admin.ListAppPasswords(ctx, &storev1.ListAppPasswordsRequest{Address: inv.args[0]})
					if err != nil {
						return err
					}
					out := []appPasswordJSON{}
					for _, ap := range resp.GetAppPasswords() {
						out = append(out, appPasswordOf(ap))
					}
					return inv.out.result(out, func(w io.Writer) { table(w, appPasswordHeaders, appPasswordRows(resp.GetAppPasswords()...)) })
				}
			}},
		&command{path: "app-password delete", args: "ADDRESS ID", summary: "revoke an app password", minArgs: 2, maxArgs: 2,
			setup: func(fs *flag.FlagSet) runFunc {
				return func(ctx context.Context, inv *invocation) error {
					if id, err := strconv.ParseInt(inv.args[1], 10, 64); err != nil || id <= 0 {
						return usagef("app password id %q is not a number; 'petrelctl app-password list %s' shows them", inv.args[1], inv.args[0])
					}
					return deleter("app password", func(ctx context.Context, inv *invocation) error {
						_, err := inv.client.Admin.DeleteAppPassword(ctx, &storev1.DeleteAppPasswordRequest{Address: inv.args[0], Id: inv.args[1]})
						return err
					})(ctx, inv)
				}
			}},

		&command{path: "alias add", args: "ADDRESS TARGET... [--send-as]", summary: "forward an address (or @domain: the catch-all) to one or more addresses", minArgs: 2, maxArgs: -1,
			setup: func(fs *flag.FlagSet) runFunc {
				sendAs := fs.Bool("send-as", false, "let the target accounts send as the alias (not for catch-alls)")
				return func(ctx context.Context, inv *invocation) error {
					inv.what = inv.args[0]
					cl, err := inv.store()
					if err != nil {
						return err
					}
					resp, err := cl.Admin.CreateAlias(ctx, &storev1.CreateAliasRequest{Address: inv.args[0], Targets: inv.args[1:], SendAs: *sendAs})
					if err != nil {
						return err
					}
					return inv.out.result(aliasOf(resp.GetAlias()), func(w io.Writer) { table(w, aliasHeaders, aliasRows(resp.GetAlias())) })
				}
			}},
		&command{path: "alias list", args: "[--domain DOMAIN]", summary: "list aliases and catch-alls", maxArgs: 0,
			setup: func(fs *flag.FlagSet) runFunc {
				domain := fs.String("domain", "", "only this domain's aliases")
				return func(ctx context.Context, inv *invocation) error {
					inv.what = *domain
					cl, err := inv.store()
					if err != nil {
						return err
					}
					resp, err := cl.Admin.ListAliases(ctx, &storev1.ListAliasesRequest{Domain: *domain})
					if err != nil {
						return err
					}
					out := []aliasJSON{}
					for _, al := range resp.GetAliases() {
						out = append(out, aliasOf(al))
					}
					return inv.out.result(out, func(w io.Writer) { table(w, aliasHeaders, aliasRows(resp.GetAliases()...)) })
				}
			}},
		&command{path: "alias delete", args: "ADDRESS", summary: "delete an alias (@domain: the catch-all)", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				return deleter("alias", func(ctx context.Context, inv *invocation) error {
					_, err := inv.client.Admin.DeleteAlias(ctx, &storev1.DeleteAliasRequest{Address: inv.args[0]})
					return err
				})
			}},
	)
}

// defaultTenant is the tenant the store puts an operator's domains in
// when the request names none (admin.proto).
const defaultTenant = "default"

// ensureDefaultTenant creates the default tenant when it is missing, as
// on a fresh installation, and reports whether it did: the store resolves
// an operator's unnamed tenant to it but does not create it. For a
// tenant admin (who may not create tenants) it does nothing.
func ensureDefaultTenant(ctx context.Context, inv *invocation) bool {
	ts, err := inv.client.Admin.ListTenants(ctx, &storev1.ListTenantsRequest{})
	if err != nil {
		return false
	}
	for _, t := range ts.GetTenants() {
		if t.GetName() == defaultTenant {
			return false
		}
	}
	_, err = inv.client.Admin.CreateTenant(ctx, &storev1.CreateTenantRequest{Name: defaultTenant})
	return err == nil || errors.Is(err, storeclient.ErrExists)
}

// deleter runs a delete call on the object named by the first argument
// and reports it.
func deleter(kind string, call func(ctx context.Context, inv *invocation) error) runFunc {
	return func(ctx context.Context, inv *invocation) error {
		inv.what = inv.args[0]
		if _, err := inv.store(); err != nil {
			return err
		}
		if err := call(ctx, inv); err != nil {
			return err
		}
		name := inv.args[len(inv.args)-1]
		return inv.out.result(deletedJSON{Deleted: name, Kind: kind}, func(w io.Writer) { fmt.Fprintf(w, "deleted %s %s\n", kind, name) })
	}
}

func updateAccount(ctx context.Context, inv *invocation, req *storev1.UpdateAccountRequest) error {
	inv.what = inv.args[0]
	req.Address = inv.args[0]
	cl, err := inv.store()
	if err != nil {
		return err
	}
	resp, err := cl.Admin.UpdateAccount(ctx, req)
	if err != nil {
		return err
	}
	return inv.out.result(accountOf(resp.GetAccount()), func(w io.Writer) { showAccount(w, resp.GetAccount()) })
}

// showAccount prints one account as "field: value" lines, easier to read
// than a one-row table.
func showAccount(w io.Writer, a *storev1.Account) {
	st := "enabled"
	if a.GetDisabled() {
		st = "disabled"
	}
	rows := [][]string{
		{"address:", a.GetAddress()},
		{"tenant:", a.GetTenant()},
		{"status:", st},
		{"storage:", formatBytes(a.GetBytesUsed(), 10) + " of " + limit(a.GetQuotaBytes(), formatBytes)},
		{"messages:", strconv.FormatInt(a.GetMessagesUsed(), 10) + " of " + limit(a.GetQuotaMessages(), strconv.FormatInt)},
		{"created:", humanTime(a.GetCreatedAt())},
	}
	for _, r := range rows {
		fmt.Fprintf(w, "%-10s%s\n", r[0], r[1])
	}
}
