// Package msgauth authenticates inbound mail for the SMTP ingress service:
// SPF at MAIL FROM time, DKIM signature verification and DMARC evaluation at
// the end of DATA, and the Authentication-Results header field that records
// them for the mailbox owner.
//
// It follows RFC 7208 (SPF), RFC 6376 and RFC 8301/8463 (DKIM, through
// github.com/emersion/go-msgauth), RFC 7489 (DMARC, with the organizational
// domain taken from the public suffix list), RFC 8601 (Authentication-Results)
// and RFC 6008 (header.b).
//
// Use:
//
//	v, err := msgauth.New(msgauth.Options{
//		AuthServID: "mx.example.net",
//		Resolver:   msgauth.NewResolver(cfg.DNSServer, 5*time.Second),
//	})
//	spfRes := v.CheckSPF(ctx, clientIP, heloName, mailFrom) // at MAIL FROM
//	res, err := v.Verify(ctx, message, spfRes)          // at end of data
//	// prepend res.Header; if policy says so and res.Reject(): 550 5.7.1
//
// Authenticator wraps a Verifier as the authcheck.Authenticator that the
// ingest path calls at the end of DATA.
//
// Every DNS lookup, by SPF, DKIM and DMARC alike, goes through one Resolver,
// so that tests (and operators) can point them at a DNS server of their own.
// A DNS failure is always a temperror, never a fail: a broken resolver must
// not make us reject good mail.
//
// Verification streams: only the header block (bounded by
// Options.MaxHeaderBytes) is held in memory; the body is hashed as it is
// read, whatever its size.
//
// Incoming Authentication-Results fields that claim our authserv-id are
// forgeries (RFC 8601 §5); the caller removes them from the stored message
// with Verifier.StripOwnResults (or ClaimsAuthServID when it rewrites the
// header block itself).
package msgauth
