// Package directory is smtp's view of the store's DirectoryService
// (proto/petrel/store/v1/directory.proto): is an RCPT TO address local,
// is an AUTH PLAIN/LOGIN password right (RFC 4954), may an authenticated
// account use an address as sender (RFC 6409 §6.1). Directory is the small
// interface the SMTP server depends on; Client implements it over gRPC.
//
// Credentials: ResolveRecipient is called with smtp's service token;
// CanSendAs with the session token Authenticate returned, so the store
// derives the account from the token and never from what smtp claims
// (ARCHITECTURE.md, "Trust"). Both travel as "authorization: Bearer
// <token>" metadata (RFC 6750 §2.1).
package directory

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Sentinel errors, matched with errors.Is.
var (
	// ErrAuthFailed: wrong login name or password (never says which).
	ErrAuthFailed = errors.New("directory: authentication failed")
	// ErrDisabled: the account exists but may not log in.
	ErrDisabled = errors.New("directory: account disabled")
	// ErrThrottled: too many failures; try again later.
	ErrThrottled = errors.New("directory: throttled")
	// ErrInvalidAddress: the store says the address is not an address.
	ErrInvalidAddress = errors.New("directory: invalid address")
	// ErrUnavailable: the store could not answer (down, overloaded, a
	// bug); the SMTP client gets a temporary failure.
	ErrUnavailable = errors.New("directory: unavailable")
)

// RecipientStatus says what an address is.
type RecipientStatus int

// Recipient statuses, mirroring storev1.RecipientStatus.
const (
	RecipientUnknown RecipientStatus = iota // the store sent nothing usable
	RecipientLocal
	RecipientNotLocal
	RecipientUnknownUser
	RecipientOverQuota
	RecipientDisabled
)

// Recipient is the answer for one RCPT TO.
type Recipient struct {
	Status   RecipientStatus
	TenantID string
	// AccountIDs of a local address (several for an alias): carried in
	// the queue entry so that delivery need not resolve it again.
	AccountIDs []string
}

// Session is a successful authentication.
type Session struct {
	Token     string
	AccountID string
	TenantID  string
	Address   string
	ExpiresAt time.Time
}

// Directory is what the SMTP server needs from the store.
type Directory interface {
	// ResolveRecipient classifies an RCPT TO address; size is the SIZE=
	// announced with MAIL FROM (0 if none), for the quota check.
	ResolveRecipient(ctx context.Context, address string, size int64) (Recipient, error)
	// Authenticate checks a password for a login name; service is
	// "submission", remoteIP the real client address.
	Authenticate(ctx context.Context, username, password, service string, remoteIP netip.Addr) (Session, error)
	// CanSendAs reports whether the account behind sessionToken may use
	// address as envelope sender or From:.
	CanSendAs(ctx context.Context, sessionToken, address string) (bool, error)
}

// Client implements Directory with storev1.DirectoryServiceClient.
type Client struct {
	rpc          storev1.DirectoryServiceClient
	serviceToken string
}

var _ Directory = (*Client)(nil)

// NewClient returns a Directory calling the store over conn. serviceToken
// is smtp's service credential, sent with ResolveRecipient.
func NewClient(conn grpc.ClientConnInterface, serviceToken string) *Client {
	return &Client{rpc: storev1.NewDirectoryServiceClient(conn), serviceToken: serviceToken}
}

func withBearer(ctx context.Context, token string) context.Context {
	if token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// ResolveRecipient implements Directory.
func (c *Client) ResolveRecipient(ctx context.Context, address string, size int64) (Recipient, error) {
	resp, err := c.rpc.ResolveRecipient(withBearer(ctx, c.serviceToken), &storev1.ResolveRecipientRequest{Address: address, Size: size})
	if err != nil {
		return Recipient{}, fmt.Errorf("resolve recipient: %w", mapError(err))
	}
	r := Recipient{TenantID: resp.GetTenantId()}
	for _, a := range resp.GetAccounts() {
		r.AccountIDs = append(r.AccountIDs, a.GetAccountId())
	}
	switch resp.GetStatus() {
	case storev1.RecipientStatus_RECIPIENT_STATUS_LOCAL:
		r.Status = RecipientLocal
	case storev1.RecipientStatus_RECIPIENT_STATUS_NOT_LOCAL:
		r.Status = RecipientNotLocal
	case storev1.RecipientStatus_RECIPIENT_STATUS_UNKNOWN_USER:
		r.Status = RecipientUnknownUser
	case storev1.RecipientStatus_RECIPIENT_STATUS_OVER_QUOTA:
		r.Status = RecipientOverQuota
	case storev1.RecipientStatus_RECIPIENT_STATUS_DISABLED:
		r.Status = RecipientDisabled
	default:
		// An answer we do not understand must not open a relay nor bounce
		// mail: treat it as the store being unusable.
		return Recipient{}, fmt.Errorf("resolve recipient: status %v: %w", resp.GetStatus(), ErrUnavailable)
	}
	return r, nil
}

// Authenticate implements Directory.
func (c *Client) Authenticate(ctx context.Context, username, password, service string, remoteIP netip.Addr) (Session, error) {
	req := &storev1.AuthenticateRequest{Username: username, Password: password, Service: service}
	if remoteIP.IsValid() {
		req.RemoteIp = remoteIP.String()
	}
	resp, err := c.rpc.Authenticate(withBearer(ctx, c.serviceToken), req)
	if err != nil {
		return Session{}, fmt.Errorf("authenticate: %w", mapError(err))
	}
	if resp.GetSessionToken() == "" {
		return Session{}, fmt.Errorf("authenticate: empty session token: %w", ErrUnavailable)
	}
	s := Session{
		Token:     resp.GetSessionToken(),
		AccountID: resp.GetAccountId(),
		TenantID:  resp.GetTenantId(),
		Address:   resp.GetAddress(),
	}
	if resp.GetExpiresAt() != nil {
		s.ExpiresAt = resp.GetExpiresAt().AsTime()
	}
	return s, nil
}

// CanSendAs implements Directory.
func (c *Client) CanSendAs(ctx context.Context, sessionToken, address string) (bool, error) {
	if sessionToken == "" {
		return false, fmt.Errorf("can send as: no session token: %w", ErrAuthFailed)
	}
	resp, err := c.rpc.CanSendAs(withBearer(ctx, sessionToken), &storev1.CanSendAsRequest{Address: address})
	if err != nil {
		return false, fmt.Errorf("can send as: %w", mapError(err))
	}
	return resp.GetAllowed(), nil
}

// mapError turns a store status into this package's sentinels, keeping the
// original for logs.
func mapError(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	reason := storev1.Reason_REASON_UNSPECIFIED
	for _, d := range st.Details() {
		if info, ok := d.(*storev1.ErrorInfo); ok {
			reason = info.GetReason()
		}
	}
	var sentinel error
	switch {
	case st.Code() == codes.Unauthenticated:
		sentinel = ErrAuthFailed
	case st.Code() == codes.PermissionDenied && reason == storev1.Reason_REASON_DISABLED:
		sentinel = ErrDisabled
	case st.Code() == codes.ResourceExhausted && reason == storev1.Reason_REASON_THROTTLED:
		sentinel = ErrThrottled
	case st.Code() == codes.InvalidArgument:
		sentinel = ErrInvalidAddress
	default:
		sentinel = ErrUnavailable
	}
	return fmt.Errorf("%w: %w", sentinel, err)
}
