package mimeparse

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// partWant is what slicing the raw message with a part's offsets must give.
type partWant struct {
	path        string
	contentType string
	header      string // exact BODY[path.MIME] (or HEADER) octets; "-" to skip
	body        string // exact BODY[path] octets; "-" to skip
	lines       int64
}

// The BODYSTRUCTURE, BODY and ENVELOPE goldens were checked by hand against
// RFC 9051 §7.5.2 and against Dovecot 2.3.19 (a private instance fed the
// same files): they are byte-for-byte what Dovecot sends except where a
// comment says otherwise.
var corpus = []struct {
	file          string
	malformed     bool
	envelope      string
	bodyStructure string
	body          string
	parts         []partWant
}{
	{
		// RFC 9051 §7.5.2's ENVELOPE example and its BODY example
		// ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92).
		file:          "simple.eml",
		envelope:      `("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev2 WG mtg summary and minutes" (("Terry Gray" NIL "gray" "cac.washington.edu")) (("Terry Gray" NIL "gray" "cac.washington.edu")) (("Terry Gray" NIL "gray" "cac.washington.edu")) ((NIL NIL "imap" "cac.washington.edu")) ((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) NIL NIL "<B27397-0100000@cac.washington.edu>")`,
		bodyStructure: `("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92 NIL NIL NIL NIL)`,
		// Dovecot lower-cases the BODY form; the RFC example keeps the case.
		body: `("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92)`,
		parts: []partWant{
			{path: "1", contentType: "text/plain", header: "-", body: "-", lines: 92},
		},
	},
	{
		file:          "alternative.eml",
		envelope:      `("Tue, 3 Nov 2026 10:15:00 +0100" "Lunch on Friday?" (("Alice Example" NIL "alice" "example.org")) (("Alice Example" NIL "alice" "example.org")) (("Alice Example" NIL "alice" "example.org")) (("Bob" NIL "bob" "example.net")) NIL NIL NIL "<alt-1@example.org>")`,
		bodyStructure: `(("text" "plain" ("charset" "UTF-8") NIL NIL "quoted-printable" 110 6 NIL NIL NIL NIL)("text" "html" ("charset" "UTF-8") NIL NIL "quoted-printable" 176 3 NIL NIL NIL NIL) "alternative" ("boundary" "000000000000alt") NIL NIL NIL)`,
		body:          `(("text" "plain" ("charset" "UTF-8") NIL NIL "quoted-printable" 110 6)("text" "html" ("charset" "UTF-8") NIL NIL "quoted-printable" 176 3) "alternative")`,
		parts: []partWant{
			{path: "1", contentType: "text/plain",
				header: "Content-Type: text/plain; charset=\"UTF-8\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
				body:   "Hi Bob,\r\n\r\nShall we try the caf=C3=A9 on the corner? It opens at 12:00 and the menu =\r\nlooks great.\r\n\r\nAlice\r\n", lines: 6},
			{path: "2", contentType: "text/html", header: "-",
				body: "<html><head><style>p {color: red}</style></head><body><p>Hi Bob,</p><p>Shall=\r\n we try the caf=C3=A9 on the corner? &amp; more</p><script>var x=3D1;</script=\r\n></body></html>\r\n", lines: 3},
		},
	},
	{
		file:          "mixed-attachment.eml",
		envelope:      `("Mon, 2 Nov 2026 08:00:00 -0500" "Invoice 2026-11" (("Carol" NIL "carol" "example.com")) (("Carol" NIL "carol" "example.com")) (("Carol" NIL "carol" "example.com")) ((NIL NIL "dave" "example.com")) NIL NIL NIL "<mixed-1@example.com>")`,
		bodyStructure: `(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 35 1 NIL NIL NIL NIL)("application" "pdf" ("name" "invoice-2026-11.pdf") NIL "Invoice November" "base64" 4138 NIL ("attachment" ("filename" "invoice-2026-11.pdf" "size" "3016")) NIL NIL) "mixed" ("boundary" "----=_Part_42_1") NIL NIL NIL)`,
		body:          `(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 35 1)("application" "pdf" ("name" "invoice-2026-11.pdf") NIL "Invoice November" "base64" 4138) "mixed")`,
		parts: []partWant{
			{path: "1", contentType: "text/plain",
				header: "Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n",
				body:   "Please find the invoice attached.\r\n", lines: 1},
			{path: "2", contentType: "application/pdf",
				header: "Content-Type: application/pdf; name=\"invoice-2026-11.pdf\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"invoice-2026-11.pdf\"; size=3016\r\nContent-Description: Invoice November\r\n\r\n",
				body:   "-"},
		},
	},
	{
		file:          "nested.eml",
		envelope:      `("Sun, 1 Nov 2026 12:00:00 +0000" "Newsletter" (("Erin" NIL "erin" "example.org")) (("Erin" NIL "erin" "example.org")) (("Erin" NIL "erin" "example.org")) (("Frank" NIL "frank" "example.org")) NIL NIL NIL "<nested-1@example.org>")`,
		bodyStructure: `((("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 27 1 NIL NIL NIL NIL)(("text" "html" ("charset" "utf-8") NIL NIL "7bit" 52 1 NIL NIL NIL NIL)("image" "png" NIL "<logo@example.org>" NIL "base64" 832 NIL ("inline" NIL) NIL NIL) "related" ("boundary" "rel" "type" "text/html") NIL NIL NIL) "alternative" ("boundary" "alt") NIL NIL NIL)("text" "csv" ("name" "data.csv" "charset" "us-ascii") NIL NIL "7bit" 10 2 NIL ("attachment" ("filename" "data.csv")) ("en" "de") "http://example.org/data.csv") "mixed" ("boundary" "outer") NIL NIL NIL)`,
		body:          `((("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 27 1)(("text" "html" ("charset" "utf-8") NIL NIL "7bit" 52 1)("image" "png" NIL "<logo@example.org>" NIL "base64" 832) "related") "alternative")("text" "csv" ("name" "data.csv" "charset" "us-ascii") NIL NIL "7bit" 10 2) "mixed")`,
		parts: []partWant{
			{path: "1", contentType: "multipart/alternative", header: "Content-Type: multipart/alternative; boundary=alt\r\n\r\n", body: "-"},
			{path: "1.1", contentType: "text/plain", header: "Content-Type: text/plain; charset=utf-8\r\n\r\n", body: "Newsletter in plain text.\r\n", lines: 1},
			{path: "1.2", contentType: "multipart/related", header: "-", body: "-"},
			{path: "1.2.1", contentType: "text/html", header: "-", body: "<p>Newsletter <img src=\"cid:logo@example.org\"></p>\r\n", lines: 1},
			{path: "1.2.2", contentType: "image/png", header: "-", body: "-"},
			{path: "2", contentType: "text/csv", header: "-", body: "a,b\r\n1,2\r\n", lines: 2},
		},
	},
	{
		file:          "rfc822-attachment.eml",
		envelope:      `("Fri, 6 Nov 2026 09:30:00 +0000" "Fwd: Report" (("Grace" NIL "grace" "example.net")) (("Grace" NIL "grace" "example.net")) (("Grace" NIL "grace" "example.net")) (("Heidi" NIL "heidi" "example.net")) NIL NIL NIL "<fwd-1@example.net>")`,
		bodyStructure: `(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 28 1 NIL NIL NIL NIL)("message" "rfc822" NIL NIL NIL "7bit" 402 ("Thu, 5 Nov 2026 17:00:00 +0000" "Report" (("Ivan" NIL "ivan" "example.com")) (("Ivan" NIL "ivan" "example.com")) (("Ivan" NIL "ivan" "example.com")) (("Grace" NIL "grace" "example.net")) NIL NIL NIL "<report-1@example.com>") (("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 21 1 NIL NIL NIL NIL)("text" "html" ("charset" "us-ascii") NIL NIL "7bit" 28 1 NIL NIL NIL NIL) "alternative" ("boundary" "inner") NIL NIL NIL) 19 NIL ("inline" NIL) NIL NIL) "mixed" ("boundary" "fwd") NIL NIL NIL)`,
		body:          `(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 28 1)("message" "rfc822" NIL NIL NIL "7bit" 402 ("Thu, 5 Nov 2026 17:00:00 +0000" "Report" (("Ivan" NIL "ivan" "example.com")) (("Ivan" NIL "ivan" "example.com")) (("Ivan" NIL "ivan" "example.com")) (("Grace" NIL "grace" "example.net")) NIL NIL NIL "<report-1@example.com>") (("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 21 1)("text" "html" ("charset" "us-ascii") NIL NIL "7bit" 28 1) "alternative") 19) "mixed")`,
		parts: []partWant{
			{path: "2", contentType: "message/rfc822", header: "Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n", body: "-", lines: 19},
			{path: "2.1", contentType: "text/plain", header: "Content-Type: text/plain; charset=us-ascii\r\n\r\n", body: "The report is done.\r\n", lines: 1},
			{path: "2.2", contentType: "text/html", header: "-", body: "<b>The report is done.</b>\r\n", lines: 1},
		},
	},
	{
		file:          "charsets.eml",
		envelope:      "(\"Wed, 4 Nov 2026 14:00:00 +0100\" \"=?UTF-8?B?R3LDvMOfZSDigJMg5L2g5aW9?= =?windows-1252?Q?=93quoted=94?=\" ((\"=?ISO-8859-1?Q?J=F6rg_M=FCller?=\" NIL \"joerg\" \"example.de\")) ((\"=?ISO-8859-1?Q?J=F6rg_M=FCller?=\" NIL \"joerg\" \"example.de\")) ((\"=?ISO-8859-1?Q?J=F6rg_M=FCller?=\" NIL \"joerg\" \"example.de\")) ((\"=?KOI8-R?B?6dfBzg==?=\" NIL \"ivan\" \"example.ru\")(\"=?ISO-2022-JP?B?GyRCOzNFRBsoQg==?=\" NIL \"yamada\" \"example.jp\")) NIL NIL NIL \"<charsets-1@example.de>\")",
		bodyStructure: `(("text" "plain" ("charset" "ISO-8859-1") NIL NIL "quoted-printable" 32 0 NIL NIL NIL NIL)("text" "plain" ("charset" "windows-1252") NIL NIL "8bit" 28 0 NIL NIL NIL NIL)("text" "plain" ("charset" "KOI8-R") NIL NIL "base64" 16 0 NIL NIL NIL NIL)("text" "plain" ("charset" "ISO-2022-JP") NIL NIL "7bit" 20 0 NIL NIL NIL NIL)("text" "plain" ("charset" "GB2312") NIL NIL "base64" 16 0 NIL NIL NIL NIL) "mixed" ("boundary" "cs") NIL NIL NIL)`,
		body:          `(("text" "plain" ("charset" "ISO-8859-1") NIL NIL "quoted-printable" 32 0)("text" "plain" ("charset" "windows-1252") NIL NIL "8bit" 28 0)("text" "plain" ("charset" "KOI8-R") NIL NIL "base64" 16 0)("text" "plain" ("charset" "ISO-2022-JP") NIL NIL "7bit" 20 0)("text" "plain" ("charset" "GB2312") NIL NIL "base64" 16 0) "mixed")`,
		parts: []partWant{
			{path: "1", contentType: "text/plain", header: "-", body: "Gr=FC=DFe aus M=FCnchen, caf=E9.", lines: 0},
			{path: "3", contentType: "text/plain", header: "Content-Type: text/plain; charset=KOI8-R\r\nContent-Transfer-Encoding: base64\r\n\r\n", body: "8NLJ18XULCDNydIh"},
		},
	},
	{
		// Groups, a comment as name, a source route, a subject that needs a
		// literal (quotes and a backslash; Dovecot sends it as one too).
		file:          "groups.eml",
		envelope:      "(\"5 Nov 2026 16:20 +0000\" {19}\r\nQuote \"this\" \\ that ((\"Doe, John\" NIL \"john.doe\" \"example.com\")) ((NIL NIL \"secretary\" \"example.com\")) ((NIL NIL \"replies\" \"example.com\")) ((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) ((NIL NIL \"Team\" NIL)(NIL NIL \"anna\" \"example.com\")(\"Bert B.\" NIL \"bert\" \"example.com\")(NIL NIL NIL NIL)(\"Carl C.\" NIL \"carl\" \"example.com\")) ((NIL \"@relay.example.net\" \"dora\" \"example.com\")) \"<prev-1@example.com>\" \"<groups-1@example.com>\")",
		bodyStructure: `("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 7 1 NIL NIL NIL NIL)`,
		body:          `("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 7 1)`,
		parts:         []partWant{{path: "1", contentType: "text/plain", header: "-", body: "Body.\r\n", lines: 1}},
	},
	{
		// Absent Date/From are NIL, an empty Subject is "" (RFC 9051 §7.5.2).
		file:          "no-date-from.eml",
		envelope:      `(NIL "" NIL NIL NIL ((NIL NIL "someone" "example.com")) NIL NIL NIL NIL)`,
		bodyStructure: `("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 35 1 NIL NIL NIL NIL)`,
		body:          `("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 35 1)`,
		parts: []partWant{{path: "1", contentType: "text/plain",
			header: "To: someone@example.com\r\nSubject:\r\n\r\n",
			body:   "Just a body without Date or From.\r\n", lines: 1}},
	},
	{
		// Sizes are of the stored octets: Dovecot reports 30 for part 1, the
		// CRLF-converted size it would send; we send the stored 29.
		file:          "lf-only.eml",
		envelope:      `("Thu, 5 Nov 2026 10:00:00 +0000" "LF only" ((NIL NIL "lf" "example.com")) ((NIL NIL "lf" "example.com")) ((NIL NIL "lf" "example.com")) ((NIL NIL "user" "example.com")) NIL NIL NIL NIL)`,
		bodyStructure: `(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 29 1 NIL NIL NIL NIL)("application" "octet-stream" NIL NIL NIL "base64" 8 NIL NIL NIL NIL) "mixed" ("boundary" "lf") NIL NIL NIL)`,
		body:          `(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 29 1)("application" "octet-stream" NIL NIL NIL "base64" 8) "mixed")`,
		parts: []partWant{
			{path: "1", contentType: "text/plain", header: "Content-Type: text/plain\n\n", body: "unix line endings\nsecond line", lines: 1},
			{path: "2", contentType: "application/octet-stream", header: "-", body: "AAECAwQF"},
		},
	},
	{
		file:          "malformed-no-close.eml",
		malformed:     true,
		envelope:      `(NIL "truncated" ((NIL NIL "a" "example.com")) ((NIL NIL "a" "example.com")) ((NIL NIL "a" "example.com")) NIL NIL NIL NIL NIL)`,
		bodyStructure: `(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 7 1 NIL NIL NIL NIL)("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 22 1 NIL NIL NIL NIL) "mixed" ("boundary" "nc") NIL NIL NIL)`,
		body:          `(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 7 1)("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 22 1) "mixed")`,
		parts: []partWant{
			{path: "1", contentType: "text/plain", header: "-", body: "first\r\n", lines: 1},
			{path: "2", contentType: "text/plain", header: "-", body: "second, never closed\r\n", lines: 1},
		},
	},
	{
		// Dovecot keeps the multipart and shows one empty part; we show the
		// body as one text part so that clients can still display it.
		file:          "malformed-no-boundary.eml",
		malformed:     true,
		envelope:      `(NIL "no boundary" ((NIL NIL "a" "example.com")) ((NIL NIL "a" "example.com")) ((NIL NIL "a" "example.com")) NIL NIL NIL NIL NIL)`,
		bodyStructure: `("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 47 5 NIL NIL NIL NIL)`,
		body:          `("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 47 5)`,
		parts: []partWant{
			{path: "1", contentType: "text/plain", header: "From: a@example.com\r\nSubject: no boundary\r\nContent-Type: multipart/mixed\r\n\r\n",
				body: "--x\r\nContent-Type: text/plain\r\n\r\nhello\r\n--x--\r\n", lines: 5},
		},
	},
	{
		// Dovecot shows an empty part; ours holds the preamble.
		file:          "malformed-no-parts.eml",
		malformed:     true,
		envelope:      `(NIL "no parts" ((NIL NIL "a" "example.com")) ((NIL NIL "a" "example.com")) ((NIL NIL "a" "example.com")) NIL NIL NIL NIL NIL)`,
		bodyStructure: `(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 38 1 NIL NIL NIL NIL) "mixed" ("boundary" "np") NIL NIL NIL)`,
		body:          `(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 38 1) "mixed")`,
		parts: []partWant{
			{path: "1", contentType: "text/plain", header: "", body: "just a preamble, no delimiter at all\r\n", lines: 1},
		},
	},
	{
		// A header line without a colon, 8-bit garbage in Subject (sent as
		// a literal), an unknown charset, broken base64, binary octets.
		file:          "malformed-misc.eml",
		malformed:     true,
		envelope:      "(NIL {15}\r\ncaf\xe9 \xff\xfe garbage ((NIL NIL \"a\" \"example.com\")) ((NIL NIL \"a\" \"example.com\")) ((NIL NIL \"a\" \"example.com\")) NIL NIL NIL NIL NIL)",
		bodyStructure: `(("text" "plain" ("charset" "x-no-such-charset") NIL NIL "7bit" 20 0 NIL NIL NIL NIL)("text" "plain" ("charset" "utf-8") NIL NIL "base64" 19 0 NIL NIL NIL NIL)("application" "octet-stream" NIL NIL NIL "7bit" 20 NIL NIL NIL NIL) "mixed" ("boundary" "mm") NIL NIL NIL)`,
		body:          `(("text" "plain" ("charset" "x-no-such-charset") NIL NIL "7bit" 20 0)("text" "plain" ("charset" "utf-8") NIL NIL "base64" 19 0)("application" "octet-stream" NIL NIL NIL "7bit" 20) "mixed")`,
		parts: []partWant{
			{path: "2", contentType: "text/plain", header: "-", body: "SGVsbG8g!!d29y*bGQ="},
			{path: "3", contentType: "application/octet-stream", header: "-", body: "\x00\x01\x02\xff\xfe binary\x00garbage"},
		},
	},
}

