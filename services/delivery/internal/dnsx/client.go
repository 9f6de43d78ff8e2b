package dnsx

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Client queries one recursive DNS server (host:port) directly.
// The zero value is not usable: Server is required.
type Client struct {
	// Server is the recursive resolver, host:port.
	Server string
	// Timeout bounds each UDP or TCP exchange; 0 means 5 seconds.
	Timeout time.Duration
	// Attempts is how many times a UDP query is sent before the look-up
	// fails as temporary; 0 means 2.
	Attempts int
}

var _ Resolver = (*Client)(nil)

// udpSize is the EDNS0 buffer size: 1232 octets avoids IP fragmentation
// (DNS flag day 2020); larger answers come back truncated and are fetched
// over TCP.
const udpSize = 1232

func (c *Client) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return 5 * time.Second
}

// exchange sends one query and classifies the outcome. It returns the
// answer section only when the server answered NOERROR.
func (c *Client) exchange(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	typ := dns.TypeToString[qtype]
	if c.Server == "" {
		return nil, &Error{Name: name, Type: typ, Kind: Temporary, Err: errors.New("no DNS server configured")}
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	m.SetEdns0(udpSize, false)

	attempts := c.Attempts
	if attempts <= 0 {
		attempts = 2
	}
	var (
		resp *dns.Msg
		err  error
	)
	udp := &dns.Client{Net: "udp", Timeout: c.timeout(), UDPSize: udpSize}
	for range attempts {
		resp, _, err = udp.ExchangeContext(ctx, m, c.Server)
		if err == nil || ctx.Err() != nil {
			break
		}
	}
	if err == nil && resp.Truncated {
		// RFC 7766 §5: a truncated UDP answer is retried over TCP.
		tcp := &dns.Client{Net: "tcp", Timeout: c.timeout()}
		resp, _, err = tcp.ExchangeContext(ctx, m, c.Server)
	}
	if err != nil {
		return nil, &Error{Name: name, Type: typ, Kind: Temporary, Err: fmt.Errorf("query %s: %w", c.Server, err)}
	}
	switch resp.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return nil, &Error{Name: name, Type: typ, Kind: NXDomain, Rcode: dns.RcodeToString[resp.Rcode]}
	default:
		return nil, &Error{Name: name, Type: typ, Kind: Temporary, Rcode: dns.RcodeToString[resp.Rcode]}
	}
	// Keep only records of the asked type: a recursive server puts the
	// CNAME chain in the answer too.
	var out []dns.RR
	for _, rr := range resp.Answer {
		if rr.Header().Rrtype == qtype {
			out = append(out, rr)
		}
	}
	if len(out) == 0 {
		return nil, &Error{Name: name, Type: typ, Kind: NoData}
	}
	return out, nil
}

// LookupMX implements Resolver.
func (c *Client) LookupMX(ctx context.Context, name string) ([]MX, error) {
	rrs, err := c.exchange(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	out := make([]MX, 0, len(rrs))
	for _, rr := range rrs {
		mx := rr.(*dns.MX)
		out = append(out, MX{Host: normalizeHost(mx.Mx), Pref: mx.Preference})
	}
	return out, nil
}

// LookupA implements Resolver.
func (c *Client) LookupA(ctx context.Context, name string) ([]netip.Addr, error) {
	rrs, err := c.exchange(ctx, name, dns.TypeA)
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(rrs))
	for _, rr := range rrs {
		if a, ok := netip.AddrFromSlice(rr.(*dns.A).A.To4()); ok {
			out = append(out, a)
		}
	}
	return out, nil
}

// LookupAAAA implements Resolver.
func (c *Client) LookupAAAA(ctx context.Context, name string) ([]netip.Addr, error) {
	rrs, err := c.exchange(ctx, name, dns.TypeAAAA)
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(rrs))
	for _, rr := range rrs {
		if a, ok := netip.AddrFromSlice(rr.(*dns.AAAA).AAAA.To16()); ok {
			out = append(out, a)
		}
	}
	return out, nil
}

// LookupTXT implements Resolver.
func (c *Client) LookupTXT(ctx context.Context, name string) ([]string, error) {
	rrs, err := c.exchange(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, strings.Join(rr.(*dns.TXT).Txt, ""))
	}
	return out, nil
}
