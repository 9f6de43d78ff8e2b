package server

import (
	"context"
	"errors"
	"log/slog"
	"net"

	"github.com/jackc/pgx/v5/pgconn"
	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/petrel-mail/petrel/services/store/internal/auth"
	"github.com/petrel-mail/petrel/services/store/internal/repo"
)

// Errors of the handlers themselves (not of the repository).
var (
	// errTooBig: a message above the configured maximum size.
	errTooBig = errors.New("server: message too big")
	// errBadRequest wraps a malformed request; the text is written by us
	// and safe to show.
	errBadRequest = errors.New("server: bad request")
)

// badRequest is a client error whose message is fixed text (never an
// internal error's).
type badRequest struct{ msg string }

func (e badRequest) Error() string { return e.msg }
func (e badRequest) Is(target error) bool {
	return target == errBadRequest
}

func invalid(msg string) error { return badRequest{msg: msg} }

// withReason builds a status carrying the ErrorInfo detail every store
// error has (common.proto).
func withReason(c codes.Code, msg string, reason storev1.Reason) error {
	st := status.New(c, msg)
	if d, err := st.WithDetails(&storev1.ErrorInfo{Reason: reason}); err == nil {
		st = d
	}
	return st.Err()
}

// toStatus is the one place where errors become gRPC statuses: sentinel
// errors of repo and auth map to a code and an ErrorInfo reason; a dead
// dependency to UNAVAILABLE; anything else to INTERNAL, logged here with
// the operation so that the client never sees err.Error(). The client side
// of the mapping is storeclient.FromStatus. Handlers of other files in the
// package (directory, admin, search) use it too.
func toStatus(ctx context.Context, log *slog.Logger, op string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err // already classified (auth interceptors, RequireTenant)
	}
	var br badRequest
	switch {
	case errors.As(err, &br):
		return withReason(codes.InvalidArgument, br.msg, storev1.Reason_REASON_UNSPECIFIED)
	case errors.Is(err, repo.ErrNotFound):
		return withReason(codes.NotFound, "not found", storev1.Reason_REASON_NOT_FOUND)
	case errors.Is(err, repo.ErrExists):
		return withReason(codes.AlreadyExists, "already exists", storev1.Reason_REASON_ALREADY_EXISTS)
	case errors.Is(err, repo.ErrOverQuota):
		return withReason(codes.ResourceExhausted, "over quota", storev1.Reason_REASON_OVER_QUOTA)
	case errors.Is(err, repo.ErrInvalidName):
		return withReason(codes.InvalidArgument, "invalid name", storev1.Reason_REASON_INVALID_NAME)
	case errors.Is(err, repo.ErrNotAllowed):
		return withReason(codes.FailedPrecondition, "operation not allowed", storev1.Reason_REASON_CANNOT)
	case errors.Is(err, repo.ErrNoSelect):
		return withReason(codes.FailedPrecondition, "mailbox is not selectable", storev1.Reason_REASON_CANNOT)
	case errors.Is(err, repo.ErrUIDsExhausted):
		return withReason(codes.FailedPrecondition, "mailbox UID space exhausted", storev1.Reason_REASON_CANNOT)
	case errors.Is(err, errTooBig):
		return withReason(codes.InvalidArgument, "message too big", storev1.Reason_REASON_TOO_BIG)
	case errors.Is(err, auth.ErrAuthFailed), errors.Is(err, auth.ErrDisabled), errors.Is(err, auth.ErrThrottled):
		return auth.StatusError(err)
	case errors.Is(err, auth.ErrInvalidToken):
		return withReason(codes.Unauthenticated, "authentication required", storev1.Reason_REASON_AUTH_FAILED)
	}
	// The caller went away: say so, there is nobody to tell otherwise.
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return status.FromContextError(ctx.Err()).Err()
	}
	if unavailable(err) {
		log.WarnContext(ctx, "dependency unavailable", "op", op, "err", err)
		return withReason(codes.Unavailable, "temporarily unavailable, try again later", storev1.Reason_REASON_UNSPECIFIED)
	}
	log.ErrorContext(ctx, "request failed", "op", op, "err", err)
	return withReason(codes.Internal, "internal error", storev1.Reason_REASON_UNSPECIFIED)
}

// unavailable reports whether err means that PostgreSQL, S3 or the
// network is down or overloaded, which will pass: the client should retry
// rather than report a failure.
func unavailable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true // our own timeouts (pool acquire, S3 call)
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) || pgconn.Timeout(err) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case len(pe.Code) == 5 && pe.Code[:2] == "08": // connection exception
			return true
		case pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03": // shutdown, crash, cannot connect now
			return true
		case pe.Code == "53300": // too many connections
			return true
		case pe.Code == "55P03", pe.Code == "57014", pe.Code == "40001", pe.Code == "40P01":
			// lock timeout, statement timeout, serialization failure and
			// deadlock left after the repository's retries
			return true
		}
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe)
}
