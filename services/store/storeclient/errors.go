// Package storeclient is the client side of the store's gRPC API
// (proto/petrel/store/v1) for the other services (imap, pop3, smtp,
// delivery) and petrelctl: Dial returns the service clients on one
// connection, with every error already turned back into the sentinel
// errors below, so callers test errors.Is(err, storeclient.ErrNotFound)
// instead of inspecting gRPC statuses.
//
// The store reports every failure as a gRPC status with a
// petrel.store.v1.ErrorInfo detail (common.proto); FromStatus maps the
// detail's Reason (or, without one, the status code) to a sentinel. The
// server side of the mapping is services/store/internal/server/errors.go.
// Tokens travel as "authorization: Bearer <token>" (RFC 6750 §2.1).
package storeclient

import (
	"errors"
	"fmt"

	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Sentinel errors, one per ErrorInfo reason plus the transport-level
// outcomes a caller must tell apart.
var (
	ErrNotFound          = errors.New("store: not found")
	ErrExists            = errors.New("store: already exists")
	ErrOverQuota         = errors.New("store: over quota")
	ErrInvalidName       = errors.New("store: invalid name")
	ErrAuthFailed        = errors.New("store: authentication failed")
	ErrThrottled         = errors.New("store: too many failed logins")
	ErrDisabled          = errors.New("store: account disabled")
	ErrModified          = errors.New("store: modified since")
	ErrNonexistentParent = errors.New("store: parent does not exist")
	ErrHasChildren       = errors.New("store: mailbox has children")
	ErrCannot            = errors.New("store: operation not allowed")
	ErrTooBig            = errors.New("store: message too big")
	// ErrUnavailable: a dependency of the store (or the store itself) is
	// down; the operation may succeed later (SMTP 4xx, IMAP NO
	// [UNAVAILABLE]).
	ErrUnavailable = errors.New("store: temporarily unavailable")
	// ErrPermissionDenied: the caller's token does not allow the call.
	ErrPermissionDenied = errors.New("store: permission denied")
	// ErrInvalidArgument: the request was malformed.
	ErrInvalidArgument = errors.New("store: invalid argument")
	// ErrUnimplemented: the store does not offer the call (yet).
	ErrUnimplemented = errors.New("store: not implemented")
	// ErrInternal: the store failed; it logged why.
	ErrInternal = errors.New("store: internal error")
)

var byReason = map[storev1.Reason]error{
	storev1.Reason_REASON_NOT_FOUND:          ErrNotFound,
	storev1.Reason_REASON_ALREADY_EXISTS:     ErrExists,
	storev1.Reason_REASON_OVER_QUOTA:         ErrOverQuota,
	storev1.Reason_REASON_INVALID_NAME:       ErrInvalidName,
	storev1.Reason_REASON_AUTH_FAILED:        ErrAuthFailed,
	storev1.Reason_REASON_THROTTLED:          ErrThrottled,
	storev1.Reason_REASON_DISABLED:           ErrDisabled,
	storev1.Reason_REASON_MODIFIED:           ErrModified,
	storev1.Reason_REASON_NONEXISTENT_PARENT: ErrNonexistentParent,
	storev1.Reason_REASON_HAS_CHILDREN:       ErrHasChildren,
	storev1.Reason_REASON_CANNOT:             ErrCannot,
	storev1.Reason_REASON_TOO_BIG:            ErrTooBig,
}

var byCode = map[codes.Code]error{
	codes.NotFound:           ErrNotFound,
	codes.AlreadyExists:      ErrExists,
	codes.ResourceExhausted:  ErrOverQuota,
	codes.Unauthenticated:    ErrAuthFailed,
	codes.PermissionDenied:   ErrPermissionDenied,
	codes.InvalidArgument:    ErrInvalidArgument,
	codes.FailedPrecondition: ErrCannot,
	codes.Unavailable:        ErrUnavailable,
	codes.DeadlineExceeded:   ErrUnavailable,
	codes.Aborted:            ErrUnavailable,
	codes.Unimplemented:      ErrUnimplemented,
	codes.Internal:           ErrInternal,
	codes.Unknown:            ErrInternal,
	codes.DataLoss:           ErrInternal,
}

// Error is a store failure: the gRPC status and the sentinel it stands
// for. errors.Is matches the sentinel; status.FromError still sees the
// status.
type Error struct {
	Code     codes.Code
	Reason   storev1.Reason
	Message  string
	sentinel error
	st       *status.Status
}

func (e *Error) Error() string {
	if e.Reason != storev1.Reason_REASON_UNSPECIFIED {
		return fmt.Sprintf("store: %s (%s): %s", e.Code, e.Reason, e.Message)
	}
	return fmt.Sprintf("store: %s: %s", e.Code, e.Message)
}

// Unwrap returns the sentinel.
func (e *Error) Unwrap() error { return e.sentinel }

// GRPCStatus lets status.FromError and status.Code see the original
// status.
func (e *Error) GRPCStatus() *status.Status { return e.st }

// Temporary reports whether trying again later may succeed.
func (e *Error) Temporary() bool { return errors.Is(e.sentinel, ErrUnavailable) }

// FromStatus turns an error returned by a store call into an *Error that
// matches a sentinel. nil stays nil, and errors that carry no gRPC status
// (io.EOF from a stream, a context error raised before the call) are
// returned unchanged. A status with an ErrorInfo reason maps by the reason,
// otherwise by the code. A call the client cancelled keeps matching
// context.Canceled.
func FromStatus(err error) error {
	if err == nil {
		return nil
	}
	var already *Error
	if errors.As(err, &already) {
		return err
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	e := &Error{Code: st.Code(), Message: st.Message(), st: st}
	for _, d := range st.Details() {
		if info, ok := d.(*storev1.ErrorInfo); ok {
			e.Reason = info.GetReason()
			break
		}
	}
	switch {
	case byReason[e.Reason] != nil:
		e.sentinel = byReason[e.Reason]
	case st.Code() == codes.Canceled:
		return err
	case byCode[st.Code()] != nil:
		e.sentinel = byCode[st.Code()]
	default:
		e.sentinel = ErrInternal
	}
	return e
}

// Reason returns the ErrorInfo reason of a store error, or
// REASON_UNSPECIFIED.
func Reason(err error) storev1.Reason {
	var e *Error
	if errors.As(FromStatus(err), &e) {
		return e.Reason
	}
	return storev1.Reason_REASON_UNSPECIFIED
}