func TestCorpus(t *testing.T) {
	seen := map[string]bool{}
	for _, tc := range corpus {
		seen[tc.file] = true
		t.Run(tc.file, func(t *testing.T) {
			raw := readTestdata(t, tc.file)
			p := mustParse(t, raw)
			checkInvariants(t, raw, p)
			if p.Malformed != tc.malformed {
				t.Errorf("Malformed = %v, want %v", p.Malformed, tc.malformed)
			}
			if got := string(p.Envelope); got != tc.envelope {
				t.Errorf("ENVELOPE\n got %s\nwant %s", got, tc.envelope)
			}
			if got := string(p.BodyStructure); got != tc.bodyStructure {
				t.Errorf("BODYSTRUCTURE\n got %s\nwant %s", got, tc.bodyStructure)
			}
			if got := string(p.Body); got != tc.body {
				t.Errorf("BODY\n got %s\nwant %s", got, tc.body)
			}
			// BODY[HEADER] and BODY[TEXT] split the message at the blank line.
			root := p.Parts[0]
			hdr := raw[root.HeaderOffset : root.HeaderOffset+root.HeaderLen]
			if !bytes.HasSuffix(hdr, []byte("\r\n\r\n")) && !bytes.HasSuffix(hdr, []byte("\n\n")) {
				t.Errorf("BODY[HEADER] does not end with the blank line: %q", hdr)
			}
			if !bytes.Equal(p.Header, hdr) {
				t.Errorf("Header differs from BODY[HEADER]")
			}
			for _, w := range tc.parts {
				pt, ok := partByPath(p, w.path)
				if !ok {
					t.Errorf("no part %q in %+v", w.path, p.Parts)
					continue
				}
				if pt.ContentType != w.contentType {
					t.Errorf("part %s: ContentType %q, want %q", w.path, pt.ContentType, w.contentType)
				}
				if pt.Lines != w.lines {
					t.Errorf("part %s: Lines %d, want %d", w.path, pt.Lines, w.lines)
				}
				if got := string(raw[pt.HeaderOffset : pt.HeaderOffset+pt.HeaderLen]); w.header != "-" && got != w.header {
					t.Errorf("BODY[%s.MIME] = %q, want %q", w.path, got, w.header)
				}
				if got := string(raw[pt.BodyOffset : pt.BodyOffset+pt.BodyLen]); w.body != "-" && got != w.body {
					t.Errorf("BODY[%s] = %q, want %q", w.path, got, w.body)
				}
			}
		})
	}
	files, _ := filepath.Glob("testdata/*.eml")
	for _, f := range files {
		if !seen[filepath.Base(f)] {
			t.Errorf("%s has no golden in corpus", f)
		}
	}
}

