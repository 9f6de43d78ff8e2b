package msgauth

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"
)

// Options configure a Verifier. New copies them; they are not changed later.
type Options struct {
	// AuthServID names this receiving host in Authentication-Results
	// (RFC 8601 §2.5), usually its host name. Required.
	AuthServID string
	// Resolver answers every DNS question. Nil means the system resolver.
	Resolver Resolver
	// MaxHeaderBytes bounds the header block held in memory. Zero means
	// 1 MiB.
	MaxHeaderBytes int
	// MaxSignatures bounds how many DKIM signatures are verified; the rest
	// are ignored (each costs a DNS query and a hash pass). Zero means 8.
	MaxSignatures int
	// Percent returns a number in [0, 100) for DMARC pct= sampling
	// (RFC 7489 §6.6.4). Nil means a pseudo-random one; tests inject a
	// fixed value.
	Percent func() int
}

// Validate reports every problem with the options at once.
func (o Options) Validate() error {
	var errs []error
	switch {
	case o.AuthServID == "":
		errs = append(errs, errors.New("msgauth: AuthServID is required"))
	case !isToken(o.AuthServID):
		errs = append(errs, fmt.Errorf("msgauth: AuthServID %q is not a token (RFC 8601 §2.2)", o.AuthServID))
	}
	if o.MaxHeaderBytes < 0 {
		errs = append(errs, errors.New("msgauth: MaxHeaderBytes is negative"))
	}
	if o.MaxSignatures < 0 {
		errs = append(errs, errors.New("msgauth: MaxSignatures is negative"))
	}
	return errors.Join(errs...)
}

// Verifier checks SPF, DKIM and DMARC. It is safe for concurrent use.
type Verifier struct {
	authservID string
	resolver   Resolver
	maxHeader  int
	maxSigs    int
	percent    func() int
}

// New returns a Verifier for opts, or the errors of opts.Validate.
func New(opts Options) (*Verifier, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	v := &Verifier{
		authservID: opts.AuthServID,
		resolver:   opts.Resolver,
		maxHeader:  opts.MaxHeaderBytes,
		maxSigs:    opts.MaxSignatures,
		percent:    opts.Percent,
	}
	if v.resolver == nil {
		v.resolver = net.DefaultResolver
	}
	if v.maxHeader == 0 {
		v.maxHeader = 1 << 20
	}
	if v.maxSigs == 0 {
		v.maxSigs = 8
	}
	if v.percent == nil {
		v.percent = func() int { return rand.IntN(100) }
	}
	return v, nil
}

// AuthServID returns the authserv-id this verifier writes.
func (v *Verifier) AuthServID() string { return v.authservID }

// DKIMResult is the outcome for one DKIM-Signature field.
type DKIMResult struct {
	// Result is "pass", "fail" (the signature or body hash does not
	// verify), "permerror" (malformed signature, missing or bad key),
	// "temperror" (DNS failure).
	Result string
	// Domain (d=, the SDID) and Identifier (i=, the AUID), Selector (s=),
	// Algorithm (a=) as the signature states them.
	Domain     string
	Identifier string
	Selector   string
	Algorithm  string
	// BPrefix is the start of the b= value, to tell signatures apart in
	// Authentication-Results (RFC 6008).
	BPrefix string
	// Err explains a result other than pass, for logs only.
	Err error
}

// DMARC results and policies.
const (
	DMARCNone      = "none"
	DMARCPass      = "pass"
	DMARCFail      = "fail"
	DMARCTempError = "temperror"
	DMARCPermError = "permerror"

	PolicyNone       = "none"
	PolicyQuarantine = "quarantine"
	PolicyReject     = "reject"
)

// DMARCResult is the DMARC evaluation of the message (RFC 7489 §6.6).
type DMARCResult struct {
	// Result is "none" (no record), "pass", "fail", "temperror" or
	// "permerror" (no usable From: domain, or a malformed record).
	Result string
	// Domain is the From: domain that was evaluated (header.from).
	Domain string
	// RecordDomain is where the record was found: Domain itself or its
	// organizational domain.
	RecordDomain string
	// Policy is what the domain owner asks for on failure: p=, or sp= when
	// the record came from the organizational domain of a subdomain
	// (RFC 7489 §6.6.3). Empty without a record.
	Policy string
	// Percent is the record's pct= (100 when absent).
	Percent int
	// Disposition is the policy to apply to this message: Policy when it
	// failed and was sampled by pct=, the next milder policy when it was
	// not (§6.6.4), "none" otherwise.
	Disposition string
	// SPFAligned and DKIMAligned tell which authenticated identifier, if
	// any, matched the From: domain under the record's aspf=/adkim=.
	SPFAligned  bool
	DKIMAligned bool
	// Err explains a result other than pass or none, for logs only.
	Err error
}

