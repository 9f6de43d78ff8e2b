package cli

import (
	"context"
	"flag"
	"io"
	"strconv"
	"strings"

	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"

	"github.com/petrel-mail/petrel/ctl/internal/dnsrecords"
)

func init() {
	register(&command{path: "dns", args: "DOMAIN [--mx-host HOST] [--dmarc-policy none|quarantine|reject] [--rua ADDRESS]",
		summary: "show the DNS records a domain must publish (MX, SPF, DMARC)", minArgs: 1, maxArgs: 1,
		help: "The domain must exist in the store. DKIM records are not listed yet: the store does not keep DKIM keys.",
		setup: func(fs *flag.FlagSet) runFunc {
			var opts dnsrecords.Options
			fs.StringVar(&opts.MXHost, "mx-host", "", "host name of Petrel's MX service (default mail.DOMAIN)")
			fs.StringVar(&opts.DMARCPolicy, "dmarc-policy", "quarantine", "DMARC policy: none, quarantine or reject")
			fs.StringVar(&opts.ReportAddress, "rua", "", "address for DMARC aggregate reports (default postmaster@DOMAIN)")
			return func(ctx context.Context, inv *invocation) error {
				domain := strings.TrimSuffix(strings.ToLower(inv.args[0]), ".")
				inv.what = domain
				records, err := dnsrecords.For(domain, opts)
				if err != nil {
					return usageError{strings.TrimPrefix(err.Error(), "dnsrecords: ")}
				}
				cl, err := inv.store()
				if err != nil {
					return err
				}
				// Records for a domain Petrel does not host would only
				// mislead; ListDomains shows what the token may see.
				resp, err := cl.Admin.ListDomains(ctx, &storev1.ListDomainsRequest{})
				if err != nil {
					return err
				}
				if !hasDomain(resp.GetDomains(), domain) {
					return exitError{ExitNotFound, "domain " + domain + " is not hosted here ('petrelctl domain add " + domain + "' adds it)"}
				}
				inv.warnf("no DKIM record: the store does not keep DKIM keys yet")
				return inv.out.result(records, func(w io.Writer) {
					var rows [][]string
					for _, r := range records {
						v := r.Value
						if r.Type == "TXT" {
							v = strconv.Quote(v)
						} else {
							v = strconv.Itoa(r.Priority) + " " + v + "."
						}
						rows = append(rows, []string{r.Name + ".", r.Type, v, r.Purpose})
					}
					table(w, []string{"NAME", "TYPE", "VALUE", "PURPOSE"}, rows)
				})
			}
		}})
}

func hasDomain(ds []*storev1.Domain, name string) bool {
	for _, d := range ds {
		if d.GetName() == name {
			return true
		}
	}
	return false
}

// exitError is a failure petrelctl itself detects, with its exit code.
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }
