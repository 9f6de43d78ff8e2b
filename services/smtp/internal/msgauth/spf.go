package msgauth

import (
	"context"
	"net"
	"net/netip"
	"strings"

	"blitiri.com.ar/go/spf"
)

// SPFResult is the outcome of CheckSPF, to be handed to Verify at the end
// of DATA.
type SPFResult struct {
	// Result is one of the RFC 7208 §2.6 results: "none", "neutral",
	// "pass", "fail", "softfail", "temperror", "permerror".
	Result string
	// Domain is the identity that was checked: the MAIL FROM domain, or the
	// HELO name for the null sender (RFC 7208 §2.4). DMARC aligns it with
	// the From: domain when Result is "pass". Lower case, no trailing dot.
	Domain string
	// MailFrom and HELO are the envelope values as given (cleaned of
	// control characters), for the Authentication-Results field.
	MailFrom string
	HELO     string
	// Err explains the result, for logs only: never send it to a client.
	Err error
}

// SPF results, RFC 7208 §2.6.
const (
	SPFNone      = string(spf.None)
	SPFNeutral   = string(spf.Neutral)
	SPFPass      = string(spf.Pass)
	SPFFail      = string(spf.Fail)
	SPFSoftFail  = string(spf.SoftFail)
	SPFTempError = string(spf.TempError)
	SPFPermError = string(spf.PermError)
)

// CheckSPF evaluates the SPF record of the MAIL FROM domain for the client
// address ip (RFC 7208 §4); for the null sender (mailFrom "") it checks the
// HELO identity instead, as postmaster@helo (§2.4). Call it when MAIL FROM
// arrives, with the real client IP (after any PROXY header).
func (v *Verifier) CheckSPF(ctx context.Context, ip netip.Addr, helo, mailFrom string) SPFResult {
	helo = cleanValue(helo)
	mailFrom = cleanValue(mailFrom)
	res := SPFResult{MailFrom: mailFrom, HELO: helo}

	sender := mailFrom
	if mailFrom == "" {
		sender = "postmaster@" + helo
	}
	at := strings.LastIndexByte(sender, '@')
	if at < 0 || strings.Count(sender, "@") > 1 {
		// No domain to check, or a quoted local part holding "@" that the
		// SPF library would split in the wrong place: no SPF identity.
		res.Result = SPFNone
		res.Err = errNoSPFIdentity
		return res
	}
	domain := normalizeDomain(sender[at+1:])
	if !isDomainName(domain) {
		// An address literal or garbage: RFC 7208 §4.3, no identity, none.
		res.Result = SPFNone
		res.Err = errNoSPFIdentity
		return res
	}
	res.Domain = domain
	if !ip.IsValid() {
		res.Result = SPFPermError
		res.Err = spf.ErrInvalidIPAddress
		return res
	}

	r, err := spf.CheckHostWithSender(net.IP(ip.Unmap().AsSlice()), helo, sender[:at+1]+domain,
		spf.WithContext(ctx),
		spf.WithResolver(v.resolver),
	)
	res.Result = string(r)
	if r != spf.Pass {
		res.Err = err
	}
	return res
}