func TestAttachmentBodyDecodes(t *testing.T) {
	raw := readTestdata(t, "mixed-attachment.eml")
	p := mustParse(t, raw)
	pt, _ := partByPath(p, "2")
	pdf, bad := decodeBase64(raw[pt.BodyOffset : pt.BodyOffset+pt.BodyLen])
	if bad || !bytes.HasPrefix(pdf, []byte("%PDF-1.4\n")) || !bytes.HasSuffix(pdf, []byte("%%EOF\n")) || len(pdf) != 3022 {
		t.Fatalf("attachment sliced by offsets does not decode to the PDF: bad=%v len=%d", bad, len(pdf))
	}
}

func TestEncapsulatedMessageSections(t *testing.T) {
	raw := readTestdata(t, "rfc822-attachment.eml")
	p := mustParse(t, raw)
	pt, _ := partByPath(p, "2")
	inner := raw[pt.BodyOffset : pt.BodyOffset+pt.BodyLen]
	header := string(inner[:pt.MessageHeaderLen]) // BODY[2.HEADER]
	text := string(inner[pt.MessageHeaderLen:])   // BODY[2.TEXT]
	if !strings.HasPrefix(header, "From: Ivan <ivan@example.com>\r\n") || !strings.HasSuffix(header, "boundary=\"inner\"\r\n\r\n") {
		t.Errorf("BODY[2.HEADER] = %q", header)
	}
	if !strings.HasPrefix(text, "--inner\r\n") || !strings.HasSuffix(text, "--inner--\r\n") {
		t.Errorf("BODY[2.TEXT] = %q", text)
	}
}

