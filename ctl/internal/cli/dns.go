package cli

import (
	"context"
	"errors"
	"flag"
	"io"
	"strconv"
	"strings"

	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"

	"github.com/petrel-mail/petrel/ctl/internal/dnsrecords"
	"github.com/petrel-mail/petrel/services/store/storeclient"
)

func init() {
	register(&command{path: "dns", args: "DOMAIN [--mx-host HOST] [--dmarc-policy none|quarantine|reject] [--rua ADDRESS]",
		summary: "show the DNS records a domain must publish (MX, SPF, DMARC, DKIM)", minArgs: 1, maxArgs: 1,
		help: "The domain must exist in the store. DKIM records are those of the keys 'petrelctl dkim generate' made.",
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
				// DKIM: the record of every key the store holds for the
				// domain. A store without DKIM support yet only loses the
				// DKIM lines.
				keys, err := cl.Admin.ListDKIMKeys(ctx, &storev1.ListDKIMKeysRequest{Domain: domain})
				switch {
				case errors.Is(err, storeclient.ErrUnimplemented):
					inv.warnf("no DKIM record: the store at %s does not keep DKIM keys yet", inv.g.server)
				case err != nil:
					return err
				case len(keys.GetKeys()) == 0:
					inv.warnf("no DKIM key for %s yet: 'petrelctl dkim generate %s' makes one", domain, domain)
				}
				for _, k := range keys.GetKeys() {
					records = append(records, dnsrecords.Record{Name: k.GetRecordName(), Type: "TXT", Value: k.GetRecord(),
						Purpose: "DKIM: public key of selector " + k.GetSelector()})
				}
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
