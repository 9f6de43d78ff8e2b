package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Login errors. ErrAuthFailed is the one answer for an unknown login name
// and a wrong password alike (UNAUTHENTICATED, REASON_AUTH_FAILED);
// ErrDisabled (PERMISSION_DENIED, REASON_DISABLED) is only returned to a
// caller who knew the password, so it does not reveal that a name exists.
var (
	ErrAuthFailed = errors.New("auth: authentication failed")
	ErrDisabled   = errors.New("auth: account disabled")
	// ErrUnknownUser is what a CredentialSource returns for a login name
	// that has no account. Authenticate never returns it.
	ErrUnknownUser = errors.New("auth: unknown login name")
)

// minAppPasswordLen: a candidate shorter than this cannot be an app
// password, so the app password hashes need not be tried.
const minAppPasswordLen = 16

// Credentials are what the data layer knows about an account's login.
type Credentials struct {
	TenantID  string
	AccountID string
	// Address is the canonical address of the account.
	Address string
	// PasswordHash is the argon2id PHC string of the account password;
	// empty if the account has none (only app passwords log in).
	PasswordHash string
	AppPasswords []AppPasswordHash
	// Disabled is true when the account or its tenant is disabled.
	Disabled bool
}

// AppPasswordHash is one app password of an account, hashed in its
// normalized form (NormalizeAppPassword).
type AppPasswordHash struct {
	ID   string
	Hash string
}

// CredentialSource looks up login credentials; the data layer implements
// it.
type CredentialSource interface {
	// Credentials returns the credentials for a login name (the account's
	// address, matched case-insensitively), or an error matching
	// ErrUnknownUser when there is no such account.
	Credentials(ctx context.Context, username string) (Credentials, error)
}

// PasswordRehasher is an optional ability of a CredentialSource: storing a
// new hash of the account password after a login found the old one made
// with outdated parameters.
type PasswordRehasher interface {
	UpdatePasswordHash(ctx context.Context, accountID, hash string) error
}

// AppPasswordRecorder is an optional ability of a CredentialSource:
// remembering when an app password was last used, for ListAppPasswords.
type AppPasswordRecorder interface {
	AppPasswordUsed(ctx context.Context, accountID, appPasswordID string, at time.Time) error
}