func TestSearchFields(t *testing.T) {
	p := mustParse(t, readTestdata(t, "charsets.eml"))
	if want := "Grüße – 你好“quoted”"; p.Subject != want {
		t.Errorf("Subject = %q, want %q", p.Subject, want)
	}
	if want := "Jörg Müller <joerg@example.de>"; p.From != want {
		t.Errorf("From = %q, want %q", p.From, want)
	}
	if want := "Иван <ivan@example.ru>, 山田 <yamada@example.jp>"; p.To != want {
		t.Errorf("To = %q, want %q", p.To, want)
	}
	if want := "Grüße aus München, café.\nSmart “quotes” – and € sign.\nПривет, мир!\nこんにちは世界\n你好，世界"; p.Text != want {
		t.Errorf("Text = %q, want %q", p.Text, want)
	}
	if want := time.Date(2026, 11, 4, 13, 0, 0, 0, time.UTC); !p.Date.Equal(want) {
		t.Errorf("Date = %v, want %v", p.Date, want)
	}
	if p.MessageID != "<charsets-1@example.de>" {
		t.Errorf("MessageID = %q", p.MessageID)
	}

	p = mustParse(t, readTestdata(t, "alternative.eml"))
	want := "Hi Bob,\n\nShall we try the café on the corner? It opens at 12:00 and the menu looks great.\n\nAlice\nHi Bob,\n\nShall we try the café on the corner? & more"
	if p.Text != want {
		t.Errorf("Text = %q, want %q (HTML without style, script and tags)", p.Text, want)
	}

	p = mustParse(t, readTestdata(t, "groups.eml"))
	if want := "Team: anna@example.com, Bert B. <bert@example.com>;, Carl C. <carl@example.com>"; p.Cc != want {
		t.Errorf("Cc = %q, want %q", p.Cc, want)
	}
	if want := "dora@example.com"; p.Bcc != want {
		t.Errorf("Bcc = %q, want %q", p.Bcc, want)
	}
	if p.InReplyTo != "<prev-1@example.com>" {
		t.Errorf("InReplyTo = %q", p.InReplyTo)
	}
	if want := time.Date(2026, 11, 5, 16, 20, 0, 0, time.UTC); !p.Date.Equal(want) {
		t.Errorf("Date = %v, want %v (no seconds)", p.Date, want)
	}

	p = mustParse(t, readTestdata(t, "malformed-misc.eml"))
	if want := "café ÿþ garbage"; p.Subject != want {
		t.Errorf("Subject = %q, want %q (8-bit header read as windows-1252)", p.Subject, want)
	}
	if want := "unknown charset text\nHello world"; p.Text != want {
		t.Errorf("Text = %q, want %q", p.Text, want)
	}
	if !p.Date.IsZero() {
		t.Errorf("Date = %v for a message without Date", p.Date)
	}
}

