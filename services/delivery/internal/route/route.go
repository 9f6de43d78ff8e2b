// Package route decides where outbound mail for a recipient domain goes:
// the ordered list of hosts and addresses the SMTP client tries.
//
// It follows RFC 5321 §5.1: MX records sorted by preference, equal
// preferences in random order (load spreading), no MX falling back to the
// domain's own A/AAAA records (the implicit MX), every MX host resolved to
// all its IPv6 and IPv4 addresses, and MX records at or below our own
// preference discarded so that a backup MX never sends mail to itself.
// RFC 7505: a single MX "." (null MX) means the domain accepts no mail, a
// permanent failure with 5.1.10. A DNS error that is not an authoritative
// negative answer is temporary (SMTP-LESSONS 21). A configured smarthost
// replaces all of this: every domain routes to it.
//
// Enhanced status codes are RFC 3463's.
package route

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"golang.org/x/net/idna"

	"github.com/petrel-mail/petrel/services/delivery/internal/dnsx"
)

// Host is one SMTP server to try, with all the addresses to try it at.
type Host struct {
	// Name is the MX target, the domain itself for an implicit MX, or the
	// smarthost name: the name TLS certificates are checked against.
	Name string
	// Pref is the MX preference (0 for an implicit MX or a smarthost).
	Pref uint16
	// Addrs in the order to try them.
	Addrs []netip.Addr
	// Port is the TCP port (25 in production).
	Port int
}

// Route is where mail for one domain goes.
type Route struct {
	// Domain is the recipient domain in A-label (ASCII) form.
	Domain string
	// Hosts in the order to try them; never empty when Route succeeds.
	Hosts []Host
	// ImplicitMX is true when the domain has no MX and its own addresses
	// are used (RFC 5321 §5.1).
	ImplicitMX bool
	// Smarthost is set when the route is the configured relay.
	Smarthost *Smarthost
}

// Smarthost relays all outbound mail through one host.
type Smarthost struct {
	// Host is a DNS name or an IP address.
	Host string
	// Port: typically 587 (STARTTLS) or 465 (implicit TLS).
	Port int
	// Username and Password for AUTH PLAIN; empty Username means no AUTH.
	Username string
	Password string
	// ImplicitTLS connects with TLS from the first byte (RFC 8314);
	// otherwise STARTTLS is required. Either way TLS is never optional
	// towards a smarthost: the credentials must not travel in clear.
	ImplicitTLS bool
}

// Error is a routing failure. Status is the RFC 3463 enhanced status code;
// its first digit says whether the failure is temporary (4) or permanent (5).
type Error struct {
	Domain string
	Status string
	Msg    string
	Err    error
}

func (e *Error) Error() string {
	s := fmt.Sprintf("route %s: %s %s", e.Domain, e.Status, e.Msg)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether routing may succeed later.
func (e *Error) Temporary() bool { return strings.HasPrefix(e.Status, "4") }

// Router computes routes. Its fields are read-only once in use.
type Router struct {
	Resolver dnsx.Resolver
	// Port for MX hosts; 0 means 25. Tests use another port on 127.0.0.x.
	Port int
	// LocalAddrs are the addresses this MTA receives mail on. An MX that
	// resolves to one of them is us: RFC 5321 §5.1 loop prevention.
	LocalAddrs []netip.Addr
	// Smarthost, when set, overrides DNS routing for every domain.
	Smarthost *Smarthost
	// PreferIPv4 tries a host's IPv4 addresses before its IPv6 ones.
	PreferIPv4 bool
	// Rand orders MX records of equal preference; nil uses the global
	// source. Tests set a seeded one.
	Rand   *rand.Rand
	Logger *slog.Logger

	randMu sync.Mutex
}

func (r *Router) port() int {
	if r.Port > 0 {
		return r.Port
	}
	return 25
}

func (r *Router) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.Default()
}

