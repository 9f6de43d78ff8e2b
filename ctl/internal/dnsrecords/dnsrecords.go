// Package dnsrecords computes the DNS records a mail domain hosted on
// Petrel must publish: MX (RFC 5321 §5.1), SPF (RFC 7208), DMARC
// (RFC 7489 §6.1) and, once the store keeps DKIM keys, DKIM (RFC 6376
// §3.6.2). It only computes text; it never queries DNS.
package dnsrecords

import (
	"errors"
	"fmt"
	"strings"
)

// Record is one resource record, in the form a zone file or a DNS
// provider's web form wants it.
type Record struct {
	// Name is the owner name, fully qualified without the trailing dot.
	Name string `json:"name"`
	// Type is "MX" or "TXT".
	Type string `json:"type"`
	// Priority is the MX preference; 0 for other types.
	Priority int `json:"priority,omitempty"`
	// Value is the record data: the exchange host for MX, the text for TXT.
	Value string `json:"value"`
	// Purpose says in a few words why the record is needed.
	Purpose string `json:"purpose"`
}

// DMARC policies (RFC 7489 §6.3 "p").
var policies = map[string]bool{"none": true, "quarantine": true, "reject": true}

// Options choose how the records look.
type Options struct {
	// MXHost is the host name clients reach Petrel's MX service at;
	// default "mail.<domain>".
	MXHost string
	// DMARCPolicy is none, quarantine or reject; default quarantine,
	// which is safe once SPF and DKIM are in place and does not lose mail
	// while they are not.
	DMARCPolicy string
	// ReportAddress receives DMARC aggregate reports (rua); default
	// postmaster@<domain>.
	ReportAddress string
}

// For returns the records for domain, in the order an operator should
// publish them: MX first, then the policies that refer to it.
func For(domain string, opts Options) ([]Record, error) {
	domain = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(domain)), ".")
	if domain == "" || strings.ContainsAny(domain, " \t@;\"") || !strings.Contains(domain, ".") {
		return nil, fmt.Errorf("dnsrecords: %q is not a domain name", domain)
	}
	if opts.MXHost == "" {
		opts.MXHost = "mail." + domain
	}
	opts.MXHost = strings.TrimSuffix(opts.MXHost, ".")
	if opts.DMARCPolicy == "" {
		opts.DMARCPolicy = "quarantine"
	}
	if !policies[opts.DMARCPolicy] {
		return nil, errors.New("dnsrecords: DMARC policy must be none, quarantine or reject")
	}
	if opts.ReportAddress == "" {
		opts.ReportAddress = "postmaster@" + domain
	}
	if strings.ContainsAny(opts.ReportAddress, " ;,!\"") || !strings.Contains(opts.ReportAddress, "@") {
		return nil, fmt.Errorf("dnsrecords: %q is not a report address", opts.ReportAddress)
	}
	return []Record{
		{Name: domain, Type: "MX", Priority: 10, Value: opts.MXHost, Purpose: "where other servers deliver mail for the domain"},
		// "mx" authorizes the hosts the MX names (RFC 7208 §5.4): Petrel
		// sends from the hosts it receives on. "-all" fails everyone else.
		{Name: domain, Type: "TXT", Value: "v=spf1 mx -all", Purpose: "SPF: which hosts may send as the domain"},
		// RFC 7489 §6.1: the policy record lives at _dmarc.<domain>.
		{Name: "_dmarc." + domain, Type: "TXT", Value: "v=DMARC1; p=" + opts.DMARCPolicy + "; rua=mailto:" + opts.ReportAddress, Purpose: "DMARC: what receivers do with mail failing SPF and DKIM"},
	}, nil
}
