package msgauth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Resolver answers the DNS questions SPF, DKIM and DMARC ask. It is the
// method set of *net.Resolver (and of spf.DNSResolver), so the system
// resolver is one.
//
// Errors must be *net.DNSError values, not wrapped: the SPF and DKIM
// libraries tell "no such record" (IsNotFound) from a temporary failure
// (Temporary()) by type assertion, and that difference is the difference
// between none/permerror and temperror.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupAddr(ctx context.Context, addr string) ([]string, error)
}

var (
	_ Resolver = (*net.Resolver)(nil)
	_ Resolver = (*DNSResolver)(nil)
)

// NewResolver returns a resolver that asks the DNS server at server
// ("host:port", or "host" for port 53), or the system resolver when server
// is empty. timeout bounds each query attempt; zero means 5 seconds.
func NewResolver(server string, timeout time.Duration) Resolver {
	if server == "" {
		return net.DefaultResolver
	}
	return NewDNSResolver(server, timeout)
}

// DNSResolver sends queries to one configured DNS server: over UDP with
// EDNS0, retried once on timeout, and again over TCP when the answer comes
// back truncated (RFC 1035 §4.2.1, RFC 7766). It sets RD so the server may
// be a recursive resolver (a local unbound, say) or, in tests, an
// authoritative server for a test zone.
type DNSResolver struct {
	server  string
	timeout time.Duration
	udp     *dns.Client
	tcp     *dns.Client
}

// ednsSize is the DNS flag day 2020 recommendation: no IP fragmentation.
const ednsSize = 1232

// NewDNSResolver returns a resolver for the DNS server at server ("host:port"
// or "host"). timeout bounds each query attempt; zero means 5 seconds.
func NewDNSResolver(server string, timeout time.Duration) *DNSResolver {
	if _, _, err := net.SplitHostPort(server); err != nil {
		server = net.JoinHostPort(strings.Trim(server, "[]"), "53")
	}
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return &DNSResolver{
		server:  server,
		timeout: timeout,
		udp:     &dns.Client{Net: "udp", Timeout: timeout, UDPSize: ednsSize},
		tcp:     &dns.Client{Net: "tcp", Timeout: timeout},
	}
}

// Server returns the address queries are sent to.
func (r *DNSResolver) Server() string { return r.server }

// query returns the answer records of type qtype for name, following the
// answer section as given (a recursive server includes any CNAME chain). An
// NXDOMAIN or an empty answer is IsNotFound, as with the system resolver;
// any other failure is temporary.
func (r *DNSResolver) query(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	fqdn := dns.Fqdn(name)
	if _, ok := dns.IsDomainName(fqdn); !ok {
		return nil, &net.DNSError{Err: "invalid domain name", Name: name, IsNotFound: true}
	}
	m := new(dns.Msg)
	m.SetQuestion(fqdn, qtype)
	m.RecursionDesired = true
	m.SetEdns0(ednsSize, false)

	var resp *dns.Msg
	var err error
	// One retry over UDP: a single lost datagram should not turn a pass
	// into a temperror.
	for attempt := 0; attempt < 2; attempt++ {
		resp, _, err = r.udp.ExchangeContext(ctx, m, r.server)
		if err == nil || ctx.Err() != nil || !isTimeout(err) {
			break
		}
	}
	if err == nil && resp.Truncated {
		resp, _, err = r.tcp.ExchangeContext(ctx, m, r.server)
	}
	if err != nil {
		msg := "query failed"
		if isTimeout(err) {
			msg = "timeout"
		}
		return nil, &net.DNSError{
			Err:         msg,
			UnwrapErr:   fmt.Errorf("query %s %s at %s: %w", dns.TypeToString[qtype], fqdn, r.server, err),
			Name:        name,
			IsTimeout:   isTimeout(err),
			IsTemporary: true,
		}
	}
	switch resp.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	default:
		// SERVFAIL, REFUSED and the rest: the answer is unknown, not absent.
		return nil, &net.DNSError{
			Err:         "server answered " + dns.RcodeToString[resp.Rcode],
			Name:        name,
			IsTemporary: true,
		}
	}
	var rrs []dns.RR
	for _, rr := range resp.Answer {
		if rr.Header().Rrtype == qtype {
			rrs = append(rrs, rr)
		}
	}
	if len(rrs) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	return rrs, nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// LookupTXT returns the TXT records of name, the strings of each record
// joined as net.LookupTXT does (RFC 7208 §3.3, RFC 6376 §3.6.2.2).
func (r *DNSResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	rrs, err := r.query(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, strings.Join(rr.(*dns.TXT).Txt, ""))
	}
	return out, nil
}

// LookupMX returns the MX records of name sorted by preference.
func (r *DNSResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	rrs, err := r.query(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	out := make([]*net.MX, 0, len(rrs))
	for _, rr := range rrs {
		mx := rr.(*dns.MX)
		out = append(out, &net.MX{Host: mx.Mx, Pref: mx.Preference})
	}
	slices.SortStableFunc(out, func(a, b *net.MX) int { return int(a.Pref) - int(b.Pref) })
	return out, nil
}

// LookupIPAddr returns the A and AAAA addresses of host. If either query
// fails temporarily the whole lookup does: an SPF "a" or "mx" mechanism
// evaluated on half the addresses could fail mail that should pass.
func (r *DNSResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []net.IPAddr{{IP: ip.AsSlice(), Zone: ip.Zone()}}, nil
	}
	var out []net.IPAddr
	var notFound *net.DNSError
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		rrs, err := r.query(ctx, host, qtype)
		if err != nil {
			var de *net.DNSError
			if errors.As(err, &de) && de.IsNotFound {
				notFound = de
				continue
			}
			return nil, err
		}
		for _, rr := range rrs {
			switch rr := rr.(type) {
			case *dns.A:
				out = append(out, net.IPAddr{IP: rr.A})
			case *dns.AAAA:
				out = append(out, net.IPAddr{IP: rr.AAAA})
			}
		}
	}
	if len(out) == 0 {
		return nil, notFound
	}
	return out, nil
}

// LookupAddr returns the PTR names of addr (used by SPF's "ptr" mechanism
// and %{p} macro).
func (r *DNSResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	arpa, err := dns.ReverseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Err: "unrecognized address", Name: addr}
	}
	rrs, err := r.query(ctx, arpa, dns.TypePTR)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, rr.(*dns.PTR).Ptr)
	}
	return out, nil
}
