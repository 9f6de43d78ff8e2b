package server

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"

	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/petrel-mail/petrel/services/store/internal/auth"
	"github.com/petrel-mail/petrel/services/store/internal/repo"
)

// DefaultTenant is the tenant an operator's CreateDomain uses when the
// request names none (admin.proto).
const DefaultTenant = "default"

// Password length bounds for account passwords set through the admin API.
// The upper bound keeps a hostile request from making argon2id hash
// megabytes.
const (
	MinPasswordLen = 8
	MaxPasswordLen = 1024
)

// AdminOptions configure NewAdminServer. Repo and Hasher are required.
type AdminOptions struct {
	Repo   repo.Repository
	Hasher *auth.Hasher
	Logger *slog.Logger
	// Secrets seals DKIM private keys (dkim.go); nil: no DKIM keys.
	Secrets *Sealer
}

// AdminServer implements storev1.AdminServiceServer. The interceptor
// admits only operators and tenant admins (and only operators to
// CreateTenant/DeleteTenant); every handler then resolves names to the
// owning tenant and checks it with auth.RequireTenant, so a tenant admin
// gets NOT_FOUND for another tenant's objects exactly as for missing
// ones.
type AdminServer struct {
	storev1.UnimplementedAdminServiceServer
	opts AdminOptions
}

