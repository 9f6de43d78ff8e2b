package server

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	queuev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/queue/v1"
	"github.com/petrel-mail/petrel/services/smtp/internal/directory"
	"github.com/petrel-mail/petrel/services/smtp/internal/ingest"
)

// Replies used in more than one place. Texts are fixed: nothing a client
// or a dependency said is ever echoed.
var (
	errTempFailure     = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary failure, please try again later"}
	errDirectoryDown   = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 3}, Message: "Directory temporarily unavailable, please try again later"}
	errRelayDenied     = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Relay access denied"}
	errUnknownUser     = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
	errMailboxFull     = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "Mailbox full, please try again later"}
	errMailboxDisabled = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 2, 1}, Message: "Mailbox disabled"}
	errBadAddress      = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "Bad address syntax"}
	errOtherTenant     = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3}, Message: "Too many recipients for one transaction, send the rest separately"}
	errAuthRequired    = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	errSenderDenied    = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Sender address not allowed for this account"}
	errFromDenied      = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "From: header address not allowed for this account"}
	errRateLimited     = &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "Message rate limit exceeded, please try again later"}
	errTooManyTx       = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3}, Message: "Too many transactions in this session, please reconnect"}
	errBareLineEnding  = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Message refused: bare CR or LF (only CRLF line endings are allowed)"}
	errTooBig          = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Message size exceeds fixed limit"}
	errTooManyHops     = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 4, 6}, Message: "Too many hops: mail forwarding loop"}
	errEncryptionReq   = &smtp.SMTPError{Code: 538, EnhancedCode: smtp.EnhancedCode{5, 7, 11}, Message: "Encryption required for requested authentication mechanism"}
	errAuthTempFail    = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Temporary authentication failure"}
	errAuthTooMany     = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many authentication failures, try again later"}
	errAuthFailed      = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}
	errShuttingDown    = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Service shutting down, try again later"}
	errNoAuthHere      = &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "AUTH not available on this port, use submission"}
)

// session is one SMTP session. go-smtp runs BDAT's Data in its own
// goroutine while the connection goroutine may call Reset (client RSET or
// a refused chunk), so the transaction state is under mu and Data works on
// a copy.
type session struct {
	s    *Server
	c    *smtp.Conn
	conn *timedConn // nil when not served by our listener
	ip   netip.Addr
	tls  bool

	mu           sync.Mutex
	auth         *directory.Session
	authAttempts int
	transactions int
	from         string
	hasFrom      bool
	mailOpts     smtp.MailOptions
	rcpts        []ingest.Recipient
	tenant       string
}

// newSession runs on EHLO/HELO, again after STARTTLS, always in the
// connection's goroutine.
func newSession(s *Server, c *smtp.Conn) *session {
	_, isTLS := c.TLSConnectionState()
	sess := &session{s: s, c: c, ip: remoteIP(c.Conn().RemoteAddr()), tls: isTLS}
	if tc := baseConn(c.Conn()); tc != nil {
		sess.conn = tc
		top := c.Conn()
		tc.top.Store(&top)
		// The EHLO reply: one line per extension (go-smtp offers at
		// most about 15), plus TLS records around a STARTTLS.
		tc.earn(20)
	}
	return sess
}

// earn credits reply lines to transaction work (see timedConn).
func (s *session) earn(n int) {
	if s.conn != nil {
		s.conn.earn(n)
	}
}

func (s *session) log() []any {
	return []any{"listener", s.s.kind.String(), "client_ip", s.ip.String()}
}

func (s *session) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.s.o.DirectoryTimeout)
}

func (s *session) reject(e *smtp.SMTPError, reason string) error {
	if e.Code >= 500 {
		s.s.m.reject(s.s.kind, reason)
	} else {
		s.s.m.tempfail(s.s.kind, reason)
	}
	return e
}

func (s *session) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.from, s.hasFrom, s.mailOpts, s.rcpts, s.tenant = "", false, smtp.MailOptions{}, nil, ""
}

func (s *session) Logout() error { return nil }

