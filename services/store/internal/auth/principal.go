package auth

import (
	"context"
	"fmt"
	"time"
)

// Kind is what a principal is.
type Kind uint8

const (
	KindInvalid Kind = iota
	// KindSession is a user logged in through a frontend: it acts on one
	// account of one tenant.
	KindSession
	// KindService is one of Petrel's own services, limited to the
	// capabilities of ServiceCapabilities.
	KindService
	// KindOperator administers the whole platform.
	KindOperator
	// KindTenantAdmin administers one tenant.
	KindTenantAdmin
)

var kindNames = [...]string{"invalid", "session", "service", "operator", "tenant-admin"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

func (k Kind) valid() bool { return k >= KindSession && k <= KindTenantAdmin }

// Capability is one thing a service principal may do.
type Capability string

const (
	CapAuthenticate     Capability = "authenticate"
	CapResolveRecipient Capability = "resolve-recipient"
	CapDeliver          Capability = "deliver"
	// CapDKIMKey reads DKIM private keys to sign outbound mail.
	CapDKIMKey Capability = "dkim-key"
)

// Service names for service tokens.
const (
	ServiceSMTP     = "smtp"
	ServiceDelivery = "delivery"
	ServiceIMAP     = "imap"
	ServicePOP3     = "pop3"
	// ServiceFrontend is a generic name for a login frontend (imap or pop3)
	// that does not want to say which.
	ServiceFrontend = "frontend"
)

// serviceCapabilities is fixed at build time on purpose: what a service may
// do is part of the design (ARCHITECTURE.md, Trust), not configuration, so a
// stolen service token is only as powerful as that service needs to be.
var serviceCapabilities = map[string][]Capability{
	ServiceSMTP:     {CapResolveRecipient, CapAuthenticate},
	ServiceDelivery: {CapResolveRecipient, CapDeliver, CapDKIMKey},
	ServiceIMAP:     {CapAuthenticate},
	ServicePOP3:     {CapAuthenticate},
	ServiceFrontend: {CapAuthenticate},
}

// ServiceCapabilities returns the capabilities of a service name, nil for a
// name that is not a Petrel service.
func ServiceCapabilities(service string) []Capability {
	caps := serviceCapabilities[service]
	return append([]Capability(nil), caps...)
}

// Principal is who a verified token stands for.
type Principal struct {
	Kind Kind
	// TenantID is set for sessions and tenant admins.
	TenantID string
	// AccountID and Address are set for sessions.
	AccountID string
	Address   string
	// Service is the service name of a service principal, or for a session
	// the protocol it logged in with ("imap", "pop3", "submission").
	Service string
	// ExpiresAt is when the token expires; zero for a principal that was not
	// read from a token.
	ExpiresAt time.Time
}

// validate checks that the fields a kind needs are there, so that a
// principal with an empty tenant can never match "any tenant".
func (p Principal) validate() error {
	switch p.Kind {
	case KindSession:
		if p.TenantID == "" || p.AccountID == "" {
			return fmt.Errorf("session principal needs tenant and account")
		}
	case KindService:
		if _, ok := serviceCapabilities[p.Service]; !ok {
			return fmt.Errorf("unknown service %q", p.Service)
		}
	case KindOperator:
	case KindTenantAdmin:
		if p.TenantID == "" {
			return fmt.Errorf("tenant-admin principal needs a tenant")
		}
	default:
		return fmt.Errorf("invalid principal kind %d", p.Kind)
	}
	return nil
}

// Has reports whether the principal holds a service capability. Operators
// hold every capability; sessions and tenant admins hold none.
func (p Principal) Has(c Capability) bool {
	switch p.Kind {
	case KindOperator:
		return true
	case KindService:
		for _, have := range serviceCapabilities[p.Service] {
			if have == c {
				return true
			}
		}
	}
	return false
}

// IsAdmin reports whether the principal may use the admin API at all.
func (p Principal) IsAdmin() bool {
	return p.Kind == KindOperator || p.Kind == KindTenantAdmin
}

// CanAccessTenant reports whether the principal may see and change the
// objects of a tenant through the admin API.
func (p Principal) CanAccessTenant(tenantID string) bool {
	switch p.Kind {
	case KindOperator:
		return true
	case KindTenantAdmin:
		return tenantID != "" && p.TenantID == tenantID
	}
	return false
}

// CanAccessAccount reports whether the principal may read and change the
// mail of an account: a session only its own, a tenant admin those of its
// tenant, an operator any. A service principal has no general access to
// accounts; what it may do (Deliver) is granted per method by capability.
func (p Principal) CanAccessAccount(tenantID, accountID string) bool {
	switch p.Kind {
	case KindSession:
		return accountID != "" && p.TenantID == tenantID && p.AccountID == accountID
	case KindTenantAdmin, KindOperator:
		return p.CanAccessTenant(tenantID)
	}
	return false
}

type principalKey struct{}

// NewContext returns ctx carrying p.
func NewContext(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal the interceptor put in ctx.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}