// Result is the outcome of Verify.
type Result struct {
	// Header is the complete Authentication-Results field, name, folding
	// and final CRLF included, ready to prepend to the message.
	Header string
	SPF    SPFResult
	// DKIM has one entry per verified signature, in header order; empty
	// for an unsigned message.
	DKIM  []DKIMResult
	DMARC DMARCResult
}

// Reject reports whether the message failed DMARC and the policy to apply is
// reject. The caller answers 550 5.7.1 if its configuration says to honour
// it.
func (r Result) Reject() bool {
	return r.DMARC.Result == DMARCFail && r.DMARC.Disposition == PolicyReject
}

// Quarantine reports whether the message failed DMARC and the policy to apply
// is quarantine (deliver to junk).
func (r Result) Quarantine() bool {
	return r.DMARC.Result == DMARCFail && r.DMARC.Disposition == PolicyQuarantine
}

// errRecorder remembers a read error from the message, to tell a broken
// input stream (the caller's problem) from a malformed message (a result).
type errRecorder struct {
	r   io.Reader
	err error
}

func (e *errRecorder) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) && e.err == nil {
		e.err = err
	}
	return n, err
}

// Verify checks the DKIM signatures of msg, evaluates DMARC with them and
// spf (from CheckSPF at MAIL FROM), and builds the Authentication-Results
// field. msg is the message as received (CRLF line ends); Verify reads it to
// the end, holding only the header block in memory, so it can be fed from
// an io.TeeReader or io.Pipe while the message streams elsewhere.
//
// Authentication failures are results, not errors. The error is non-nil
// only when msg could not be read or its header block exceeds
// MaxHeaderBytes (ErrHeaderTooLarge); then there is no Result.
func (v *Verifier) Verify(ctx context.Context, msg io.Reader, spf SPFResult) (Result, error) {
	rec := &errRecorder{r: msg}
	br := bufio.NewReaderSize(rec, 32<<10)
	block, err := readHeaderBlock(br, v.maxHeader)
	if err != nil {
		return Result{}, fmt.Errorf("msgauth: read header: %w", err)
	}
	var sigs, froms []string
	for _, f := range splitFields(block) {
		switch {
		case strings.EqualFold(f.name, "DKIM-Signature"):
			sigs = append(sigs, f.value)
		case strings.EqualFold(f.name, "From"):
			froms = append(froms, f.value)
		}
	}

	dkims := v.verifyDKIM(ctx, block, br, sigs)
	// Read to the end whatever DKIM consumed, so that a tee'd copy is whole.
	if _, err := io.Copy(io.Discard, br); err != nil {
		return Result{}, fmt.Errorf("msgauth: read message: %w", err)
	}
	if rec.err != nil {
		return Result{}, fmt.Errorf("msgauth: read message: %w", rec.err)
	}
	res := Result{
		SPF:   spf,
		DKIM:  dkims,
		DMARC: v.evalDMARC(ctx, froms, spf, dkims),
	}
	res.Header = v.formatHeader(res)
	return res, nil
}