// AuthenticatorOptions configure an Authenticator. Source, Hasher, Tokens
// and Throttler are required.
type AuthenticatorOptions struct {
	Source    CredentialSource
	Hasher    *Hasher
	Tokens    *Tokens
	Throttler *Throttler
	// Metrics may be nil.
	Metrics *Metrics
	// Logger gets failures of the optional Source abilities and malformed
	// stored hashes; slog.Default when nil.
	Logger *slog.Logger
	// Now is the clock for app password usage times; time.Now when nil.
	Now func() time.Time
	// Sleep waits for the throttling delay; a context-aware timer when nil.
	// Tests replace it to observe delays without waiting.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Authenticator checks logins and issues session tokens.
type Authenticator struct {
	opts AuthenticatorOptions
}

// Session is the result of a successful login.
type Session struct {
	Principal Principal
	Token     string
	ExpiresAt time.Time
}

// NewAuthenticator returns an Authenticator.
func NewAuthenticator(opts AuthenticatorOptions) (*Authenticator, error) {
	var errs []error
	if opts.Source == nil {
		errs = append(errs, errors.New("credential source is required"))
	}
	if opts.Hasher == nil {
		errs = append(errs, errors.New("hasher is required"))
	}
	if opts.Tokens == nil {
		errs = append(errs, errors.New("tokens are required"))
	}
	if opts.Throttler == nil {
		errs = append(errs, errors.New("throttler is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Sleep == nil {
		opts.Sleep = sleepContext
	}
	return &Authenticator{opts: opts}, nil
}

func sleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Authenticate checks password, or one of the account's app passwords, for
// username, logging in to service from remoteIP, and returns a session.
//
// When earlier failures put the name or network over its delay limit, the
// call first waits the throttling delay (through Options.Sleep), so that a
// guesser gets answers slowly whether or not the guess is right.
//
// Errors: ErrAuthFailed (unknown name or wrong password, the same work is
// done for both), ErrDisabled, ErrThrottled, or a wrapped error of the
// credential source or the context.
//
// An unknown name costs one argon2id verification, a known one one plus
// one per app password when the password is wrong: timing can tell that an
// account with app passwords exists, not whether a name without them does.
func (a *Authenticator) Authenticate(ctx context.Context, username, password, service, remoteIP string) (Session, error) {
	s, result, err := a.authenticate(ctx, username, password, service, remoteIP)
	a.opts.Metrics.attempt(result)
	return s, err
}

func (a *Authenticator) authenticate(ctx context.Context, username, password, service, remoteIP string) (Session, string, error) {
	delay, err := a.opts.Throttler.Check(username, remoteIP)
	if err != nil {
		return Session{}, resultThrottled, err
	}
	if delay > 0 {
		if err := a.opts.Sleep(ctx, delay); err != nil {
			return Session{}, resultError, fmt.Errorf("auth: waiting out login delay: %w", err)
		}
	}

	creds, err := a.opts.Source.Credentials(ctx, username)
	if errors.Is(err, ErrUnknownUser) {
		a.opts.Hasher.VerifyDummy(password)
		a.opts.Throttler.Failure(username, remoteIP)
		return Session{}, resultFailure, ErrAuthFailed
	}
	if err != nil {
		return Session{}, resultError, fmt.Errorf("auth: look up credentials: %w", err)
	}

	ok, appPasswordID := a.checkPassword(creds, password)
	if !ok {
		a.opts.Throttler.Failure(username, remoteIP)
		return Session{}, resultFailure, ErrAuthFailed
	}
	if creds.Disabled {
		return Session{}, resultDisabled, ErrDisabled
	}
	a.opts.Throttler.Success(username)
	a.afterLogin(ctx, creds, password, appPasswordID)

	token, exp, err := a.opts.Tokens.IssueSession(creds.TenantID, creds.AccountID, creds.Address, service)
	if err != nil {
		return Session{}, resultError, err
	}
	p := Principal{Kind: KindSession, TenantID: creds.TenantID, AccountID: creds.AccountID, Address: creds.Address, Service: service, ExpiresAt: exp}
	return Session{Principal: p, Token: token, ExpiresAt: exp}, resultSuccess, nil
}

// checkPassword tries the account password, then each app password. It
// returns the id of the app password that matched, "" for the account
// password.
func (a *Authenticator) checkPassword(creds Credentials, password string) (bool, string) {
	h := a.opts.Hasher
	if creds.PasswordHash == "" {
		// No account password: do the work anyway, so that such accounts
		// do not stand out by answering faster.
		h.VerifyDummy(password)
	} else {
		ok, err := h.Verify(creds.PasswordHash, password)
		if err != nil {
			a.opts.Logger.Error("stored password hash is malformed", "account_id", creds.AccountID, "err", err)
		}
		if ok {
			return true, ""
		}
	}
	candidate := NormalizeAppPassword(password)
	if len(candidate) < minAppPasswordLen {
		return false, ""
	}
	for _, ap := range creds.AppPasswords {
		ok, err := h.Verify(ap.Hash, candidate)
		if err != nil {
			a.opts.Logger.Error("stored app password hash is malformed", "account_id", creds.AccountID, "app_password_id", ap.ID, "err", err)
		}
		if ok {
			return true, ap.ID
		}
	}
	return false, ""
}

// afterLogin does the optional bookkeeping of a successful login. Its
// failures are logged, not returned: the user did prove who they are.
func (a *Authenticator) afterLogin(ctx context.Context, creds Credentials, password, appPasswordID string) {
	if appPasswordID != "" {
		if rec, ok := a.opts.Source.(AppPasswordRecorder); ok {
			if err := rec.AppPasswordUsed(ctx, creds.AccountID, appPasswordID, a.opts.Now()); err != nil {
				a.opts.Logger.Warn("recording app password use", "account_id", creds.AccountID, "err", err)
			}
		}
		return
	}
	rh, ok := a.opts.Source.(PasswordRehasher)
	if !ok || !a.opts.Hasher.NeedsRehash(creds.PasswordHash) {
		return
	}
	hash, err := a.opts.Hasher.Hash(password)
	if err == nil {
		err = rh.UpdatePasswordHash(ctx, creds.AccountID, hash)
	}
	if err != nil {
		a.opts.Logger.Warn("rehashing password", "account_id", creds.AccountID, "err", err)
	}
}
