package msgauth

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"
)

var headerSeeds = []string{
	"From: Alice <alice@example.test>\r\nSubject: hi\r\n\r\nbody\r\n",
	"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.test; s=sel;\r\n\th=From:To; bh=abc=; b=AbC\r\n dEf=\r\nFrom: a@b.test\r\n\r\n",
	"Authentication-Results: (c) mx.petrel.test; spf=pass\r\nauthentication-results : \"mx.petrel.test\";\r\n\tdkim=none\r\n\r\nAuthentication-Results: mx.petrel.test\r\n",
	"From: =?utf-8?q?J=C3=B6rg?= <j@bücher.test>, \"x\" <y@z.test>\n\nbare LF\n",
	"From: <>\r\nFrom: (comment) a@[192.0.2.1]\r\n\r\n",
	" continuation first\r\nno colon line\r\n\r\n",
}

// FuzzHeaderParsing drives every parser of ours that sees message data:
// header splitting, DKIM tag lists, From addresses and authserv-ids.
func FuzzHeaderParsing(f *testing.F) {
	for _, s := range headerSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		block, err := readHeaderBlock(bufio.NewReader(bytes.NewReader(data)), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(data, block) {
			t.Fatal("header block is not a prefix of the message")
		}
		var froms []string
		for _, fld := range splitFields(block) {
			switch strings.ToLower(fld.name) {
			case "dkim-signature":
				for _, v := range dkimTags(fld.value) {
					if strings.ContainsAny(v, " \t\r\n") {
						t.Fatalf("tag value %q keeps white space", v)
					}
				}
			case "from":
				froms = append(froms, fld.value)
			case "authentication-results":
				if id := AuthServID(fld.value); id != "" && !ClaimsAuthServID(fld.value, id) {
					t.Fatalf("value %q: id %q not claimed", fld.value, id)
				}
			}
		}
		if domains, err := authorDomains(froms); err == nil {
			for _, d := range domains {
				if !isDomainName(d) || d != strings.ToLower(d) {
					t.Fatalf("author domain %q is not a normalized domain name", d)
				}
			}
		}
	})
}

// FuzzStripOwnResults checks that stripping removes exactly our fields:
// none is left, the body is untouched, and stripping twice changes nothing.
func FuzzStripOwnResults(f *testing.F) {
	for _, s := range headerSeeds {
		f.Add([]byte(s))
	}
	v, err := New(Options{AuthServID: "mx.petrel.test"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := io.ReadAll(v.StripOwnResults(bytes.NewReader(data)))
		if err != nil {
			t.Fatal(err)
		}
		inBlock, _ := readHeaderBlock(bufio.NewReader(bytes.NewReader(data)), 1<<20)
		outBlock, _ := readHeaderBlock(bufio.NewReader(bytes.NewReader(out)), 1<<20)
		if !bytes.Equal(data[len(inBlock):], out[len(outBlock):]) {
			t.Fatal("body changed")
		}
		for _, fld := range splitFields(outBlock) {
			if isAuthResultsField(fld.name) && ClaimsAuthServID(fld.value, "mx.petrel.test") {
				t.Fatalf("own field left: %q", fld.value)
			}
		}
		again, _ := io.ReadAll(v.StripOwnResults(bytes.NewReader(out)))
		if !bytes.Equal(again, out) {
			t.Fatal("stripping is not idempotent")
		}
	})
}

// FuzzAuthResultsFormat feeds hostile envelope and signature values into the
// field we write: it must stay one well-formed, parseable header field.
func FuzzAuthResultsFormat(f *testing.F) {
	f.Add("alice@example.test", "client.test", "example.test", "@example.test", "sel", "AbCd/+=x", "body hash did not verify")
	f.Add("", "evil\r\nX-Injected: 1", "x\"y", "a\\b", "s;s", "b", "r\"\\\r\n(")
	f.Add("\"quoted local\"@example.test", "[192.0.2.1]", "", "", "", "", "ümlaut")
	v, err := New(Options{AuthServID: "mx.petrel.test"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, mailFrom, helo, d, i, s, b, reason string) {
		res := Result{
			SPF: SPFResult{Result: SPFPass, MailFrom: cleanValue(mailFrom), HELO: cleanValue(helo)},
			DKIM: []DKIMResult{{
				Result: "fail", Domain: d, Identifier: i, Selector: s, Algorithm: "rsa-sha256",
				BPrefix: b, Err: errString(reason),
			}},
			DMARC: DMARCResult{Result: DMARCFail, Domain: d, Policy: PolicyReject, Percent: 100, Disposition: PolicyReject},
		}
		checkHeaderWellFormed(t, v.formatHeader(res))
	})
}

type errString string

func (e errString) Error() string { return string(e) }
