package repo

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Admin is the directory administration contract: what the admin API, the
// login path (Credentials) and recipient lookup (ResolveRecipient,
// CanSendAs) need beyond Directory.
//
// Deletes refuse rather than cascade across the directory: a tenant is
// deleted only when it has no domains left (and no objects awaiting
// collection), a domain only when it has no accounts (its aliases go with
// it). An operator empties a tenant explicitly, so a typo cannot destroy
// every mailbox of a customer. Deleting an account does remove all of its
// mail, in one transaction.
type Admin interface {
	// CreateTenantWithLimits creates a tenant with tenant-wide limits.
	CreateTenantWithLimits(ctx context.Context, name string, limits TenantLimits) (TenantInfo, error)
	ListTenants(ctx context.Context) ([]TenantInfo, error)
	TenantByName(ctx context.Context, name string) (TenantInfo, error)
	TenantByID(ctx context.Context, id int64) (TenantInfo, error)
	// DeleteTenant is ErrNotAllowed while the tenant has domains or
	// objects not yet collected.
	DeleteTenant(ctx context.Context, id int64) error

	// ListDomains lists a tenant's domains by name; tenantID 0 lists all.
	ListDomains(ctx context.Context, tenantID int64) ([]DomainInfo, error)
	DomainByName(ctx context.Context, name string) (DomainInfo, error)
	// DeleteDomain removes a domain and its aliases; ErrNotAllowed while it
	// has accounts.
	DeleteDomain(ctx context.Context, tenantID, domainID int64) error

	AccountByAddress(ctx context.Context, address string) (AccountInfo, error)
	// ListAccounts lists accounts by address: of a domain (domainID > 0),
	// else of a tenant (tenantID > 0), else all.
	ListAccounts(ctx context.Context, tenantID, domainID int64) ([]AccountInfo, error)
	// UpdateAccount changes the fields of u that are set.
	UpdateAccount(ctx context.Context, s Scope, u AccountUpdate) (AccountInfo, error)
	// DeleteAccount removes the account, its mailboxes, messages, app
	// passwords and subscriptions in one transaction, releasing its
	// references to objects (which the collector then deletes).
	DeleteAccount(ctx context.Context, s Scope) error

	CreateAppPassword(ctx context.Context, s Scope, name, hash string) (AppPassword, error)
	ListAppPasswords(ctx context.Context, s Scope) ([]AppPassword, error)
	DeleteAppPassword(ctx context.Context, s Scope, id int64) error
	// AppPasswordUsed records a successful login with an app password.
	AppPasswordUsed(ctx context.Context, s Scope, id int64, at time.Time) error

	// CreateAliasWithOptions is CreateAlias that also sets send-as and
	// returns the alias. localPart "" is the domain's catch-all, for which
	// sendAs is refused (ErrInvalidName).
	CreateAliasWithOptions(ctx context.Context, tenantID, domainID int64, localPart string, targets []string, sendAs bool) (Alias, error)
	// ListAliases lists aliases by address: of a domain (domainID > 0),
	// else of a tenant (tenantID > 0), else all.
	ListAliases(ctx context.Context, tenantID, domainID int64) ([]Alias, error)
	// AliasByAddress finds an alias by "local@domain" or "@domain" (the
	// catch-all).
	AliasByAddress(ctx context.Context, address string) (Alias, error)
	DeleteAlias(ctx context.Context, tenantID, aliasID int64) error

	// Credentials returns what a login checks, for an account address
	// (case-insensitive); ErrNotFound if there is no such account.
	Credentials(ctx context.Context, address string) (Credentials, error)
	// AccountTenant returns the tenant of an account id, for callbacks
	// that know only the account (auth's rehash and app password use).
	AccountTenant(ctx context.Context, accountID int64) (int64, error)
	// ResolveRecipient says what an RCPT TO address is; size is the
	// announced message size (0 if unknown) for the quota check.
	ResolveRecipient(ctx context.Context, address string, size int64) (Recipient, error)
	// CanSendAs reports whether the account may send as address: its own
	// address, or an alias with send-as whose targets include it.
	CanSendAs(ctx context.Context, s Scope, address string) (bool, error)
}

// TenantLimits are a tenant's limits; 0 means unlimited.
type TenantLimits struct {
	// QuotaBytes bounds the storage of all its accounts together.
	QuotaBytes  int64
	MaxAccounts int64
}

// TenantInfo is a tenant as the admin API shows it.
type TenantInfo struct {
	Tenant
	QuotaBytes int64
	CreatedAt  time.Time
}

// DomainInfo is a domain as the admin API shows it.
type DomainInfo struct {
	Domain
	TenantName string
	CreatedAt  time.Time
}

// AccountInfo is an account with its tenant's name, quota and usage.
type AccountInfo struct {
	Account
	TenantName string
	Quota      Quota
	CreatedAt  time.Time
}

// AccountUpdate lists the changes of UpdateAccount; nil fields stay.
type AccountUpdate struct {
	PasswordHash *string
	Disabled     *bool
	// Quota limits; 0 means unlimited.
	QuotaBytes    *int64
	QuotaMessages *int64
}

// AppPassword is one app password of an account. Hash is the argon2id
// PHC string of its normalized form; the password itself is never stored.
type AppPassword struct {
	ID         int64
	AccountID  int64
	Name       string
	Hash       string
	CreatedAt  time.Time
	LastUsedAt time.Time // zero if never used
}

