package msgauth

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"

	"golang.org/x/net/idna"
)

// ErrHeaderTooLarge is returned when the header block of a message exceeds
// the configured limit. The caller should have refused such a message
// already; here it only protects our memory.
var ErrHeaderTooLarge = errors.New("msgauth: header block too large")

var errNoSPFIdentity = errors.New("msgauth: no domain to check SPF for")

// readHeaderBlock reads the header block, including the empty line that ends
// it, from br. A message that ends without an empty line is all header. A
// bare LF ends a line as well as CRLF does, as in the DKIM library.
func readHeaderBlock(br *bufio.Reader, limit int) ([]byte, error) {
	var block []byte
	for {
		line, err := br.ReadSlice('\n')
		if len(block)+len(line) > limit {
			return nil, ErrHeaderTooLarge
		}
		block = append(block, line...)
		switch {
		case err == nil:
			if isBlankLine(line) {
				return block, nil
			}
		case errors.Is(err, bufio.ErrBufferFull):
			// A line longer than the buffer: keep reading it.
		case errors.Is(err, io.EOF):
			return block, nil
		default:
			return nil, err
		}
	}
}

func isBlankLine(line []byte) bool {
	return string(line) == "\r\n" || string(line) == "\n"
}

// headerField is one field of a header block: its name and its raw value
// (everything after the colon, folding and line end included).
type headerField struct {
	name  string
	value string
}

// splitFields splits a header block into fields. Lines that are neither a
// field nor a continuation (no colon) are skipped, as a lenient reader must.
func splitFields(block []byte) []headerField {
	var fields []headerField
	for len(block) > 0 {
		end := bytes.IndexByte(block, '\n') + 1
		if end == 0 {
			end = len(block)
		}
		line := block[:end]
		block = block[end:]
		if isBlankLine(line) {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			if len(fields) > 0 {
				fields[len(fields)-1].value += string(line)
			}
			continue
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		fields = append(fields, headerField{
			name:  string(bytes.TrimRight(name, " \t")),
			value: string(value),
		})
	}
	return fields
}

// unfold removes folding line breaks (RFC 5322 §2.2.3) and surrounding
// white space.
func unfold(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "")
	s = strings.ReplaceAll(s, "\n", "")
	s = strings.ReplaceAll(s, "\r", "")
	return strings.TrimSpace(s)
}

// dkimTags parses the tag=value list of a DKIM-Signature field (RFC 6376
// §3.2) far enough to report d=, i=, s=, a= and b= in the
// Authentication-Results field. The signature itself is checked by the DKIM
// library; a malformed list only loses us the report details.
func dkimTags(value string) map[string]string {
	tags := make(map[string]string)
	for _, spec := range strings.Split(value, ";") {
		name, val, ok := strings.Cut(spec, "=")
		if !ok {
			continue
		}
		name = strings.TrimSpace(unfold(name))
		if _, dup := tags[name]; dup || name == "" {
			continue
		}
		tags[name] = stripFWS(val)
	}
	return tags
}

// stripFWS removes all folding white space, which RFC 6376 §3.2 allows
// anywhere inside a tag value such as b= or bh=.
func stripFWS(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, s)
}

var errNoAuthor = errors.New("no author domain in From")

// authorDomains returns the distinct domains of every address in every From
// field (RFC 7489 §6.6.1 calls this the RFC5322.From domain). A message with
// several authors gets each domain checked, so that an extra From cannot
// hide a forged one.
func authorDomains(fromValues []string) ([]string, error) {
	var domains []string
	for _, v := range fromValues {
		addrs := parseAddresses(unfold(v))
		if len(addrs) == 0 {
			return nil, fmt.Errorf("%w: %q", errNoAuthor, truncate(unfold(v), 100))
		}
		for _, a := range addrs {
			at := strings.LastIndexByte(a, '@')
			if at < 0 {
				return nil, fmt.Errorf("%w: %q", errNoAuthor, truncate(a, 100))
			}
			d := normalizeDomain(a[at+1:])
			if !isDomainName(d) {
				return nil, fmt.Errorf("%w: bad domain %q", errNoAuthor, truncate(d, 100))
			}
			if !containsString(domains, d) {
				domains = append(domains, d)
			}
		}
	}
	if len(domains) == 0 {
		return nil, errNoAuthor
	}
	return domains, nil
}

// parseAddresses returns the addr-specs of an address list. It tries the
// strict parser first and falls back, for the malformed From fields common
// in real mail (unknown charsets in display names, stray characters), to the
// text in the last angle brackets or else the whole value.
func parseAddresses(v string) []string {
	if list, err := mail.ParseAddressList(v); err == nil {
		out := make([]string, 0, len(list))
		for _, a := range list {
			out = append(out, a.Address)
		}
		return out
	}
	if i := strings.LastIndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i:], '>'); j > 0 {
			v = v[i+1 : i+j]
		}
	}
	v = strings.TrimSpace(v)
	if v == "" || strings.ContainsAny(v, " \t,;<>") {
		return nil
	}
	return []string{v}
}