func TestRFC2231AndDispositionParams(t *testing.T) {
	raw := []byte("Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n" +
		"Content-Type: application/octet-stream;\r\n name*0=\"long\"; name*1=\"name.bin\"\r\n" +
		"Content-Disposition: attachment; filename*0*=utf-8''%E2%82%AC; filename*1*=%20rate.txt\r\n" +
		"Content-ID: <a@b>\r\nContent-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\nContent-Location: a.bin\r\n" +
		"Content-Language: (comment) fr\r\n\r\nxyz\r\n--b--\r\n")
	p := mustParse(t, raw)
	checkInvariants(t, raw, p)
	want := `(("application" "octet-stream" ("name" "longname.bin") "<a@b>" NIL "7bit" 3 "Q2hlY2sgSW50ZWdyaXR5IQ==" ("attachment" ("filename*" "utf-8''%E2%82%AC%20rate.txt")) ("fr") "a.bin") "mixed" ("boundary" "b") NIL NIL NIL)`
	if string(p.BodyStructure) != want {
		t.Errorf("BODYSTRUCTURE\n got %s\nwant %s", p.BodyStructure, want)
	}
	if p.Malformed {
		t.Errorf("well-formed message marked Malformed")
	}
}

func TestEmptyAndHeaderOnlyMessages(t *testing.T) {
	for _, raw := range []string{"", "Subject: only a header", "Subject: x\r\n\r\n", "\r\n", "no header at all\r\n"} {
		p := mustParse(t, []byte(raw))
		checkInvariants(t, []byte(raw), p)
	}
	p := mustParse(t, []byte("Subject: only a header"))
	if want := `("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)`; string(p.BodyStructure) != want {
		t.Errorf("BODYSTRUCTURE = %s, want %s", p.BodyStructure, want)
	}
	if p.Malformed {
		t.Errorf("a header-only message is valid RFC 5322")
	}
}

