// Package smtpout is the outbound SMTP client transport: it carries one
// message to one recipient domain over a route from package route, and
// reports a result per recipient.
//
// It follows RFC 5321: one session carries every recipient of the domain
// (all RCPTs, then one DATA); every command has its own timeout
// (§4.5.3.2, SMTP-LESSONS 10: 5 minutes for the greeting, MAIL and RCPT,
// 3 minutes per data block, 10 minutes after the final dot); every address
// of every MX is tried before the mail is deferred (§5.1, SMTP-LESSONS 22).
// STARTTLS (RFC 3207) is used whenever offered; with the default,
// opportunistic policy (RFC 7435) a failed handshake is retried on the
// same host without TLS, while a TLSPolicy that requires TLS (MTA-STS
// RFC 8461, DANE RFC 7672, REQUIRETLS RFC 8689) never falls back
// (SMTP-LESSONS 23). SMTPUTF8 (RFC 6531) and 8BITMIME (RFC 6152) are
// honoured: a message that needs SMTPUTF8 is failed with 5.6.7 rather
// than mangled, and an 8-bit message for a peer without 8BITMIME is sent
// converted to 7-bit MIME (Message.SevenBit; SMTP-LESSONS 24). DSN parameters (RFC 3461) are passed on
// when the peer supports them. Enhanced status codes are RFC 3463's.
//
// The protocol engine is github.com/emersion/go-smtp's client. Its client
// cannot say EHLO with our name before STARTTLS, so this package reads the
// greeting, says EHLO and negotiates STARTTLS itself, then hands the
// connection to go-smtp, which says EHLO again (RFC 3207 §4.2 requires it
// after TLS; without TLS a repeated EHLO is harmless, RFC 5321 §4.1.4).
//
// The message body is read from Message.Open once per attempt and streamed
// through crlf.NewReader: it is never held in memory, and no lone CR or LF
// reaches the wire (SMTP-LESSONS 2).
//
// Sessions are reused across messages to the same host (a small pool with
// an idle timeout) and the number of concurrent sessions per destination
// domain is bounded, across replicas with Options.SharedLimit. A
// destination none of whose addresses answered is suspended for
// Options.DeadDestinationTime: its mail is deferred without connecting
// until then, or until a session to it succeeds (SMTP-LESSONS 11; across
// replicas with Options.Suspensions).
package smtpout

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/petrel-mail/petrel/services/delivery/internal/route"
)

// Message is one message for the recipients of one domain.
type Message struct {
	// From is the envelope sender; "" is the null sender <> (DSNs).
	From string
	// Recipients in RCPT order; all of the route's domain.
	Recipients []Recipient
	// UTF8: the message needs SMTPUTF8 (the client gave SMTPUTF8 with
	// MAIL FROM). Addresses with non-ASCII characters need it regardless.
	UTF8 bool
	// EightBit: the body is 8BITMIME (RFC 6152).
	EightBit bool
	// Size in octets for the SIZE parameter (RFC 1870); 0 if unknown.
	Size int64
	// DSN parameters passed on to a peer that supports DSN (RFC 3461):
	// Ret is "FULL", "HDRS" or ""; EnvID is the ENVID value.
	Ret   string
	EnvID string
	// Open returns the message (header and body) from the start. It is
	// called once per attempt that reaches DATA, so a failed attempt can
	// be repeated on the next host.
	Open func() (io.ReadCloser, error)
	// SevenBit, for an EightBit message, returns the message converted
	// to 7-bit MIME (an opener and its size), used for a peer that does
	// not announce 8BITMIME; it is called only then. An error wrapping
	// downgrade.ErrMalformed fails the recipients (5.6.3), any other
	// defers them. Nil: such a peer gets no 8-bit message (5.6.3).
	SevenBit func() (SevenBit, error)
}

// SevenBit is a message converted to 7-bit MIME.
type SevenBit struct {
	Open func() (io.ReadCloser, error)
	Size int64
}

// Recipient is one RCPT TO with its DSN parameters.
type Recipient struct {
	Address string
	// Notify: any of "NEVER", "SUCCESS", "FAILURE", "DELAY"; empty for
	// the default.
	Notify []string
	// ORCPTType ("rfc822" or "utf-8") and ORCPT, decoded.
	ORCPTType string
	ORCPT     string
}

// Status is the outcome for one recipient.
type Status int

