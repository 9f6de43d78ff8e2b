package proxyproto

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// ParseCIDRs parses a comma-separated list of CIDR prefixes from
// configuration, such as "10.0.0.0/8, 192.168.1.7, fd00::/8". A bare address
// means that single host (/32 or /128). An empty or all-blank string gives an
// empty list. Every bad entry is reported, not just the first, so an operator
// fixes the whole value in one go.
//
// A prefix with host bits set ("10.1.2.3/8") is refused rather than silently
// masked: it usually means the operator meant a different network, and
// trusting a wider range than intended would let clients spoof addresses.
func ParseCIDRs(list string) ([]netip.Prefix, error) {
	if strings.TrimSpace(list) == "" {
		return nil, nil
	}
	var (
		prefixes []netip.Prefix
		errs     []error
	)
	for i, field := range strings.Split(list, ",") {
		entry := strings.TrimSpace(field)
		if entry == "" {
			errs = append(errs, fmt.Errorf("entry %d: empty (stray comma?)", i+1))
			continue
		}
		p, err := parseCIDR(entry)
		if err != nil {
			errs = append(errs, fmt.Errorf("entry %d %q: %w", i+1, entry, err))
			continue
		}
		prefixes = append(prefixes, p)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("proxyproto: invalid CIDR list: %w", errors.Join(errs...))
	}
	return prefixes, nil
}

func parseCIDR(entry string) (netip.Prefix, error) {
	if !strings.Contains(entry, "/") {
		addr, err := netip.ParseAddr(entry)
		if err != nil {
			return netip.Prefix{}, errors.New("not an IP address or CIDR prefix")
		}
		if addr.Zone() != "" {
			return netip.Prefix{}, errors.New("zoned addresses cannot be matched")
		}
		addr = addr.Unmap()
		return netip.PrefixFrom(addr, addr.BitLen()), nil
	}
	p, err := netip.ParsePrefix(entry)
	if err != nil {
		return netip.Prefix{}, errors.New("not a valid CIDR prefix (want e.g. 10.0.0.0/8 or fd00::/8)")
	}
	if masked := p.Masked(); masked != p {
		return netip.Prefix{}, fmt.Errorf("host bits set; did you mean %s?", masked)
	}
	if p.Addr().Is4In6() {
		// Connections are matched on unmapped addresses, so a mapped prefix
		// would never match anything.
		return netip.Prefix{}, errors.New("IPv4-mapped IPv6 prefix; write the IPv4 prefix instead")
	}
	return p, nil
}