func (v *Verifier) verifyDKIM(ctx context.Context, block []byte, body io.Reader, sigs []string) []DKIMResult {
	if len(sigs) == 0 {
		return nil
	}
	if len(sigs) > v.maxSigs {
		sigs = sigs[:v.maxSigs]
	}
	out := make([]DKIMResult, len(sigs))
	for i, s := range sigs {
		tags := dkimTags(s)
		out[i] = DKIMResult{
			Domain:     normalizeDomain(tags["d"]),
			Identifier: tags["i"],
			Selector:   tags["s"],
			Algorithm:  tags["a"],
			BPrefix:    truncate(tags["b"], 8),
		}
	}
	verifs, err := dkim.VerifyWithOptions(io.MultiReader(bytes.NewReader(block), body), &dkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) {
			return v.resolver.LookupTXT(ctx, name)
		},
		MaxVerifications: v.maxSigs,
	})
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		// The message itself did not parse (a read error of msg is
		// reported by Verify): no signature can verify.
		for i := range out {
			out[i].Result = "permerror"
			out[i].Err = err
		}
		return out
	}
	for i := range out {
		if i >= len(verifs) {
			out[i].Result = "permerror"
			out[i].Err = errors.New("msgauth: signature not verified")
			continue
		}
		vf := verifs[i]
		if vf.Domain != "" {
			out[i].Domain = normalizeDomain(vf.Domain)
		}
		if vf.Identifier != "" {
			out[i].Identifier = vf.Identifier
		}
		switch {
		case vf.Err == nil:
			out[i].Result = "pass"
		case dkim.IsTempFail(vf.Err):
			out[i].Result = "temperror"
		case dkim.IsPermFail(vf.Err):
			out[i].Result = "permerror"
		default:
			out[i].Result = "fail"
		}
		out[i].Err = vf.Err
	}
	return out
}

// evalDMARC applies RFC 7489 §6.6 to every author domain and keeps the
// worst outcome.
func (v *Verifier) evalDMARC(ctx context.Context, froms []string, spf SPFResult, dkims []DKIMResult) DMARCResult {
	if len(froms) == 0 {
		return DMARCResult{Result: DMARCPermError, Err: errors.New("msgauth: message has no From field")}
	}
	domains, err := authorDomains(froms)
	if err != nil {
		return DMARCResult{Result: DMARCPermError, Err: fmt.Errorf("msgauth: %w", err)}
	}
	var worst DMARCResult
	for i, d := range domains {
		r := v.evalDomain(ctx, d, spf, dkims)
		if i == 0 || dmarcSeverity(r) > dmarcSeverity(worst) {
			worst = r
		}
	}
	return worst
}

func dmarcSeverity(r DMARCResult) int {
	switch r.Result {
	case DMARCFail:
		switch r.Disposition {
		case PolicyReject:
			return 7
		case PolicyQuarantine:
			return 6
		}
		return 5
	case DMARCTempError:
		return 4
	case DMARCPermError:
		return 3
	case DMARCNone:
		return 2
	}
	return 1 // pass
}

func (v *Verifier) evalDomain(ctx context.Context, domain string, spf SPFResult, dkims []DKIMResult) DMARCResult {
	res := DMARCResult{Domain: domain}
	org := orgDomain(domain)
	rec, recDomain, err := v.lookupDMARC(ctx, domain)
	if err == nil && rec == nil && org != domain {
		rec, recDomain, err = v.lookupDMARC(ctx, org)
	}
	var temp dmarcTempError
	switch {
	case errors.As(err, &temp):
		res.Result = DMARCTempError
		res.Err = err
		return res
	case err != nil:
		res.Result = DMARCPermError
		res.Err = err
		return res
	case rec == nil:
		res.Result = DMARCNone
		return res
	}
	res.RecordDomain = recDomain
	res.Policy = string(rec.Policy)
	if recDomain != domain && rec.SubdomainPolicy != "" {
		res.Policy = string(rec.SubdomainPolicy)
	}
	res.Percent = 100
	if rec.Percent != nil {
		res.Percent = *rec.Percent
	}

	// RFC 7489 §3.1: an identifier aligns with the author domain if equal
	// (strict) or sharing its organizational domain (relaxed, the default).
	aligned := func(id string, mode dmarc.AlignmentMode) bool {
		if id == "" {
			return false
		}
		if mode == dmarc.AlignmentStrict {
			return id == domain
		}
		return orgDomain(id) == org
	}
	res.SPFAligned = spf.Result == SPFPass && aligned(spf.Domain, rec.SPFAlignment)
	for _, d := range dkims {
		if d.Result == "pass" && aligned(d.Domain, rec.DKIMAlignment) {
			res.DKIMAligned = true
			break
		}
	}
	if res.SPFAligned || res.DKIMAligned {
		res.Result = DMARCPass
		res.Disposition = PolicyNone
		return res
	}
	res.Result = DMARCFail
	res.Err = errors.New("msgauth: no aligned SPF or DKIM identifier passed")
	res.Disposition = res.Policy
	if res.Percent < 100 && v.percent() >= res.Percent {
		// §6.6.4: not sampled, so the next milder policy applies.
		switch res.Policy {
		case PolicyReject:
			res.Disposition = PolicyQuarantine
		case PolicyQuarantine:
			res.Disposition = PolicyNone
		}
	}
	return res
}