func TestDigestDefaultsToMessage(t *testing.T) {
	raw := []byte("Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: one\r\n\r\nfirst\r\n--d--\r\n")
	p := mustParse(t, raw)
	checkInvariants(t, raw, p)
	want := `(("message" "rfc822" NIL NIL NIL "7bit" 21 (NIL "one" NIL NIL NIL NIL NIL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 5 0 NIL NIL NIL NIL) 2 NIL NIL NIL NIL) "digest" ("boundary" "d") NIL NIL NIL)`
	if string(p.BodyStructure) != want {
		t.Errorf("BODYSTRUCTURE\n got %s\nwant %s", p.BodyStructure, want)
	}
	pt, _ := partByPath(p, "1.1")
	if got := string(raw[pt.BodyOffset : pt.BodyOffset+pt.BodyLen]); got != "first" {
		t.Errorf("BODY[1.1] = %q", got)
	}
}

func nested(depth int) []byte {
	var b strings.Builder
	b.WriteString("Subject: deep\r\n")
	for i := 0; i < depth; i++ {
		b.WriteString("Content-Type: multipart/mixed; boundary=b" + itoa(i) + "\r\n\r\n--b" + itoa(i) + "\r\n")
	}
	b.WriteString("Content-Type: text/plain\r\n\r\ndeepest\r\n")
	for i := depth - 1; i >= 0; i-- {
		b.WriteString("--b" + itoa(i) + "--\r\n")
	}
	return []byte(b.String())
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestDepthCap(t *testing.T) {
	raw := nested(150)
	p := mustParse(t, raw)
	checkInvariants(t, raw, p)
	if !p.Malformed {
		t.Error("nesting past the cap not marked Malformed")
	}
	deepest := 0
	for _, pt := range p.Parts {
		deepest = max(deepest, strings.Count(pt.Path, ".")+1)
	}
	if deepest != defaultMaxDepth {
		t.Errorf("deepest part is at depth %d, want %d", deepest, defaultMaxDepth)
	}
	if bytes.Count(p.BodyStructure, []byte(`"text" "plain"`)) != 1 {
		t.Errorf("the cut-off entity should be one opaque text/plain leaf")
	}

	raw = nested(5)
	p = mustParse(t, raw)
	if p.Malformed || len(p.Parts) != 6 {
		t.Errorf("depth 5: Malformed=%v parts=%d", p.Malformed, len(p.Parts))
	}
	last := p.Parts[len(p.Parts)-1]
	if last.Path != "1.1.1.1.1" || string(raw[last.BodyOffset:last.BodyOffset+last.BodyLen]) != "deepest" {
		t.Errorf("deepest part %+v", last)
	}
}

func TestPartCap(t *testing.T) {
	var b strings.Builder
	b.WriteString("Content-Type: multipart/mixed; boundary=x\r\n\r\n")
	for i := 0; i < 50; i++ {
		b.WriteString("--x\r\n\r\npart\r\n")
	}
	b.WriteString("--x--\r\nepilogue\r\n")
	raw := []byte(b.String())
	p, err := ParseWithOptions(bytes.NewReader(raw), Options{MaxParts: 10})
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, raw, mustParse(t, raw))
	if !p.Malformed || len(p.Parts) != 10 || p.Size != int64(len(raw)) {
		t.Errorf("Malformed=%v parts=%d size=%d", p.Malformed, len(p.Parts), p.Size)
	}
	if p.Parts[0].BodyOffset+p.Parts[0].BodyLen != p.Size {
		t.Errorf("root body does not reach the end")
	}
}