// NewAdminServer returns the AdminService handlers.
func NewAdminServer(opts AdminOptions) (*AdminServer, error) {
	var errs []error
	if opts.Repo == nil {
		errs = append(errs, errors.New("server: admin needs Repo"))
	}
	if opts.Hasher == nil {
		errs = append(errs, errors.New("server: admin needs a Hasher"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &AdminServer{opts: opts}, nil
}

func (s *AdminServer) status(ctx context.Context, op string, err error) error {
	return toStatus(ctx, s.opts.Logger, op, err)
}

func badArg(msg string) error {
	return withReason(codes.InvalidArgument, msg, storev1.Reason_REASON_UNSPECIFIED)
}

func failedPrecondition(msg string) error {
	return withReason(codes.FailedPrecondition, msg, storev1.Reason_REASON_CANNOT)
}

// adminPrincipal returns the caller, which the interceptor has checked is
// an operator or a tenant admin.
func adminPrincipal(ctx context.Context) (auth.Principal, error) {
	p, ok := auth.FromContext(ctx)
	if !ok || !p.IsAdmin() {
		return p, withReason(codes.PermissionDenied, "permission denied", storev1.Reason_REASON_UNSPECIFIED)
	}
	return p, nil
}

// visibleTenant is the tenant filter of listings: 0 (all) for an
// operator, the own tenant for a tenant admin.
func visibleTenant(ctx context.Context) (int64, error) {
	p, err := adminPrincipal(ctx)
	if err != nil {
		return 0, err
	}
	if p.Kind == auth.KindOperator {
		return 0, nil
	}
	id, err := strconv.ParseInt(p.TenantID, 10, 64)
	if err != nil || id <= 0 {
		return 0, withReason(codes.PermissionDenied, "permission denied", storev1.Reason_REASON_UNSPECIFIED)
	}
	return id, nil
}

func requireTenant(ctx context.Context, tenantID int64) error {
	return auth.RequireTenant(ctx, idString(tenantID))
}

// tenantNamed resolves a tenant name the caller may administer; "" is the
// caller's own tenant, or DefaultTenant for an operator.
func (s *AdminServer) tenantNamed(ctx context.Context, name string) (repo.TenantInfo, error) {
	own, err := visibleTenant(ctx)
	if err != nil {
		return repo.TenantInfo{}, err
	}
	var t repo.TenantInfo
	switch {
	case name == "" && own != 0:
		t, err = s.opts.Repo.TenantByID(ctx, own)
	case name == "":
		t, err = s.opts.Repo.TenantByName(ctx, DefaultTenant)
	default:
		t, err = s.opts.Repo.TenantByName(ctx, name)
	}
	if err != nil {
		return t, s.status(ctx, "find tenant", err)
	}
	return t, requireTenant(ctx, t.ID)
}

// domainNamed resolves a domain the caller may administer.
func (s *AdminServer) domainNamed(ctx context.Context, name string) (repo.DomainInfo, error) {
	n, err := repo.NormalizeDomain(name)
	if err != nil {
		return repo.DomainInfo{}, invalidName(err)
	}
	d, err := s.opts.Repo.DomainByName(ctx, n)
	if err != nil {
		return d, s.status(ctx, "find domain", err)
	}
	return d, requireTenant(ctx, d.TenantID)
}

// accountNamed resolves an account the caller may administer.
func (s *AdminServer) accountNamed(ctx context.Context, address string) (repo.AccountInfo, error) {
	if _, _, err := repo.ParseAddress(address, false); err != nil {
		return repo.AccountInfo{}, invalidName(err)
	}
	a, err := s.opts.Repo.AccountByAddress(ctx, address)
	if err != nil {
		return a, s.status(ctx, "find account", err)
	}
	return a, requireTenant(ctx, a.TenantID)
}

func scopeOf(a repo.AccountInfo) repo.Scope { return repo.Scope{TenantID: a.TenantID, AccountID: a.ID} }

// validTenantName: lower-case letters, digits, '.', '_' and '-', starting
// with a letter or digit, at most 63 characters, so that names are safe in
// logs, metrics labels and file names.
func validTenantName(name string) bool {
	if name == "" || len(name) > 63 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || (c != '.' && c != '_' && c != '-')) {
			return false
		}
	}
	return true
}

func checkLimit(name string, v int64) error {
	if v < 0 {
		return badArg(name + " must not be negative (0 means unlimited)")
	}
	return nil
}

// firstError returns the first non-nil error: each is already a status,
// and a joined error would not be.
func firstError(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func checkPassword(pw string) error {
	switch {
	case len(pw) < MinPasswordLen:
		return badArg("password must be at least " + strconv.Itoa(MinPasswordLen) + " characters")
	case len(pw) > MaxPasswordLen:
		return badArg("password must be at most " + strconv.Itoa(MaxPasswordLen) + " bytes")
	case !utf8.ValidString(pw):
		return badArg("password must be valid UTF-8")
	}
	return nil
}

func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func tenantProto(t repo.TenantInfo) *storev1.Tenant {
	return &storev1.Tenant{Id: idString(t.ID), Name: t.Name, QuotaBytes: t.QuotaBytes, MaxAccounts: t.MaxAccounts, CreatedAt: timestamp(t.CreatedAt)}
}

func domainProto(d repo.DomainInfo) *storev1.Domain {
	return &storev1.Domain{Id: idString(d.ID), Tenant: d.TenantName, Name: d.Name, CreatedAt: timestamp(d.CreatedAt)}
}

func accountProto(a repo.AccountInfo) *storev1.Account {
	return &storev1.Account{
		Id: idString(a.ID), Tenant: a.TenantName, Address: a.Address, Disabled: a.Disabled,
		QuotaBytes: a.Quota.LimitBytes, QuotaMessages: a.Quota.LimitMessages,
		BytesUsed: a.Quota.UsedBytes, MessagesUsed: a.Quota.UsedMessages,
		CreatedAt: timestamp(a.CreatedAt),
	}
}

func appPasswordProto(ap repo.AppPassword) *storev1.AppPassword {
	return &storev1.AppPassword{Id: idString(ap.ID), Name: ap.Name, CreatedAt: timestamp(ap.CreatedAt), LastUsedAt: timestamp(ap.LastUsedAt)}
}

func aliasProto(al repo.Alias) *storev1.Alias {
	return &storev1.Alias{Id: idString(al.ID), Address: al.Address, Targets: al.Targets, SendAs: al.SendAs}
}

// CreateTenant creates a tenant (operators only, by the interceptor rule).
func (s *AdminServer) CreateTenant(ctx context.Context, req *storev1.CreateTenantRequest) (*storev1.CreateTenantResponse, error) {
	if !validTenantName(req.GetName()) {
		return nil, badArg("tenant name must be 1-63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	if err := firstError(checkLimit("quota_bytes", req.GetQuotaBytes()), checkLimit("max_accounts", req.GetMaxAccounts())); err != nil {
		return nil, err
	}
	t, err := s.opts.Repo.CreateTenantWithLimits(ctx, req.GetName(), repo.TenantLimits{QuotaBytes: req.GetQuotaBytes(), MaxAccounts: req.GetMaxAccounts()})
	if err != nil {
		return nil, s.status(ctx, "create tenant", err)
	}
	return &storev1.CreateTenantResponse{Tenant: tenantProto(t)}, nil
}

// ListTenants lists every tenant for an operator, its own for a tenant
// admin.
func (s *AdminServer) ListTenants(ctx context.Context, _ *storev1.ListTenantsRequest) (*storev1.ListTenantsResponse, error) {
	own, err := visibleTenant(ctx)
	if err != nil {
		return nil, err
	}
	var ts []repo.TenantInfo
	if own == 0 {
		ts, err = s.opts.Repo.ListTenants(ctx)
	} else {
		var t repo.TenantInfo
		t, err = s.opts.Repo.TenantByID(ctx, own)
		ts = []repo.TenantInfo{t}
	}
	if err != nil {
		return nil, s.status(ctx, "list tenants", err)
	}
	resp := &storev1.ListTenantsResponse{}
	for _, t := range ts {
		resp.Tenants = append(resp.Tenants, tenantProto(t))
	}
	return resp, nil
}

// DeleteTenant deletes an empty tenant: one with domains is refused
// (FAILED_PRECONDITION), so that a typo cannot delete a customer's mail.
func (s *AdminServer) DeleteTenant(ctx context.Context, req *storev1.DeleteTenantRequest) (*storev1.DeleteTenantResponse, error) {
	if req.GetName() == "" {
		return nil, badArg("tenant name is required")
	}
	t, err := s.tenantNamed(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	err = s.opts.Repo.DeleteTenant(ctx, t.ID)
	if errors.Is(err, repo.ErrNotAllowed) {
		return nil, failedPrecondition("tenant still has domains, or stored messages awaiting collection; delete its domains first")
	}
	if err != nil {
		return nil, s.status(ctx, "delete tenant", err)
	}
	return &storev1.DeleteTenantResponse{}, nil
}

// CreateDomain adds a domain to a tenant.
func (s *AdminServer) CreateDomain(ctx context.Context, req *storev1.CreateDomainRequest) (*storev1.CreateDomainResponse, error) {
	name, err := repo.NormalizeDomain(req.GetName())
	if err != nil {
		return nil, invalidName(err)
	}
	t, err := s.tenantNamed(ctx, req.GetTenant())
	if err != nil {
		return nil, err
	}
	_, err = s.opts.Repo.CreateDomain(ctx, t.ID, name)
	if errors.Is(err, repo.ErrNotFound) {
		// The tenant was just found: what is missing is room.
		return nil, failedPrecondition("the tenant's domain limit is reached")
	}
	if err != nil {
		return nil, s.status(ctx, "create domain", err)
	}
	d, err := s.opts.Repo.DomainByName(ctx, name)
	if err != nil {
		return nil, s.status(ctx, "read created domain", err)
	}
	return &storev1.CreateDomainResponse{Domain: domainProto(d)}, nil
}

// ListDomains lists a tenant's domains, or all the caller may see.
func (s *AdminServer) ListDomains(ctx context.Context, req *storev1.ListDomainsRequest) (*storev1.ListDomainsResponse, error) {
	tenant, err := visibleTenant(ctx)
	if err != nil {
		return nil, err
	}
	if req.GetTenant() != "" {
		t, err := s.tenantNamed(ctx, req.GetTenant())
		if err != nil {
			return nil, err
		}
		tenant = t.ID
	}
	ds, err := s.opts.Repo.ListDomains(ctx, tenant)
	if err != nil {
		return nil, s.status(ctx, "list domains", err)
	}
	resp := &storev1.ListDomainsResponse{}
	for _, d := range ds {
		resp.Domains = append(resp.Domains, domainProto(d))
	}
	return resp, nil
}

// DeleteDomain deletes a domain without accounts, with its aliases.
func (s *AdminServer) DeleteDomain(ctx context.Context, req *storev1.DeleteDomainRequest) (*storev1.DeleteDomainResponse, error) {
	d, err := s.domainNamed(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	err = s.opts.Repo.DeleteDomain(ctx, d.TenantID, d.ID)
	if errors.Is(err, repo.ErrNotAllowed) {
		return nil, failedPrecondition("domain still has accounts; delete them first")
	}
	if err != nil {
		return nil, s.status(ctx, "delete domain", err)
	}
	return &storev1.DeleteDomainResponse{}, nil
}

// CreateAccount creates an account with its INBOX; the password is stored
// as an argon2id hash.
func (s *AdminServer) CreateAccount(ctx context.Context, req *storev1.CreateAccountRequest) (*storev1.CreateAccountResponse, error) {
	local, domain, err := repo.ParseAddress(req.GetAddress(), false)
	if err != nil {
		return nil, invalidName(err)
	}
	if err := firstError(checkPassword(req.GetPassword()), checkLimit("quota_bytes", req.GetQuotaBytes()),
		checkLimit("quota_messages", req.GetQuotaMessages())); err != nil {
		return nil, err
	}
	d, err := s.domainNamed(ctx, domain)
	if err != nil {
		return nil, err
	}
	hash, err := s.opts.Hasher.Hash(req.GetPassword())
	if err != nil {
		return nil, s.status(ctx, "hash password", err)
	}
	a, err := s.opts.Repo.CreateAccount(ctx, d.TenantID, d.ID, local, hash)
	if errors.Is(err, repo.ErrNotFound) {
		return nil, failedPrecondition("the tenant's account limit is reached")
	}
	if err != nil {
		return nil, s.status(ctx, "create account", err)
	}
	scope := repo.Scope{TenantID: a.TenantID, AccountID: a.ID}
	if req.GetQuotaBytes() != 0 || req.GetQuotaMessages() != 0 {
		if err := s.opts.Repo.SetQuota(ctx, scope, req.GetQuotaBytes(), req.GetQuotaMessages()); err != nil {
			return nil, s.status(ctx, "set account quota", err)
		}
	}
	info, err := s.opts.Repo.AccountByAddress(ctx, a.Address)
	if err != nil {
		return nil, s.status(ctx, "read created account", err)
	}
	return &storev1.CreateAccountResponse{Account: accountProto(info)}, nil
}

// GetAccount shows an account with its quota and usage.
func (s *AdminServer) GetAccount(ctx context.Context, req *storev1.GetAccountRequest) (*storev1.GetAccountResponse, error) {
	a, err := s.accountNamed(ctx, req.GetAddress())
	if err != nil {
		return nil, err
	}
	return &storev1.GetAccountResponse{Account: accountProto(a)}, nil
}

// ListAccounts lists a domain's accounts, or all the caller may see.
func (s *AdminServer) ListAccounts(ctx context.Context, req *storev1.ListAccountsRequest) (*storev1.ListAccountsResponse, error) {
	tenant, err := visibleTenant(ctx)
	if err != nil {
		return nil, err
	}
	var domain int64
	if req.GetDomain() != "" {
		d, err := s.domainNamed(ctx, req.GetDomain())
		if err != nil {
			return nil, err
		}
		tenant, domain = d.TenantID, d.ID
	}
	as, err := s.opts.Repo.ListAccounts(ctx, tenant, domain)
	if err != nil {
		return nil, s.status(ctx, "list accounts", err)
	}
	resp := &storev1.ListAccountsResponse{}
	for _, a := range as {
		resp.Accounts = append(resp.Accounts, accountProto(a))
	}
	return resp, nil
}

// UpdateAccount changes the fields present in the request.
func (s *AdminServer) UpdateAccount(ctx context.Context, req *storev1.UpdateAccountRequest) (*storev1.UpdateAccountResponse, error) {
	var u repo.AccountUpdate
	if req.Password != nil {
		if err := checkPassword(req.GetPassword()); err != nil {
			return nil, err
		}
	}
	if req.QuotaBytes != nil {
		if err := checkLimit("quota_bytes", req.GetQuotaBytes()); err != nil {
			return nil, err
		}
		u.QuotaBytes = req.QuotaBytes
	}
	if req.QuotaMessages != nil {
		if err := checkLimit("quota_messages", req.GetQuotaMessages()); err != nil {
			return nil, err
		}
		u.QuotaMessages = req.QuotaMessages
	}
	u.Disabled = req.Disabled
	a, err := s.accountNamed(ctx, req.GetAddress())
	if err != nil {
		return nil, err
	}
	if req.Password != nil {
		hash, err := s.opts.Hasher.Hash(req.GetPassword())
		if err != nil {
			return nil, s.status(ctx, "hash password", err)
		}
		u.PasswordHash = &hash
	}
	a, err = s.opts.Repo.UpdateAccount(ctx, scopeOf(a), u)
	if err != nil {
		return nil, s.status(ctx, "update account", err)
	}
	return &storev1.UpdateAccountResponse{Account: accountProto(a)}, nil
}

// DeleteAccount deletes an account and all of its mail.
func (s *AdminServer) DeleteAccount(ctx context.Context, req *storev1.DeleteAccountRequest) (*storev1.DeleteAccountResponse, error) {
	a, err := s.accountNamed(ctx, req.GetAddress())
	if err != nil {
		return nil, err
	}
	if err := s.opts.Repo.DeleteAccount(ctx, scopeOf(a)); err != nil {
		return nil, s.status(ctx, "delete account", err)
	}
	return &storev1.DeleteAccountResponse{}, nil
}

// maxAppPasswordName bounds the label of an app password.
const maxAppPasswordName = 100

// CreateAppPassword generates an app password, stores its hash and
// returns the password this one time.
func (s *AdminServer) CreateAppPassword(ctx context.Context, req *storev1.CreateAppPasswordRequest) (*storev1.CreateAppPasswordResponse, error) {
	name := req.GetName()
	if name == "" || len(name) > maxAppPasswordName || !utf8.ValidString(name) {
		return nil, badArg("app password name must be 1-100 bytes of UTF-8")
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return nil, badArg("app password name must not contain control characters")
		}
	}
	a, err := s.accountNamed(ctx, req.GetAddress())
	if err != nil {
		return nil, err
	}
	password, hash, err := s.opts.Hasher.NewAppPassword()
	if err != nil {
		return nil, s.status(ctx, "generate app password", err)
	}
	ap, err := s.opts.Repo.CreateAppPassword(ctx, scopeOf(a), name, hash)
	if err != nil {
		return nil, s.status(ctx, "create app password", err)
	}
	return &storev1.CreateAppPasswordResponse{AppPassword: appPasswordProto(ap), Password: password}, nil
}

// ListAppPasswords lists an account's app passwords (never the passwords).
func (s *AdminServer) ListAppPasswords(ctx context.Context, req *storev1.ListAppPasswordsRequest) (*storev1.ListAppPasswordsResponse, error) {
	a, err := s.accountNamed(ctx, req.GetAddress())
	if err != nil {
		return nil, err
	}
	aps, err := s.opts.Repo.ListAppPasswords(ctx, scopeOf(a))
	if err != nil {
		return nil, s.status(ctx, "list app passwords", err)
	}
	resp := &storev1.ListAppPasswordsResponse{}
	for _, ap := range aps {
		resp.AppPasswords = append(resp.AppPasswords, appPasswordProto(ap))
	}
	return resp, nil
}

// DeleteAppPassword revokes an app password.
func (s *AdminServer) DeleteAppPassword(ctx context.Context, req *storev1.DeleteAppPasswordRequest) (*storev1.DeleteAppPasswordResponse, error) {
	id, err := strconv.ParseInt(req.GetId(), 10, 64)
	if err != nil || id <= 0 {
		return nil, badArg("app password id must be a positive number")
	}
	a, err := s.accountNamed(ctx, req.GetAddress())
	if err != nil {
		return nil, err
	}
	if err := s.opts.Repo.DeleteAppPassword(ctx, scopeOf(a), id); err != nil {
		return nil, s.status(ctx, "delete app password", err)
	}
	return &storev1.DeleteAppPasswordResponse{}, nil
}

// CreateAlias creates an alias, or with "@domain" the domain's catch-all.
func (s *AdminServer) CreateAlias(ctx context.Context, req *storev1.CreateAliasRequest) (*storev1.CreateAliasResponse, error) {
	local, domain, err := repo.ParseAddress(req.GetAddress(), true)
	if err != nil {
		return nil, invalidName(err)
	}
	if len(req.GetTargets()) == 0 {
		return nil, badArg("an alias needs at least one target address")
	}
	for _, t := range req.GetTargets() {
		if _, _, err := repo.ParseAddress(t, false); err != nil {
			return nil, invalidName(err)
		}
	}
	if local == "" && req.GetSendAs() {
		return nil, badArg("a catch-all cannot grant send-as: it would let its targets send as every address of the domain")
	}
	d, err := s.domainNamed(ctx, domain)
	if err != nil {
		return nil, err
	}
	al, err := s.opts.Repo.CreateAliasWithOptions(ctx, d.TenantID, d.ID, local, req.GetTargets(), req.GetSendAs())
	if err != nil {
		return nil, s.status(ctx, "create alias", err)
	}
	return &storev1.CreateAliasResponse{Alias: aliasProto(al)}, nil
}

// ListAliases lists a domain's aliases, or all the caller may see.
func (s *AdminServer) ListAliases(ctx context.Context, req *storev1.ListAliasesRequest) (*storev1.ListAliasesResponse, error) {
	tenant, err := visibleTenant(ctx)
	if err != nil {
		return nil, err
	}
	var domain int64
	if req.GetDomain() != "" {
		d, err := s.domainNamed(ctx, req.GetDomain())
		if err != nil {
			return nil, err
		}
		tenant, domain = d.TenantID, d.ID
	}
	als, err := s.opts.Repo.ListAliases(ctx, tenant, domain)
	if err != nil {
		return nil, s.status(ctx, "list aliases", err)
	}
	resp := &storev1.ListAliasesResponse{}
	for _, al := range als {
		resp.Aliases = append(resp.Aliases, aliasProto(al))
	}
	return resp, nil
}

// DeleteAlias deletes an alias ("@domain": the catch-all).
func (s *AdminServer) DeleteAlias(ctx context.Context, req *storev1.DeleteAliasRequest) (*storev1.DeleteAliasResponse, error) {
	if _, _, err := repo.ParseAddress(req.GetAddress(), true); err != nil {
		return nil, invalidName(err)
	}
	al, err := s.opts.Repo.AliasByAddress(ctx, req.GetAddress())
	if err != nil {
		return nil, s.status(ctx, "find alias", err)
	}
	if err := requireTenant(ctx, al.TenantID); err != nil {
		return nil, err
	}
	if err := s.opts.Repo.DeleteAlias(ctx, al.TenantID, al.ID); err != nil {
		return nil, s.status(ctx, "delete alias", err)
	}
	return &storev1.DeleteAliasResponse{}, nil
}