// Alias maps an address (LocalPart "" for the catch-all) to targets.
type Alias struct {
	ID        int64
	TenantID  int64
	DomainID  int64
	LocalPart string
	// Address is "local@domain", or "@domain" for the catch-all.
	Address string
	Targets []string
	SendAs  bool
}

// Credentials are what a login needs to know about an account.
type Credentials struct {
	TenantID     int64
	AccountID    int64
	Address      string
	PasswordHash string
	Disabled     bool
	AppPasswords []AppPassword
}

// RecipientStatus is what an address is to local delivery.
type RecipientStatus int

// Outcomes of ResolveRecipient.
const (
	// RecipientLocal: at least one enabled account with room takes the
	// mail.
	RecipientLocal RecipientStatus = iota + 1
	// RecipientNotLocal: the domain is not one of ours.
	RecipientNotLocal
	// RecipientUnknownUser: our domain, but no account, alias or catch-all
	// takes the address.
	RecipientUnknownUser
	// RecipientOverQuota: every enabled target is over its quota (or the
	// tenant over its limit) given the announced size.
	RecipientOverQuota
	// RecipientDisabled: the address's account, or every account its alias
	// targets, is disabled.
	RecipientDisabled
)

// Recipient is the outcome of ResolveRecipient.
type Recipient struct {
	Status   RecipientStatus
	TenantID int64
	// Accounts are the enabled target accounts (LOCAL and OVER_QUOTA),
	// deduplicated, by id. With LOCAL some of them may still be over
	// quota: delivery reports those per recipient.
	Accounts []ResolvedAccount
}

// ResolvedAccount is one account an address delivers to.
type ResolvedAccount struct {
	ID      int64
	Address string
}

// MaxLocalPartLen and MaxDomainLen are the RFC 5321 §4.5.3.1 limits.
const (
	MaxLocalPartLen = 64
	MaxDomainLen    = 253
)

// NormalizeDomain checks a domain name and returns it in lower case
// without a trailing dot. Names are ASCII letter-digit-hyphen labels of 1
// to 63 octets (RFC 5321 §4.1.2, RFC 1035 §2.3.1); internationalized names
// must be given in their A-label ("xn--") form.
func NormalizeDomain(name string) (string, error) {
	d := strings.ToLower(strings.TrimSuffix(name, "."))
	if d == "" {
		return "", fmt.Errorf("%w: domain name is empty", ErrInvalidName)
	}
	if len(d) > MaxDomainLen {
		return "", fmt.Errorf("%w: domain name is longer than %d characters", ErrInvalidName, MaxDomainLen)
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" {
			return "", fmt.Errorf("%w: domain %q has an empty label", ErrInvalidName, name)
		}
		if len(label) > 63 {
			return "", fmt.Errorf("%w: domain %q has a label longer than 63 characters", ErrInvalidName, name)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("%w: domain %q has a label that starts or ends with '-'", ErrInvalidName, name)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if c >= 0x80 {
				return "", fmt.Errorf("%w: domain %q is not ASCII; give its IDNA A-label (xn--) form", ErrInvalidName, name)
			}
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", fmt.Errorf("%w: domain %q contains %q; only letters, digits, '-' and '.' are allowed", ErrInvalidName, name, c)
			}
		}
	}
	return d, nil
}

// NormalizeLocalPart checks a local part and returns it in lower case.
// Only the dot-atom form of RFC 5322 §3.2.3 is accepted (no quoted
// strings): atext characters and single dots not at either end. Local
// parts are case-insensitive here, as every mainstream server treats them
// (RFC 5321 §2.4 allows it).
func NormalizeLocalPart(local string) (string, error) {
	l := strings.ToLower(local)
	switch {
	case l == "":
		return "", fmt.Errorf("%w: local part is empty", ErrInvalidName)
	case len(l) > MaxLocalPartLen:
		return "", fmt.Errorf("%w: local part is longer than %d characters", ErrInvalidName, MaxLocalPartLen)
	case l[0] == '.' || l[len(l)-1] == '.' || strings.Contains(l, ".."):
		return "", fmt.Errorf("%w: local part %q has a leading, trailing or double dot", ErrInvalidName, local)
	}
	for i := 0; i < len(l); i++ {
		if !isAtext(l[i]) && l[i] != '.' {
			return "", fmt.Errorf("%w: local part %q contains %q, which needs quoting (not supported)", ErrInvalidName, local, l[i])
		}
	}
	return l, nil
}

// isAtext reports whether c is an RFC 5322 §3.2.3 atext character (ASCII
// only; RFC 6531 UTF-8 local parts are not supported yet).
func isAtext(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// ParseAddress splits and normalizes "local@domain". With allowCatchAll,
// "@domain" is accepted and returns local "".
func ParseAddress(address string, allowCatchAll bool) (local, domain string, err error) {
	at := strings.LastIndexByte(address, '@')
	if at < 0 {
		return "", "", fmt.Errorf("%w: %q is not an address (no '@')", ErrInvalidName, address)
	}
	domain, err = NormalizeDomain(address[at+1:])
	if err != nil {
		return "", "", err
	}
	if at == 0 && allowCatchAll {
		return "", domain, nil
	}
	local, err = NormalizeLocalPart(address[:at])
	if err != nil {
		return "", "", err
	}
	return local, domain, nil
}
