package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"
)

// DKIM keys (RFC 6376) live in the store (AdminService
// Generate/List/DeleteDKIMKey); petrelctl shows their public half and the
// TXT record to publish at <selector>._domainkey.<domain> (§3.6.2.1).

type dkimKeyJSON struct {
	Domain     string     `json:"domain"`
	Selector   string     `json:"selector"`
	Algorithm  string     `json:"algorithm"`
	Active     bool       `json:"active"`
	RecordName string     `json:"record_name"`
	Record     string     `json:"record"`
	ZoneText   string     `json:"zone_text"`
	CreatedAt  *time.Time `json:"created_at,omitempty"`
}

func dkimKeyOf(k *storev1.DKIMKey) dkimKeyJSON {
	return dkimKeyJSON{
		Domain: k.GetDomain(), Selector: k.GetSelector(), Algorithm: dkimAlgorithmName(k.GetAlgorithm()), Active: k.GetActive(),
		RecordName: k.GetRecordName(), Record: k.GetRecord(), ZoneText: k.GetZoneText(), CreatedAt: jsonTime(k.GetCreatedAt()),
	}
}

func dkimAlgorithmName(a storev1.DKIMAlgorithm) string {
	switch a {
	case storev1.DKIMAlgorithm_DKIM_ALGORITHM_RSA_2048:
		return "rsa-2048"
	case storev1.DKIMAlgorithm_DKIM_ALGORITHM_ED25519:
		return "ed25519"
	}
	return "unknown"
}

func parseDKIMAlgorithm(s string) (storev1.DKIMAlgorithm, error) {
	switch strings.ToLower(s) {
	case "rsa", "rsa-2048", "rsa2048":
		return storev1.DKIMAlgorithm_DKIM_ALGORITHM_RSA_2048, nil
	case "ed25519":
		return storev1.DKIMAlgorithm_DKIM_ALGORITHM_ED25519, nil
	}
	return 0, usagef("--algorithm must be rsa or ed25519, not %q", s)
}

func dkimTable(w io.Writer, keys []dkimKeyJSON) {
	var rows [][]string
	for _, k := range keys {
		rows = append(rows, []string{k.Domain, k.Selector, k.Algorithm, yesNo(k.Active), humanJSONTime(k.CreatedAt), k.RecordName + "."})
	}
	table(w, []string{"DOMAIN", "SELECTOR", "ALGORITHM", "ACTIVE", "CREATED", "RECORD NAME"}, rows)
}

func listDKIM(ctx context.Context, inv *invocation, domain string) ([]dkimKeyJSON, error) {
	cl, err := inv.store()
	if err != nil {
		return nil, err
	}
	resp, err := cl.Admin.ListDKIMKeys(ctx, &storev1.ListDKIMKeysRequest{Domain: domain})
	if err != nil {
		return nil, err
	}
	out := []dkimKeyJSON{}
	for _, k := range resp.GetKeys() {
		out = append(out, dkimKeyOf(k))
	}
	return out, nil
}

func init() {
	register(
		&command{path: "dkim generate", args: "DOMAIN [--selector NAME] [--algorithm rsa|ed25519]", summary: "generate a DKIM key; the newest key signs the domain's mail", minArgs: 1, maxArgs: 1,
			help: "Publish the printed TXT record before mail signed with the key goes out; receivers cannot verify it otherwise.",
			setup: func(fs *flag.FlagSet) runFunc {
				selector := fs.String("selector", "", "selector, a DNS label (default: petrel<date>)")
				algorithm := fs.String("algorithm", "rsa", "rsa (2048 bits, verified everywhere) or ed25519 (RFC 8463)")
				return func(ctx context.Context, inv *invocation) error {
					inv.what = inv.args[0]
					alg, err := parseDKIMAlgorithm(*algorithm)
					if err != nil {
						return err
					}
					cl, err := inv.store()
					if err != nil {
						return err
					}
					resp, err := cl.Admin.GenerateDKIMKey(ctx, &storev1.GenerateDKIMKeyRequest{Domain: inv.args[0], Selector: *selector, Algorithm: alg})
					if err != nil {
						return err
					}
					k := dkimKeyOf(resp.GetKey())
					return inv.out.result(k, func(w io.Writer) {
						fmt.Fprintf(w, "generated DKIM key %s (%s) for %s; publish:\n\n%s. IN TXT %s\n", k.Selector, k.Algorithm, k.Domain, k.RecordName, k.ZoneText)
					})
				}
			}},
		&command{path: "dkim list", args: "[--domain DOMAIN]", summary: "list DKIM keys", maxArgs: 0,
			setup: func(fs *flag.FlagSet) runFunc {
				domain := fs.String("domain", "", "only this domain's keys")
				return func(ctx context.Context, inv *invocation) error {
					inv.what = *domain
					keys, err := listDKIM(ctx, inv, *domain)
					if err != nil {
						return err
					}
					return inv.out.result(keys, func(w io.Writer) { dkimTable(w, keys) })
				}
			}},
		&command{path: "dkim record", args: "DOMAIN [--selector NAME]", summary: "show the DKIM TXT records to publish", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				selector := fs.String("selector", "", "only this selector's record")
				return func(ctx context.Context, inv *invocation) error {
					inv.what = inv.args[0]
					keys, err := listDKIM(ctx, inv, inv.args[0])
					if err != nil {
						return err
					}
					var out []dkimKeyJSON
					for _, k := range keys {
						if *selector == "" || k.Selector == *selector {
							out = append(out, k)
						}
					}
					if len(out) == 0 {
						return exitError{ExitNotFound, inv.args[0] + ": no DKIM key ('petrelctl dkim generate " + inv.args[0] + "' makes one)"}
					}
					return inv.out.result(out, func(w io.Writer) {
						for _, k := range out {
							fmt.Fprintf(w, "%s. IN TXT %s\n", k.RecordName, k.ZoneText)
						}
					})
				}
			}},
		&command{path: "dkim delete", args: "DOMAIN SELECTOR", summary: "delete a DKIM key (unpublish its record afterwards)", minArgs: 2, maxArgs: 2,
			setup: func(fs *flag.FlagSet) runFunc {
				return func(ctx context.Context, inv *invocation) error {
					inv.what = inv.args[0] + " " + inv.args[1]
					cl, err := inv.store()
					if err != nil {
						return err
					}
					if _, err := cl.Admin.DeleteDKIMKey(ctx, &storev1.DeleteDKIMKeyRequest{Domain: inv.args[0], Selector: inv.args[1]}); err != nil {
						return err
					}
					return inv.out.result(deletedJSON{Deleted: inv.args[1], Kind: "dkim key"}, func(w io.Writer) {
						fmt.Fprintf(w, "deleted DKIM key %s of %s\n", inv.args[1], inv.args[0])
					})
				}
			}},
	)
}