const (
	// Temporary: try again later (4xx, or no host could be reached).
	Temporary Status = iota
	// Permanent: bounce (5xx, or the message cannot be carried).
	Permanent
	// Delivered: the remote accepted responsibility (250 after DATA).
	Delivered
)

func (s Status) String() string {
	switch s {
	case Delivered:
		return "delivered"
	case Permanent:
		return "permanent failure"
	default:
		return "temporary failure"
	}
}

// Reply is an SMTP reply as the remote sent it.
type Reply struct {
	Code int
	// Enhanced is the RFC 3463 code the reply started with, "" if none.
	Enhanced string
	// Text without the code and the enhanced code; lines separated by
	// "\n".
	Text string
}

// String is the reply on one line, as a DSN's Diagnostic-Code wants it
// ("550 5.1.1 no such user").
func (r Reply) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d", r.Code)
	if r.Enhanced != "" {
		b.WriteString(" " + r.Enhanced)
	}
	if r.Text != "" {
		b.WriteString(" " + strings.ReplaceAll(r.Text, "\n", " "))
	}
	return b.String()
}

// RecipientResult is what happened to one recipient.
type RecipientResult struct {
	Address string
	Status  Status
	// Enhanced is the RFC 3463 status code, always set: the remote's, or
	// one derived from its reply code, or ours when no reply decided.
	Enhanced string
	// Reply is the remote reply that decided the outcome; nil when no
	// remote reply did (no host reachable, local checks such as 5.6.7).
	Reply *Reply
	// RemoteMTA is the host name that gave Reply, or the last host tried.
	RemoteMTA string
	// RemoteAddr is its ip:port.
	RemoteAddr string
	// TLS reports whether the session that decided used TLS.
	TLS bool
	// Detail explains the outcome in our words (logs, and the DSN when
	// Reply is nil). Never shown to an SMTP client as-is.
	Detail string
}

// TLSMode is how a TLSPolicy wants TLS used with one host.
type TLSMode int

const (
	// TLSOpportunistic: STARTTLS when offered, certificate not checked
	// unless Config says so, plaintext if the handshake fails (RFC 7435).
	TLSOpportunistic TLSMode = iota
	// TLSRequired: STARTTLS must be offered and the handshake must succeed
	// with Config's verification; otherwise the host is skipped (4.7.x).
	TLSRequired
	// TLSDisabled: never STARTTLS with this host.
	TLSDisabled
)

// TLSRequirement is a policy's answer for one host.
type TLSRequirement struct {
	Mode TLSMode
	// Config for the handshake. nil: opportunistic skips verification,
	// required verifies against the system roots. ServerName defaults to
	// the MX host name. DANE plugs in through VerifyConnection.
	Config *tls.Config
}

// TLSPolicy decides TLS per destination and MX host: the hook where
// MTA-STS and DANE plug in. An error skips the host as a temporary failure
// (e.g. an MX that an MTA-STS policy does not list).
type TLSPolicy interface {
	TLSFor(ctx context.Context, domain string, host route.Host) (TLSRequirement, error)
}

// Opportunistic is the default TLSPolicy: TLSOpportunistic for every host.
type Opportunistic struct{}

// TLSFor implements TLSPolicy.
func (Opportunistic) TLSFor(context.Context, string, route.Host) (TLSRequirement, error) {
	return TLSRequirement{Mode: TLSOpportunistic}, nil
}

// Dialer opens TCP connections; *net.Dialer is one.
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// localSuspensions are the suspended destinations of one process.
type localSuspensions struct {
	mu sync.Mutex
	m  map[string]localSuspension
}

type localSuspension struct {
	reason string
	until  time.Time
}

func (l *localSuspensions) Suspended(dest string) (string, time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	v, ok := l.m[strings.ToLower(dest)]
	if !ok || !time.Now().Before(v.until) {
		return "", time.Time{}, false
	}
	return v.reason, v.until, true
}

func (l *localSuspensions) Suspend(_ context.Context, dest, reason string, until time.Time) error {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, v := range l.m {
		if !now.Before(v.until) {
			delete(l.m, k)
		}
	}
	l.m[strings.ToLower(dest)] = localSuspension{reason: reason, until: until}
	return nil
}

func (l *localSuspensions) Resume(_ context.Context, dest string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, strings.ToLower(dest))
	return nil
}