// submission reports whether this listener takes authenticated submission.
func (s *session) submission() bool { return s.s.kind != MX }

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.earn(1)
	if s.s.draining.Load() {
		// Draining: no new transaction; the 421 ends the session.
		if s.conn != nil {
			s.conn.closeAfterWrite.Store(true)
		}
		return s.reject(errShuttingDown, "shutting_down")
	}
	s.transactions++
	if s.transactions > s.s.o.MaxTransactions {
		return s.reject(errTooManyTx, "transaction_limit")
	}
	if s.submission() {
		if s.auth == nil {
			return s.reject(errAuthRequired, "auth_required")
		}
		ctx, cancel := s.ctx()
		defer cancel()
		ok, err := s.s.o.Directory.CanSendAs(ctx, s.auth.Token, from)
		if err != nil {
			s.s.o.Logger.Warn("CanSendAs failed", append(s.log(), "err", err)...)
			return s.reject(errDirectoryDown, "directory")
		}
		if !ok {
			return s.reject(errSenderDenied, "sender_denied")
		}
		if !s.s.o.Limits.UserMessages.Allow(s.auth.AccountID) {
			return s.reject(errRateLimited, "user_rate")
		}
		s.tenant = s.auth.TenantID
	}
	s.from, s.hasFrom = from, true
	if opts != nil {
		s.mailOpts = *opts
	}
	return nil
}

func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.earn(1)
	ctx, cancel := s.ctx()
	defer cancel()
	res, err := s.s.o.Directory.ResolveRecipient(ctx, to, s.mailOpts.Size)
	switch {
	case errors.Is(err, directory.ErrInvalidAddress):
		return s.reject(errBadAddress, "bad_address")
	case err != nil:
		s.s.o.Logger.Warn("ResolveRecipient failed", append(s.log(), "err", err)...)
		return s.reject(errDirectoryDown, "directory")
	}
	r := ingest.Recipient{Address: to}
	if opts != nil {
		r.ORCPTType, r.ORCPT = string(opts.OriginalRecipientType), opts.OriginalRecipient
		for _, n := range opts.Notify {
			r.Notify = append(r.Notify, notifyValue(n))
		}
	}
	switch res.Status {
	case directory.RecipientLocal:
		r.Local = true
		r.TenantID, r.AccountIDs = res.TenantID, res.AccountIDs
		if !s.submission() {
			// One tenant per transaction: the object lives under that
			// tenant's key. Other tenants' recipients are deferred and
			// the client sends them in the next transaction.
			if s.tenant != "" && s.tenant != res.TenantID {
				return s.reject(errOtherTenant, "tenant_split")
			}
			s.tenant = res.TenantID
		}
	case directory.RecipientNotLocal:
		// RFC 5321 §3.6.2: relaying only for authenticated clients.
		if s.auth == nil {
			return s.reject(errRelayDenied, "relay_denied")
		}
	case directory.RecipientUnknownUser:
		return s.reject(errUnknownUser, "unknown_user")
	case directory.RecipientOverQuota:
		return s.reject(errMailboxFull, "over_quota")
	case directory.RecipientDisabled:
		return s.reject(errMailboxDisabled, "disabled")
	default:
		return s.reject(errDirectoryDown, "directory")
	}
	s.rcpts = append(s.rcpts, r)
	return nil
}

func notifyValue(n smtp.DSNNotify) queuev1.DSNNotify {
	switch n {
	case smtp.DSNNotifyNever:
		return queuev1.DSNNotify_DSN_NOTIFY_NEVER
	case smtp.DSNNotifySuccess:
		return queuev1.DSNNotify_DSN_NOTIFY_SUCCESS
	case smtp.DSNNotifyFailure:
		return queuev1.DSNNotify_DSN_NOTIFY_FAILURE
	case smtp.DSNNotifyDelayed:
		return queuev1.DSNNotify_DSN_NOTIFY_DELAY
	}
	return queuev1.DSNNotify_DSN_NOTIFY_UNSPECIFIED
}