func (r *Router) shuffle(mxs []dnsx.MX) {
	swap := func(i, j int) { mxs[i], mxs[j] = mxs[j], mxs[i] }
	if r.Rand == nil {
		rand.Shuffle(len(mxs), swap)
		return
	}
	r.randMu.Lock()
	defer r.randMu.Unlock()
	r.Rand.Shuffle(len(mxs), swap)
}

// Route returns the hosts to try for domain, or an *Error.
func (r *Router) Route(ctx context.Context, domain string) (Route, error) {
	if r.Smarthost != nil {
		return r.smarthost(ctx, domain)
	}
	if lit, ok, err := addressLiteral(domain); ok {
		if err != nil {
			return Route{}, &Error{Domain: domain, Status: "5.1.2", Msg: "bad address literal", Err: err}
		}
		return r.checkLoop(Route{Domain: domain, Hosts: []Host{{Name: lit.String(), Addrs: []netip.Addr{lit}, Port: r.port()}}})
	}
	ascii, err := idna.Lookup.ToASCII(strings.TrimSuffix(domain, "."))
	if err != nil || ascii == "" {
		return Route{}, &Error{Domain: domain, Status: "5.1.2", Msg: "invalid domain name", Err: err}
	}
	ascii = strings.ToLower(ascii)

	mxs, err := r.Resolver.LookupMX(ctx, ascii)
	switch {
	case err == nil:
	case dnsx.IsNXDomain(err):
		return Route{}, &Error{Domain: ascii, Status: "5.1.2", Msg: "domain does not exist", Err: err}
	case dnsx.IsNoData(err):
		return r.implicitMX(ctx, ascii)
	default:
		return Route{}, &Error{Domain: ascii, Status: "4.4.3", Msg: "MX lookup failed", Err: err}
	}

	// RFC 7505 §3: a null MX is the only MX, "." with preference 0; any
	// MX "." means the domain declares it takes no mail.
	if slices.ContainsFunc(mxs, func(m dnsx.MX) bool { return m.Host == "." }) {
		return Route{}, &Error{Domain: ascii, Status: "5.1.10", Msg: "domain does not accept mail (null MX, RFC 7505)"}
	}

	r.shuffle(mxs)
	slices.SortStableFunc(mxs, func(a, b dnsx.MX) int { return int(a.Pref) - int(b.Pref) })

	rt := Route{Domain: ascii}
	seen := map[netip.Addr]bool{}
	var tempErr, permErr error
	for _, mx := range mxs {
		addrs, err := r.resolveHost(ctx, mx.Host)
		if err != nil {
			if dnsx.IsTemporary(err) {
				tempErr = err
			} else {
				permErr = err
			}
			r.logger().Warn("MX host does not resolve", "domain", ascii, "mx", mx.Host, "err", err)
			continue
		}
		// The same address under two MX names is tried once.
		addrs = slices.DeleteFunc(addrs, func(a netip.Addr) bool {
			dup := seen[a]
			seen[a] = true
			return dup
		})
		if len(addrs) == 0 {
			continue
		}
		rt.Hosts = append(rt.Hosts, Host{Name: mx.Host, Pref: mx.Pref, Addrs: addrs, Port: r.port()})
	}
	if len(rt.Hosts) == 0 {
		if tempErr != nil {
			return Route{}, &Error{Domain: ascii, Status: "4.4.3", Msg: "no MX host could be resolved", Err: tempErr}
		}
		return Route{}, &Error{Domain: ascii, Status: "5.4.4", Msg: "no MX host has an address", Err: permErr}
	}
	return r.checkLoop(rt)
}

// implicitMX routes to the domain's own addresses (RFC 5321 §5.1).
func (r *Router) implicitMX(ctx context.Context, domain string) (Route, error) {
	addrs, err := r.resolveHost(ctx, domain)
	if err != nil {
		if dnsx.IsTemporary(err) {
			return Route{}, &Error{Domain: domain, Status: "4.4.3", Msg: "address lookup failed", Err: err}
		}
		return Route{}, &Error{Domain: domain, Status: "5.4.4", Msg: "domain has no MX and no address", Err: err}
	}
	return r.checkLoop(Route{Domain: domain, ImplicitMX: true, Hosts: []Host{{Name: domain, Addrs: addrs, Port: r.port()}}})
}

