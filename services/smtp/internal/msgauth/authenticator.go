package msgauth

import (
	"context"
	"io"

	"github.com/petrel-mail/petrel/services/smtp/internal/authcheck"
)

// Authenticator adapts a Verifier to authcheck.Authenticator, the seam the
// ingest path calls for inbound mail at the end of DATA. It checks SPF there
// too (same client IP, HELO and MAIL FROM, so the same answer as at MAIL
// FROM time), verifies DKIM, evaluates DMARC and returns the header.
type Authenticator struct {
	Verifier *Verifier
	// RejectDMARC refuses (550 5.7.1) messages that fail DMARC when the
	// policy to apply is reject. Off, such mail is accepted and the
	// failure is only recorded in Authentication-Results.
	RejectDMARC bool
}

var (
	_ authcheck.Authenticator = Authenticator{}
	_ authcheck.Filter        = Authenticator{}
)

// Stored implements authcheck.Filter: incoming Authentication-Results
// fields claiming our authserv-id are forgeries and are removed (RFC 8601
// §5).
func (a Authenticator) Stored(msg io.Reader) io.Reader { return a.Verifier.StripOwnResults(msg) }

// Check implements authcheck.Authenticator. It reads in.Message to the end.
func (a Authenticator) Check(ctx context.Context, in authcheck.CheckInput) (authcheck.Result, error) {
	spf := a.Verifier.CheckSPF(ctx, in.ClientIP, in.HELO, in.MailFrom)
	res, err := a.Verifier.Verify(ctx, in.Message, spf)
	if err != nil {
		return authcheck.Result{}, err
	}
	out := authcheck.Result{Header: res.Header}
	if a.RejectDMARC && res.Reject() {
		out.Reject = true
		// The domain passed isDomainName: safe to show the client.
		out.RejectReason = "Message rejected by the DMARC policy of " + res.DMARC.Domain
	}
	return out, nil
}