// TestImplicitCloseByOuterDelimiter: an inner multipart that never closes
// ends at the outer delimiter (RFC 2046 §5.1.2).
func TestImplicitCloseByOuterDelimiter(t *testing.T) {
	raw := []byte("Content-Type: multipart/mixed; boundary=outer\r\n\r\n--outer\r\n" +
		"Content-Type: multipart/alternative; boundary=inner\r\n\r\n--inner\r\n\r\ninner text\r\n" +
		"--outer\r\n\r\nsecond\r\n--outer--\r\n")
	p := mustParse(t, raw)
	checkInvariants(t, raw, p)
	if !p.Malformed {
		t.Error("unclosed inner multipart not marked Malformed")
	}
	for path, want := range map[string]string{"1.1": "inner text", "2": "second"} {
		pt, ok := partByPath(p, path)
		if !ok || string(raw[pt.BodyOffset:pt.BodyOffset+pt.BodyLen]) != want {
			t.Errorf("BODY[%s] = %+v, want %q", path, pt, want)
		}
	}
}

func TestBoundaryLookalikes(t *testing.T) {
	// "--bx" and "--b junk" are not delimiters of "b"; "--b  " (padding) is.
	raw := []byte("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b  \r\n\r\n--bx\r\n--b junk\r\n--b--\t\r\n")
	p := mustParse(t, raw)
	checkInvariants(t, raw, p)
	pt, _ := partByPath(p, "1")
	if got := string(raw[pt.BodyOffset : pt.BodyOffset+pt.BodyLen]); got != "--bx\r\n--b junk" || p.Malformed {
		t.Errorf("BODY[1] = %q, Malformed=%v", got, p.Malformed)
	}
}