// resolveHost returns all AAAA and A addresses of host in preference
// order. It fails only when neither family yields an address; the error is
// temporary if either look-up was.
func (r *Router) resolveHost(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	v6, err6 := r.Resolver.LookupAAAA(ctx, host)
	v4, err4 := r.Resolver.LookupA(ctx, host)
	var addrs []netip.Addr
	if r.PreferIPv4 {
		addrs = append(v4, v6...)
	} else {
		addrs = append(v6, v4...)
	}
	if len(addrs) > 0 {
		return addrs, nil
	}
	if dnsx.IsTemporary(err6) {
		return nil, err6
	}
	if dnsx.IsTemporary(err4) {
		return nil, err4
	}
	return nil, errors.Join(err6, err4)
}

// checkLoop applies RFC 5321 §5.1: if one of the hosts is this MTA, every
// host with the same or a higher preference value is dropped. If that
// leaves nothing, mail for the domain would come back to us: a
// configuration error that an operator must fix, reported as temporary so
// that nothing bounces while they do.
func (r *Router) checkLoop(rt Route) (Route, error) {
	if len(r.LocalAddrs) == 0 {
		return rt, nil
	}
	for i, h := range rt.Hosts {
		if !slices.ContainsFunc(h.Addrs, func(a netip.Addr) bool { return slices.Contains(r.LocalAddrs, a) }) {
			continue
		}
		cut := i
		for cut > 0 && rt.Hosts[cut-1].Pref >= h.Pref {
			cut--
		}
		rt.Hosts = rt.Hosts[:cut]
		if len(rt.Hosts) == 0 {
			r.logger().Error("mail loops back to myself: MX points at a local address",
				"domain", rt.Domain, "mx", h.Name, "addrs", h.Addrs)
			return Route{}, &Error{Domain: rt.Domain, Status: "4.4.6", Msg: "mail for domain loops back to myself (MX " + h.Name + " is a local address)"}
		}
		break
	}
	return rt, nil
}

func (r *Router) smarthost(ctx context.Context, domain string) (Route, error) {
	sh := r.Smarthost
	addrs, err := r.resolveHost(ctx, sh.Host)
	if err != nil {
		// A smarthost that does not resolve is our configuration problem,
		// never the recipient's: temporary.
		return Route{}, &Error{Domain: domain, Status: "4.4.3", Msg: "smarthost " + sh.Host + " does not resolve", Err: err}
	}
	port := sh.Port
	if port == 0 {
		port = 587
	}
	return r.checkLoop(Route{Domain: domain, Smarthost: sh, Hosts: []Host{{Name: sh.Host, Addrs: addrs, Port: port}}})
}

// addressLiteral parses a domain literal, RFC 5321 §4.1.3: [192.0.2.1] or
// [IPv6:2001:db8::1].
func addressLiteral(domain string) (netip.Addr, bool, error) {
	if !strings.HasPrefix(domain, "[") {
		return netip.Addr{}, false, nil
	}
	inner, ok := strings.CutSuffix(domain[1:], "]")
	if !ok {
		return netip.Addr{}, true, errors.New("unterminated address literal")
	}
	if v6, ok := strings.CutPrefix(inner, "IPv6:"); ok {
		a, err := netip.ParseAddr(v6)
		if err != nil || !a.Is6() {
			return netip.Addr{}, true, fmt.Errorf("bad IPv6 literal %q", inner)
		}
		return a, true, nil
	}
	a, err := netip.ParseAddr(inner)
	if err != nil || !a.Is4() {
		return netip.Addr{}, true, fmt.Errorf("bad IPv4 literal %q", inner)
	}
	return a, true, nil
}