// envelope copies the transaction for Data.
func (s *session) envelope() *ingest.Envelope {
	s.mu.Lock()
	defer s.mu.Unlock()
	env := &ingest.Envelope{
		TenantID:   s.tenant,
		MailFrom:   s.from,
		Recipients: append([]ingest.Recipient(nil), s.rcpts...),
		EnvID:      s.mailOpts.EnvelopeID,
		SMTPUTF8:   s.mailOpts.UTF8,
		ClientIP:   s.ip,
		HELO:       s.c.Hostname(),
		ESMTP:      true,
		Listener:   s.s.kind.String(),
		TLS:        s.tls,
	}
	switch s.mailOpts.Return {
	case smtp.DSNReturnFull:
		env.DSNReturn = queuev1.DSNReturn_DSN_RETURN_FULL
	case smtp.DSNReturnHeaders:
		env.DSNReturn = queuev1.DSNReturn_DSN_RETURN_HDRS
	}
	switch s.mailOpts.Body {
	case smtp.Body7Bit:
		env.Body = queuev1.Body_BODY_7BIT
	case smtp.Body8BitMIME:
		env.Body = queuev1.Body_BODY_8BITMIME
	case smtp.BodyBinaryMIME:
		env.Body = queuev1.Body_BODY_BINARYMIME
	}
	if s.auth != nil {
		env.AuthAccount = s.auth.AccountID
		env.AddMissingHeaders = true
		token := s.auth.Token
		env.CheckFrom = func(ctx context.Context, addrs []string) error { return s.checkFrom(ctx, token, addrs) }
	} else {
		env.CheckSender = true
	}
	return env
}

// checkFrom: every From: address must be one the account may send as
// (RFC 6409 §8.1 lets a submission server refuse what it cannot vouch for).
func (s *session) checkFrom(ctx context.Context, token string, addrs []string) error {
	if len(addrs) == 0 {
		return &ingest.FromError{Reason: "missing or unparsable From:"}
	}
	ctx, cancel := context.WithTimeout(ctx, s.s.o.DirectoryTimeout)
	defer cancel()
	for _, a := range addrs {
		ok, err := s.s.o.Directory.CanSendAs(ctx, token, a)
		if err != nil {
			return err
		}
		if !ok {
			return &ingest.FromError{Reason: "not allowed"}
		}
	}
	return nil
}

func (s *session) Data(r io.Reader) error {
	// 354 (DATA) or a chunk reply (BDAT), and the final reply.
	s.earn(2)
	env := s.envelope()
	if len(env.Recipients) == 0 {
		// Cannot happen: go-smtp refuses DATA without RCPT. Refuse
		// rather than store a message nobody receives.
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "No valid recipients"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.s.o.SessionTimeout)
	defer cancel()
	acc, err := s.s.o.Ingester.Accept(ctx, env, r)
	if err == nil {
		s.s.m.accepted.WithLabelValues(s.s.kind.String()).Inc()
		s.s.o.Logger.Info("message accepted", append(s.log(), "queue_id", acc.QueueID, "size", acc.Size, "recipients", len(env.Recipients))...)
		// go-smtp sends the code and text of the error Data returns; a
		// 250 "error" is how the queue id reaches the client.
		return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK: queued as " + acc.QueueID}
	}
	var smtpErr *smtp.SMTPError
	var rejected *ingest.RejectedError
	var fromErr *ingest.FromError
	switch {
	case errors.Is(err, ingest.ErrBareLineEnding):
		return s.reject(errBareLineEnding, "bare_line_ending")
	case errors.Is(err, ingest.ErrTooBig):
		return s.reject(errTooBig, "size")
	case errors.Is(err, ingest.ErrTooManyHops):
		return s.reject(errTooManyHops, "loop")
	case errors.As(err, &smtpErr) && smtpErr.Code == smtp.ErrDataTooLarge.Code:
		return s.reject(errTooBig, "size")
	case errors.As(err, &fromErr):
		return s.reject(errFromDenied, "from_denied")
	case errors.As(err, &rejected):
		reason := "Message rejected by sender authentication policy"
		if rejected.Reason != "" {
			reason += ": " + ingestClean(rejected.Reason)
		}
		return s.reject(&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: reason}, "policy")
	case errors.Is(err, ingest.ErrSource):
		s.s.o.Logger.Info("message transfer failed", append(s.log(), "err", err)...)
		return s.reject(errTempFailure, "transfer")
	case errors.Is(err, ingest.ErrStorage):
		s.s.o.Logger.Error("message not stored", append(s.log(), "err", err)...)
		return s.reject(errTempFailure, "blob")
	case errors.Is(err, ingest.ErrQueue):
		s.s.o.Logger.Error("message not queued", append(s.log(), "err", err)...)
		return s.reject(errTempFailure, "queue")
	case errors.Is(err, ingest.ErrCheck):
		s.s.o.Logger.Error("sender authentication failed to run", append(s.log(), "err", err)...)
		return s.reject(errTempFailure, "auth_check")
	default:
		// e.g. the directory failed during the From: check.
		s.s.o.Logger.Error("message not accepted", append(s.log(), "err", err)...)
		return s.reject(errTempFailure, "internal")
	}
}

