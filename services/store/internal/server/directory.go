package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/petrel-mail/petrel/services/store/internal/auth"
	"github.com/petrel-mail/petrel/services/store/internal/repo"
)

// DirectoryOptions configure NewDirectoryServer. Repo and Authenticator
// are required; the Authenticator's CredentialSource is normally
// NewCredentialSource(Repo).
type DirectoryOptions struct {
	Repo          repo.Repository
	Authenticator *auth.Authenticator
	Logger        *slog.Logger
}

// DirectoryServer implements storev1.DirectoryServiceServer: logins,
// recipient lookup for smtp and delivery, and send-as checks for
// submission.
type DirectoryServer struct {
	storev1.UnimplementedDirectoryServiceServer
	opts DirectoryOptions
}

// NewDirectoryServer returns the DirectoryService handlers.
func NewDirectoryServer(opts DirectoryOptions) (*DirectoryServer, error) {
	var errs []error
	if opts.Repo == nil {
		errs = append(errs, errors.New("server: directory needs Repo"))
	}
	if opts.Authenticator == nil {
		errs = append(errs, errors.New("server: directory needs an Authenticator"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &DirectoryServer{opts: opts}, nil
}

// Authenticate checks a password or an app password and returns a session
// token. Login failures are classified by auth.StatusError, so an unknown
// name and a wrong password give the same UNAUTHENTICATED answer.
func (s *DirectoryServer) Authenticate(ctx context.Context, req *storev1.AuthenticateRequest) (*storev1.AuthenticateResponse, error) {
	service := req.GetService()
	if service == "" {
		// A frontend that does not say which protocol it serves is
		// logging its user in to itself.
		if p, ok := auth.FromContext(ctx); ok {
			service = p.Service
		}
	}
	sess, err := s.opts.Authenticator.Authenticate(ctx, req.GetUsername(), req.GetPassword(), service, req.GetRemoteIp())
	if err != nil {
		// toStatus hands the login errors to auth.StatusError and logs
		// anything else (a database failure) without showing it.
		return nil, s.status(ctx, "authenticate", err)
	}
	p := sess.Principal
	return &storev1.AuthenticateResponse{
		SessionToken: sess.Token,
		ExpiresAt:    timestamppb.New(sess.ExpiresAt),
		AccountId:    p.AccountID,
		TenantId:     p.TenantID,
		Address:      p.Address,
	}, nil
}

// ResolveRecipient says what an RCPT TO address is.
func (s *DirectoryServer) ResolveRecipient(ctx context.Context, req *storev1.ResolveRecipientRequest) (*storev1.ResolveRecipientResponse, error) {
	if _, _, err := repo.ParseAddress(req.GetAddress(), false); err != nil {
		return nil, invalidName(err)
	}
	if req.GetSize() < 0 {
		return nil, withReason(codes.InvalidArgument, "size must not be negative", storev1.Reason_REASON_UNSPECIFIED)
	}
	rc, err := s.opts.Repo.ResolveRecipient(ctx, req.GetAddress(), req.GetSize())
	if err != nil {
		return nil, s.status(ctx, "resolve recipient", err)
	}
	resp := &storev1.ResolveRecipientResponse{Status: recipientStatus(rc.Status)}
	if rc.TenantID != 0 {
		resp.TenantId = idString(rc.TenantID)
	}
	for _, a := range rc.Accounts {
		resp.Accounts = append(resp.Accounts, &storev1.ResolvedAccount{AccountId: idString(a.ID), Address: a.Address})
	}
	return resp, nil
}

func recipientStatus(st repo.RecipientStatus) storev1.RecipientStatus {
	switch st {
	case repo.RecipientLocal:
		return storev1.RecipientStatus_RECIPIENT_STATUS_LOCAL
	case repo.RecipientNotLocal:
		return storev1.RecipientStatus_RECIPIENT_STATUS_NOT_LOCAL
	case repo.RecipientUnknownUser:
		return storev1.RecipientStatus_RECIPIENT_STATUS_UNKNOWN_USER
	case repo.RecipientOverQuota:
		return storev1.RecipientStatus_RECIPIENT_STATUS_OVER_QUOTA
	case repo.RecipientDisabled:
		return storev1.RecipientStatus_RECIPIENT_STATUS_DISABLED
	}
	return storev1.RecipientStatus_RECIPIENT_STATUS_UNSPECIFIED
}

// CanSendAs answers for the account of the session token, never for an
// account named in the request.
func (s *DirectoryServer) CanSendAs(ctx context.Context, req *storev1.CanSendAsRequest) (*storev1.CanSendAsResponse, error) {
	scope, err := callerScope(ctx)
	if err != nil {
		return nil, err
	}
	if _, _, err := repo.ParseAddress(req.GetAddress(), false); err != nil {
		return nil, invalidName(err)
	}
	ok, err := s.opts.Repo.CanSendAs(ctx, scope, req.GetAddress())
	if err != nil {
		return nil, s.status(ctx, "can send as", err)
	}
	return &storev1.CanSendAsResponse{Allowed: ok}, nil
}

func (s *DirectoryServer) status(ctx context.Context, op string, err error) error {
	return toStatus(ctx, s.opts.Logger, op, err)
}

// invalidName turns a validation error of repo.ParseAddress or
// repo.NormalizeDomain into INVALID_ARGUMENT. Their messages are fixed
// text about the input, safe to show, so the "repo: invalid name: "
// prefix is dropped and the rest kept.
func invalidName(err error) error {
	msg := strings.TrimPrefix(err.Error(), repo.ErrInvalidName.Error()+": ")
	return withReason(codes.InvalidArgument, msg, storev1.Reason_REASON_INVALID_NAME)
}

// CredentialSource is auth.CredentialSource over the repository. It also
// stores rehashed passwords and records app password use.
type CredentialSource struct {
	repo repo.Admin
}

var (
	_ auth.CredentialSource    = (*CredentialSource)(nil)
	_ auth.PasswordRehasher    = (*CredentialSource)(nil)
	_ auth.AppPasswordRecorder = (*CredentialSource)(nil)
)

// NewCredentialSource returns the login data source for auth.NewAuthenticator.
func NewCredentialSource(r repo.Admin) *CredentialSource { return &CredentialSource{repo: r} }

// Credentials looks up a login name (an account address).
func (c *CredentialSource) Credentials(ctx context.Context, username string) (auth.Credentials, error) {
	cr, err := c.repo.Credentials(ctx, username)
	if errors.Is(err, repo.ErrNotFound) || errors.Is(err, repo.ErrInvalidName) {
		return auth.Credentials{}, fmt.Errorf("%w: %w", auth.ErrUnknownUser, err)
	}
	if err != nil {
		return auth.Credentials{}, err
	}
	out := auth.Credentials{
		TenantID:     idString(cr.TenantID),
		AccountID:    idString(cr.AccountID),
		Address:      cr.Address,
		PasswordHash: cr.PasswordHash,
		Disabled:     cr.Disabled,
	}
	for _, ap := range cr.AppPasswords {
		out.AppPasswords = append(out.AppPasswords, auth.AppPasswordHash{ID: idString(ap.ID), Hash: ap.Hash})
	}
	return out, nil
}

func (c *CredentialSource) scope(ctx context.Context, accountID string) (repo.Scope, error) {
	id, err := strconv.ParseInt(accountID, 10, 64)
	if err != nil {
		return repo.Scope{}, fmt.Errorf("server: account id %q: %w", accountID, err)
	}
	tenant, err := c.repo.AccountTenant(ctx, id)
	if err != nil {
		return repo.Scope{}, err
	}
	return repo.Scope{TenantID: tenant, AccountID: id}, nil
}

// UpdatePasswordHash stores a hash made with the current parameters.
func (c *CredentialSource) UpdatePasswordHash(ctx context.Context, accountID, hash string) error {
	s, err := c.scope(ctx, accountID)
	if err != nil {
		return err
	}
	_, err = c.repo.UpdateAccount(ctx, s, repo.AccountUpdate{PasswordHash: &hash})
	return err
}

// AppPasswordUsed records when an app password last logged in.
func (c *CredentialSource) AppPasswordUsed(ctx context.Context, accountID, appPasswordID string, at time.Time) error {
	s, err := c.scope(ctx, accountID)
	if err != nil {
		return err
	}
	id, err := strconv.ParseInt(appPasswordID, 10, 64)
	if err != nil {
		return fmt.Errorf("server: app password id %q: %w", appPasswordID, err)
	}
	return c.repo.AppPasswordUsed(ctx, s, id, at)
}
