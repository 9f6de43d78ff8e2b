// Package dnsx is the DNS resolver the delivery service uses for outbound
// routing (MX, A, AAAA) and for DKIM/MTA-STS/DANE look-ups (TXT).
//
// It exists because routing has to tell apart two kinds of failure that the
// standard library folds together: a name that does not exist or has no
// records of the asked type (NXDOMAIN or NOERROR/no data, RFC 2308) is an
// answer, and the mail can be bounced or routed differently (RFC 5321 §5.1,
// RFC 7505); a SERVFAIL, a refusal or a timeout is not an answer, and the
// mail must be retried later (SMTP-LESSONS 21).
//
// Two implementations: Client queries one configured DNS server with
// github.com/miekg/dns (UDP with EDNS0, TCP when the answer is truncated,
// RFC 7766), and System uses the operating system's resolver through
// net.Resolver. Tests run a real DNS server on loopback (package dnstest).
package dnsx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// MX is one mail exchanger record. Host is lower-case without the trailing
// dot, except the root, which RFC 7505 null MX uses, and which is ".".
type MX struct {
	Host string
	Pref uint16
}

// Resolver answers the look-ups delivery needs. Every method returns either
// at least one record or an error; an empty answer is an *Error of kind
// NoData, so callers never confuse "nothing" with "could not ask".
type Resolver interface {
	LookupMX(ctx context.Context, name string) ([]MX, error)
	LookupA(ctx context.Context, name string) ([]netip.Addr, error)
	LookupAAAA(ctx context.Context, name string) ([]netip.Addr, error)
	// LookupTXT returns one string per TXT record, the record's
	// character-strings concatenated (RFC 6376 §3.6.2.2, as net.LookupTXT).
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// Kind classifies a failed look-up.
type Kind int

const (
	// Temporary: SERVFAIL, REFUSED, timeout, network error, malformed
	// reply. Retry later.
	Temporary Kind = iota
	// NXDomain: the name does not exist (RCODE 3). Permanent.
	NXDomain
	// NoData: the name exists but has no record of the asked type
	// (NOERROR with an empty answer). Permanent.
	NoData
)

func (k Kind) String() string {
	switch k {
	case NXDomain:
		return "NXDOMAIN"
	case NoData:
		return "no data"
	default:
		return "temporary failure"
	}
}

// Error is the error every Resolver in this package returns.
type Error struct {
	Name  string // queried name
	Type  string // "MX", "A", "AAAA", "TXT"
	Kind  Kind
	Rcode string // DNS RCODE name when the server answered, e.g. "SERVFAIL"
	Err   error  // underlying network error, if any
}

func (e *Error) Error() string {
	s := fmt.Sprintf("dns: %s %s: %s", e.Type, e.Name, e.Kind)
	if e.Rcode != "" && e.Kind == Temporary {
		s += " (" + e.Rcode + ")"
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether asking again later may give another answer.
func (e *Error) Temporary() bool { return e.Kind == Temporary }

// IsNotFound reports whether err says authoritatively that there is no
// record: NXDOMAIN or no data. Any other error, including one that is not
// an *Error, is treated as temporary.
func IsNotFound(err error) bool {
	var de *Error
	return errors.As(err, &de) && de.Kind != Temporary
}

// IsNXDomain reports whether err says the name does not exist.
func IsNXDomain(err error) bool {
	var de *Error
	return errors.As(err, &de) && de.Kind == NXDomain
}

// IsNoData reports whether err says the name exists without records of the
// asked type.
func IsNoData(err error) bool {
	var de *Error
	return errors.As(err, &de) && de.Kind == NoData
}

// IsTemporary reports whether err is not an authoritative negative answer.
func IsTemporary(err error) bool { return err != nil && !IsNotFound(err) }

// normalizeHost lower-cases a DNS name and drops the trailing dot, keeping
// the root as ".".
func normalizeHost(h string) string {
	if h == "." || h == "" {
		return "."
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

// System resolves through net.Resolver (the operating system's
// configuration). The standard library cannot tell NXDOMAIN from no data,
// so both come back as NXDomain.
type System struct {
	// Resolver is used when not nil, else net.DefaultResolver.
	Resolver *net.Resolver
}

var _ Resolver = System{}

func (s System) r() *net.Resolver {
	if s.Resolver != nil {
		return s.Resolver
	}
	return net.DefaultResolver
}

func systemErr(name, typ string, err error) error {
	var de *net.DNSError
	if errors.As(err, &de) && de.IsNotFound {
		return &Error{Name: name, Type: typ, Kind: NXDomain, Err: err}
	}
	return &Error{Name: name, Type: typ, Kind: Temporary, Err: err}
}

// LookupMX implements Resolver.
func (s System) LookupMX(ctx context.Context, name string) ([]MX, error) {
	recs, err := s.r().LookupMX(ctx, name)
	if err != nil {
		return nil, systemErr(name, "MX", err)
	}
	if len(recs) == 0 {
		return nil, &Error{Name: name, Type: "MX", Kind: NoData}
	}
	out := make([]MX, 0, len(recs))
	for _, r := range recs {
		out = append(out, MX{Host: normalizeHost(r.Host), Pref: r.Pref})
	}
	return out, nil
}

func (s System) lookupIP(ctx context.Context, network, typ, name string) ([]netip.Addr, error) {
	addrs, err := s.r().LookupNetIP(ctx, network, name)
	if err != nil {
		return nil, systemErr(name, typ, err)
	}
	if len(addrs) == 0 {
		return nil, &Error{Name: name, Type: typ, Kind: NoData}
	}
	for i, a := range addrs {
		addrs[i] = a.Unmap()
	}
	return addrs, nil
}

// LookupA implements Resolver.
func (s System) LookupA(ctx context.Context, name string) ([]netip.Addr, error) {
	return s.lookupIP(ctx, "ip4", "A", name)
}

// LookupAAAA implements Resolver.
func (s System) LookupAAAA(ctx context.Context, name string) ([]netip.Addr, error) {
	return s.lookupIP(ctx, "ip6", "AAAA", name)
}

// LookupTXT implements Resolver.
func (s System) LookupTXT(ctx context.Context, name string) ([]string, error) {
	txts, err := s.r().LookupTXT(ctx, name)
	if err != nil {
		return nil, systemErr(name, "TXT", err)
	}
	if len(txts) == 0 {
		return nil, &Error{Name: name, Type: "TXT", Kind: NoData}
	}
	return txts, nil
}