func ingestClean(s string) string { return ingest.Clean(strings.ReplaceAll(s, " ", "_"), 200) }

// AuthMechanisms implements smtp.AuthSession: AUTH is offered only on the
// submission listeners, and only over TLS unless the client is on loopback
// and the operator allows it.
func (s *session) AuthMechanisms() []string {
	if !s.authAllowed() {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

func (s *session) authAllowed() bool {
	if !s.submission() {
		return false
	}
	return s.tls || s.s.o.AllowInsecureAuthLoopback && s.ip.IsLoopback()
}

// Auth implements smtp.AuthSession.
func (s *session) Auth(mech string) (sasl.Server, error) {
	if !s.submission() {
		return nil, errNoAuthHere
	}
	if !s.authAllowed() {
		return nil, errEncryptionReq
	}
	// 334 challenges and the final reply (LOGIN: two prompts).
	s.earn(3)
	s.mu.Lock()
	s.authAttempts++
	attempts := s.authAttempts
	s.mu.Unlock()
	if attempts > s.s.o.MaxAuthAttempts || s.s.o.Limits.AuthFailures.Blocked(s.ip) {
		s.s.m.auth.WithLabelValues(s.s.kind.String(), "blocked").Inc()
		return nil, errAuthTooMany
	}
	check := func(username, password string) error { return s.authenticate(username, password) }
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && identity != username {
				// Authorization as another user is not supported.
				return s.authFailed()
			}
			return check(username, password)
		}), nil
	case sasl.Login:
		return &loginServer{check: check}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (s *session) authenticate(username, password string) error {
	ctx, cancel := s.ctx()
	defer cancel()
	sess, err := s.s.o.Directory.Authenticate(ctx, username, password, "submission", s.ip)
	switch {
	case err == nil:
		s.mu.Lock()
		s.auth = &sess
		s.mu.Unlock()
		s.s.m.auth.WithLabelValues(s.s.kind.String(), "ok").Inc()
		return nil
	case errors.Is(err, directory.ErrAuthFailed), errors.Is(err, directory.ErrDisabled):
		return s.authFailed()
	case errors.Is(err, directory.ErrThrottled):
		s.s.m.auth.WithLabelValues(s.s.kind.String(), "throttled").Inc()
		return errAuthTooMany
	default:
		s.s.o.Logger.Warn("Authenticate failed", append(s.log(), "err", err)...)
		s.s.m.auth.WithLabelValues(s.s.kind.String(), "unavailable").Inc()
		return errAuthTempFail
	}
}

// authFailed slows the answer down, more with each failure from the same
// network, so password guessing gets slow before it gets refused.
func (s *session) authFailed() error {
	s.s.m.auth.WithLabelValues(s.s.kind.String(), "failed").Inc()
	if d := s.s.o.Limits.AuthFailures.Fail(s.ip); d > 0 {
		time.Sleep(d)
	}
	return errAuthFailed
}

var (
	_ smtp.Session     = (*session)(nil)
	_ smtp.AuthSession = (*session)(nil)
)