// lookupDMARC fetches and parses the DMARC record of domain. A missing
// record is (nil, "", nil); a DNS failure is a dmarc temporary error.
func (v *Verifier) lookupDMARC(ctx context.Context, domain string) (*dmarc.Record, string, error) {
	var dnsErr error
	rec, err := dmarc.LookupWithOptions(domain, &dmarc.LookupOptions{
		LookupTXT: func(name string) ([]string, error) {
			txts, err := v.resolver.LookupTXT(ctx, name)
			var de *net.DNSError
			if err != nil && !(errors.As(err, &de) && de.IsNotFound) {
				dnsErr = err
			}
			return txts, err
		},
	})
	switch {
	case errors.Is(err, dmarc.ErrNoPolicy):
		return nil, "", nil
	case dnsErr != nil:
		// Every DNS failure is temporary for us, even one the library
		// does not classify so (lesson 21: a DNS error is temporary).
		return nil, "", dmarcTempError{dnsErr}
	case err != nil:
		return nil, "", fmt.Errorf("msgauth: DMARC record of %s: %w", domain, err)
	}
	return rec, domain, nil
}

// orgDomain returns the organizational domain (RFC 7489 §3.2): the public
// suffix plus one label, or domain itself when it is a public suffix.
func orgDomain(domain string) string {
	org, err := publicsuffix.EffectiveTLDPlusOne(domain)
	if err != nil {
		return domain
	}
	return org
}

type dmarcTempError struct{ err error }

func (e dmarcTempError) Error() string { return "msgauth: DMARC lookup: " + e.err.Error() }
func (e dmarcTempError) Unwrap() error { return e.err }

// formatHeader renders the results for Result.Header.
func (v *Verifier) formatHeader(res Result) string {
	var infos []resinfo

	spfInfo := resinfo{method: "spf", result: res.SPF.Result}
	if spfInfo.result == "" {
		spfInfo.result = SPFNone
	}
	if res.SPF.MailFrom != "" {
		spfInfo.props = appendProp(spfInfo.props, "smtp.mailfrom", res.SPF.MailFrom)
	} else if res.SPF.HELO != "" {
		spfInfo.props = appendProp(spfInfo.props, "smtp.helo", res.SPF.HELO)
	}
	infos = append(infos, spfInfo)

	if len(res.DKIM) == 0 {
		infos = append(infos, resinfo{method: "dkim", result: "none"})
	}
	for _, d := range res.DKIM {
		ri := resinfo{method: "dkim", result: d.Result}
		if d.Result != "pass" && d.Err != nil {
			ri.reason = strings.TrimPrefix(d.Err.Error(), "dkim: ")
		}
		ri.props = appendProp(ri.props, "header.d", d.Domain)
		ri.props = appendProp(ri.props, "header.i", d.Identifier)
		ri.props = appendProp(ri.props, "header.s", d.Selector)
		ri.props = appendProp(ri.props, "header.a", d.Algorithm)
		ri.props = appendProp(ri.props, "header.b", d.BPrefix)
		infos = append(infos, ri)
	}

	dm := resinfo{method: "dmarc", result: res.DMARC.Result}
	if res.DMARC.Policy != "" {
		dm.comment = "p=" + res.DMARC.Policy
		if res.DMARC.Percent != 100 {
			dm.comment += " pct=" + strconv.Itoa(res.DMARC.Percent)
		}
		if res.DMARC.Disposition != "" {
			dm.comment += " dis=" + res.DMARC.Disposition
		}
	}
	dm.props = appendProp(dm.props, "header.from", res.DMARC.Domain)
	infos = append(infos, dm)

	return formatAuthResults(v.authservID, infos)
}

// appendProp adds a property if its cleaned value is present and short
// enough to keep the field within line limits; an overlong value (a hostile
// client's HELO, say) is better left out than cut into something else.
//
// A value with ";" is left out too: it is legal in a quoted-string, but
// common parsers (go-msgauth's authres among them) split the field on every
// ";", and only a hostile sender would put one there.
func appendProp(props []prop, name, value string) []prop {
	value = cleanValue(value)
	if value == "" || len(value) > 254 || strings.Contains(value, ";") {
		return props
	}
	return append(props, prop{name, value})
}