func TestNonIdentityRFC822IsOpaque(t *testing.T) {
	raw := []byte("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nU3ViamVjdDogeA0KDQp5\r\n--b--\r\n")
	p := mustParse(t, raw)
	checkInvariants(t, raw, p)
	want := `(("application" "octet-stream" NIL NIL NIL "base64" 20 NIL NIL NIL NIL) "mixed" ("boundary" "b") NIL NIL NIL)`
	if string(p.BodyStructure) != want || !p.Malformed {
		t.Errorf("BODYSTRUCTURE %s (Malformed=%v), want %s", p.BodyStructure, p.Malformed, want)
	}
}

func TestTextCap(t *testing.T) {
	line := strings.Repeat("é", 40) + "\r\n"
	raw := []byte("Content-Type: text/plain; charset=utf-8\r\n\r\n" + strings.Repeat(line, 2*MaxTextBytes/len(line)))
	p := mustParse(t, raw)
	checkInvariants(t, raw, p)
	if len(p.Text) > MaxTextBytes || len(p.Text) < MaxTextBytes-100 || !strings.HasPrefix(p.Text, "éé") {
		t.Errorf("Text is %d octets, want close to MaxTextBytes", len(p.Text))
	}
}

func TestHeaderCap(t *testing.T) {
	var b strings.Builder
	for b.Len() < 2*MaxHeaderBytes {
		b.WriteString("X-Filler: " + strings.Repeat("y", 100) + "\r\n")
	}
	b.WriteString("\r\nbody\r\n")
	raw := []byte(b.String())
	p := mustParse(t, raw)
	checkInvariants(t, raw, p)
	if len(p.Header) != MaxHeaderBytes || p.Parts[0].HeaderLen != int64(len(raw)-6) {
		t.Errorf("Header %d octets, header block %d", len(p.Header), p.Parts[0].HeaderLen)
	}
}

type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(b []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(b, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestReadErrorIsReturned(t *testing.T) {
	boom := errors.New("connection reset")
	for _, prefix := range []string{"", "Subject: x\r\n", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\npart"} {
		_, err := Parse(&failingReader{data: []byte(prefix), err: boom})
		if !errors.Is(err, boom) {
			t.Errorf("prefix %q: err = %v, want %v", prefix, err, boom)
		}
	}
}

var _ io.Reader = (*failingReader)(nil)

// TestStrayCommentEnd is the regression for a hang the fuzzer found: a ')'
// outside any comment in an address field.
func TestStrayCommentEnd(t *testing.T) {
	raw := []byte("From: a) b@c\r\nTo: )\r\n\r\n")
	p := mustParse(t, raw)
	checkInvariants(t, raw, p)
	if want := `(NIL NIL ((NIL NIL "ab" "c")) ((NIL NIL "ab" "c")) ((NIL NIL "ab" "c")) NIL NIL NIL NIL NIL)`; string(p.Envelope) != want {
		t.Errorf("ENVELOPE\n got %s\nwant %s", p.Envelope, want)
	}
}

func TestHTMLWithNonASCII(t *testing.T) {
	// Upper-case letters whose lower case has another length must not shift
	// the tag scanner.
	got := stripHTML("<P>\u023a\u023a<B>x</B>\xff<SCRIPT>y</SCRIPT>z")
	if want := "\n\u023a\u023ax\xffz"; got != want {
		t.Errorf("stripHTML = %q, want %q", got, want)
	}
}

// TestAddressOddities pins what Dovecot 2.3.19 sends for the same header:
// an escaped quote in a name, a null address, a missing domain and a
// quoted local part.
func TestAddressOddities(t *testing.T) {
	raw := []byte("To: \"q\\\"x\" <x@y>, <>, no-at, \"quoted local\"@z\r\n\r\n")
	p := mustParse(t, raw)
	checkInvariants(t, raw, p)
	want := "(NIL NIL NIL NIL NIL (({3}\r\nq\"x NIL \"x\" \"y\")(NIL NIL \"MISSING_MAILBOX\" \"MISSING_DOMAIN\")(NIL NIL \"no-at\" \"MISSING_DOMAIN\")(NIL NIL \"quoted local\" \"z\")) NIL NIL NIL NIL)"
	if string(p.Envelope) != want {
		t.Errorf("ENVELOPE\n got %q\nwant %q", p.Envelope, want)
	}
	if want := "q\"x <x@y>, no-at, quoted local@z"; p.To != want {
		t.Errorf("To = %q, want %q", p.To, want)
	}
}