// normalizeDomain lower-cases a domain, drops a trailing dot and turns
// U-labels into A-labels, so that alignment compares like with like.
func normalizeDomain(d string) string {
	d = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
	for i := 0; i < len(d); i++ {
		if d[i] >= 0x80 {
			if a, err := idna.Lookup.ToASCII(d); err == nil {
				return a
			}
			break
		}
	}
	return d
}

// isDomainName reports whether d is a plausible ASCII host name: labels of
// letters, digits, hyphens and underscores, 1 to 63 octets, 253 in all.
func isDomainName(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
			if !ok {
				return false
			}
		}
	}
	return true
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// AuthServID returns the authserv-id of an Authentication-Results field
// value (RFC 8601 §2.2): the first token or quoted-string after any
// comments and folding white space. It returns "" if there is none.
func AuthServID(value string) string {
	s := skipCFWS(value)
	if strings.HasPrefix(s, `"`) {
		var b strings.Builder
		for i := 1; i < len(s); i++ {
			switch s[i] {
			case '\\':
				if i+1 < len(s) {
					i++
					b.WriteByte(s[i])
				}
			case '"':
				return b.String()
			default:
				b.WriteByte(s[i])
			}
		}
		return "" // unterminated
	}
	end := 0
	for end < len(s) && isTokenChar(s[end]) {
		end++
	}
	return s[:end]
}

// skipCFWS skips white space, line breaks and (possibly nested) comments
// (RFC 5322 §3.2.2).
func skipCFWS(s string) string {
	depth := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && depth > 0:
			i++
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth > 0, c == ' ', c == '\t', c == '\r', c == '\n':
		default:
			return s[i:]
		}
	}
	return ""
}

// isTokenChar reports whether c may appear in a MIME token (RFC 2045 §5.1):
// printable, not space, not a tspecial.
func isTokenChar(c byte) bool {
	if c <= ' ' || c >= 0x7f {
		return false
	}
	return !strings.ContainsRune(`()<>@,;:\"/[]?=`, rune(c))
}

// ClaimsAuthServID reports whether an Authentication-Results field value
// names authservID, compared without regard to case or a trailing dot. Such a field on an incoming message was
// not written by us and must not reach the mailbox (RFC 8601 §5).
func ClaimsAuthServID(value, authservID string) bool {
	id := AuthServID(value)
	return id != "" && strings.EqualFold(strings.TrimSuffix(id, "."), strings.TrimSuffix(authservID, "."))
}

// isAuthResultsField reports whether a header field name is
// Authentication-Results.
func isAuthResultsField(name string) bool {
	return strings.EqualFold(strings.TrimSpace(name), "Authentication-Results")
}

// StripOwnResults returns a reader that yields msg without the
// Authentication-Results fields in its header block that claim this
// verifier's authserv-id (RFC 8601 §5). Everything else, the body in
// particular, passes through byte for byte, streaming. If the header block
// exceeds Options.MaxHeaderBytes, reading fails with ErrHeaderTooLarge.
func (v *Verifier) StripOwnResults(msg io.Reader) io.Reader {
	return &stripReader{br: bufio.NewReader(msg), id: v.authservID, limit: v.maxHeader}
}

type stripReader struct {
	br    *bufio.Reader
	id    string
	limit int
	done  bool   // header block filtered; body passes through
	out   []byte // filtered header block not yet read
	err   error
}

func (s *stripReader) Read(p []byte) (int, error) {
	if !s.done {
		s.done = true
		block, err := readHeaderBlock(s.br, s.limit)
		if err != nil {
			s.err = err
			return 0, err
		}
		s.out = filterHeader(block, s.id)
	}
	if s.err != nil {
		return 0, s.err
	}
	if len(s.out) > 0 {
		n := copy(p, s.out)
		s.out = s.out[n:]
		return n, nil
	}
	return s.br.Read(p)
}

// filterHeader returns block without the Authentication-Results fields that
// claim authservID, keeping every other byte as it was.
func filterHeader(block []byte, authservID string) []byte {
	out := make([]byte, 0, len(block))
	var field []byte // current field, lines as read
	flush := func() {
		if len(field) == 0 {
			return
		}
		name, value, ok := bytes.Cut(field, []byte(":"))
		if !ok || !isAuthResultsField(string(name)) || !ClaimsAuthServID(string(value), authservID) {
			out = append(out, field...)
		}
		field = nil
	}
	for len(block) > 0 {
		end := bytes.IndexByte(block, '\n') + 1
		if end == 0 {
			end = len(block)
		}
		line := block[:end]
		block = block[end:]
		if isBlankLine(line) {
			flush()
			out = append(out, line...)
			out = append(out, block...)
			return out
		}
		if (line[0] == ' ' || line[0] == '\t') && len(field) > 0 {
			field = append(field, line...)
			continue
		}
		flush()
		field = append(field, line...)
	}
	flush()
	return out
}
