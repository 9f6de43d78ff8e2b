// Package authcheck is the seam between SMTP ingress and sender
// authentication: SPF (RFC 7208), DKIM (RFC 6376) and DMARC (RFC 7489),
// whose results are recorded in an Authentication-Results header field
// (RFC 8601). Package internal/msgauth implements Authenticator; ingest
// calls it for inbound (MX) mail only.
//
// Design: Check runs once, after the whole message has been received and
// before anything is published, on a reader over the message as the client
// sent it (header and body, CRLF line endings, dot-unstuffed, without the
// Received: field smtp adds). The message is spooled while it is read
// (memory up to a threshold, then a temporary file), so Check can stream it
// (DKIM body hashes are computed in one pass) and the object written to blob
// storage afterwards is the final one, with Received: and
// Authentication-Results: prepended: one object write, never a rewrite of
// an immutable object, and memory stays bounded whatever the size.
package authcheck

import (
	"context"
	"io"
	"net/netip"
)

// Authenticator evaluates the sender authentication of one inbound message.
// Implementations are safe for concurrent use.
type Authenticator interface {
	// Check reads in.Message (it need not read all of it) and returns the
	// verdict. DNS failures are results (temperror), not errors: an error
	// means the check itself could not run, and the message is deferred
	// with a 4xx.
	Check(ctx context.Context, in CheckInput) (Result, error)
}

// CheckInput is what an Authenticator may look at.
type CheckInput struct {
	// ClientIP is the real client address (after the PROXY protocol).
	ClientIP netip.Addr
	// HELO is the EHLO/HELO name the client gave, cleaned of controls.
	HELO string
	// MailFrom is the envelope sender; "" for the null sender <>.
	MailFrom string
	// Message is the message as received: header block and body.
	Message io.Reader
}

// Result is the verdict on one message.
type Result struct {
	// Header is the complete Authentication-Results field to prepend,
	// including its name and ending in CRLF ("Authentication-Results:
	// mx.example; spf=pass ...\r\n"). Empty adds nothing. It must not hold a
	// bare CR or LF (continuation lines are CRLF followed by whitespace).
	Header string
	// Reject refuses the message with 550 5.7.1: the configured policy
	// enforces a DMARC p=reject (or another rule) that the message failed.
	Reject bool
	// RejectReason is a short, client-safe text for the 550 reply.
	RejectReason string
}

// Filter is an optional ability of an Authenticator: Stored returns the
// message as it must be stored, given the message as received (e.g.
// without Authentication-Results fields that forge our authserv-id, RFC
// 8601 §5). Ingest applies it after Check, so Check sees the message the
// sender signed and the stored object carries only our own results.
type Filter interface {
	Stored(msg io.Reader) io.Reader
}

// Nop accepts everything and adds no header. It is for tests and
// deployments that do not evaluate sender authentication.
type Nop struct{}

// Check implements Authenticator.
func (Nop) Check(context.Context, CheckInput) (Result, error) { return Result{}, nil }

var _ Authenticator = Nop{}
