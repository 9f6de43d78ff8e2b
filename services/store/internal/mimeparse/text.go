package mimeparse

import (
	"bytes"
	"encoding/base64"
	"html"
	"io"
	"mime"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/textproto"
	"golang.org/x/text/encoding/charmap"
)

// decodeText undoes the transfer encoding and the charset of a text part
// and, for HTML, removes markup. bad reports broken base64 or an unknown
// charset; the text is recovered as far as possible anyway.
func decodeText(raw []byte, enc, cs string, isHTML bool) (string, bool) {
	var body []byte
	bad := false
	switch strings.ToLower(enc) {
	case "base64":
		body, bad = decodeBase64(raw)
	case "quoted-printable":
		body = decodeQP(raw)
	default:
		body = raw
	}
	text, known := convertCharset(cs, body)
	if !known {
		bad = true
	}
	if isHTML {
		text = stripHTML(text)
	}
	return text, bad
}

// decodeBase64 decodes leniently: characters outside the alphabet are
// skipped (white space silently, anything else marking the input bad) and
// a truncated final quantum is dropped.
func decodeBase64(raw []byte) ([]byte, bool) {
	clean := make([]byte, 0, len(raw))
	bad := false
	for _, c := range raw {
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '+', c == '/':
			clean = append(clean, c)
		case c == '=', c == ' ', c == '\t', c == '\r', c == '\n':
		default:
			bad = true
		}
	}
	if len(clean)%4 == 1 {
		clean = clean[:len(clean)-1]
		bad = true
	}
	out := make([]byte, base64.RawStdEncoding.DecodedLen(len(clean)))
	n, err := base64.RawStdEncoding.Decode(out, clean)
	if err != nil {
		bad = true
	}
	return out[:n], bad
}

// decodeQP decodes quoted-printable (RFC 2045 §6.7) leniently: an '='
// not followed by two hex digits or a line break is kept as it is.
func decodeQP(raw []byte) []byte {
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '=' {
			out = append(out, c)
			continue
		}
		if i+2 < len(raw) && raw[i+1] == '\r' && raw[i+2] == '\n' {
			i += 2
			continue
		}
		if i+1 < len(raw) && raw[i+1] == '\n' {
			i++
			continue
		}
		if i+2 < len(raw) && isHex(raw[i+1]) && isHex(raw[i+2]) {
			out = append(out, unhex(raw[i+1])<<4|unhex(raw[i+2]))
			i += 2
			continue
		}
		// A soft break with trailing white space before it.
		j := i + 1
		for j < len(raw) && (raw[j] == ' ' || raw[j] == '\t') {
			j++
		}
		if j > i+1 && j < len(raw) && (raw[j] == '\n' || raw[j] == '\r') {
			if raw[j] == '\r' && j+1 < len(raw) && raw[j+1] == '\n' {
				j++
			}
			i = j
			continue
		}
		out = append(out, c)
	}
	return out
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// convertCharset converts body from charset cs to UTF-8. known is false when
// the charset is not supported; the text is then taken as UTF-8 if valid,
// else as windows-1252 (the usual truth behind mislabeled mail).
func convertCharset(cs string, body []byte) (text string, known bool) {
	switch strings.ToLower(strings.TrimSpace(cs)) {
	case "", "us-ascii", "ascii", "utf-8", "utf8":
		return fallbackUTF8(body), true
	}
	r, err := charset.Reader(cs, bytes.NewReader(body))
	if err != nil {
		return fallbackUTF8(body), false
	}
	// The decoder's output is bounded by its input (at most a few octets of
	// UTF-8 per input octet), which is bounded by maxRawText.
	out, err := io.ReadAll(r)
	if err != nil {
		return fallbackUTF8(body), false
	}
	return strings.ToValidUTF8(string(out), "\uFFFD"), true
}

func toUTF8(cs string, b []byte) string {
	s, _ := convertCharset(cs, b)
	return s
}

func fallbackUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	out, err := charmap.Windows1252.NewDecoder().Bytes(b)
	if err != nil {
		return strings.ToValidUTF8(string(b), "\uFFFD")
	}
	return string(out)
}

// truncateUTF8 cuts s to at most n octets without splitting a character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// stripHTML reduces HTML to its text for searching: tags, comments, scripts
// and styles go, entities are decoded, block tags become line breaks.
func stripHTML(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	lower := asciiLower(s) // same length as s, so indexes agree
	for i := 0; i < len(s); {
		if s[i] != '<' {
			j := strings.IndexByte(s[i:], '<')
			if j < 0 {
				j = len(s) - i
			}
			b.WriteString(html.UnescapeString(s[i : i+j]))
			i += j
			continue
		}
		switch {
		case strings.HasPrefix(lower[i:], "<!--"):
			j := strings.Index(s[i+4:], "-->")
			if j < 0 {
				return b.String()
			}
			i += 4 + j + 3
			continue
		case strings.HasPrefix(lower[i:], "<script"), strings.HasPrefix(lower[i:], "<style"):
			closing := "</script"
			if strings.HasPrefix(lower[i:], "<style") {
				closing = "</style"
			}
			j := strings.Index(lower[i:], closing)
			if j < 0 {
				return b.String()
			}
			i += j
		}
		j := strings.IndexByte(s[i:], '>')
		if j < 0 {
			return b.String()
		}
		tag := lower[i+1 : i+j]
		tag = strings.TrimPrefix(tag, "/")
		if k := strings.IndexAny(tag, " \t\r\n/"); k >= 0 {
			tag = tag[:k]
		}
		switch tag {
		case "br", "p", "div", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "blockquote", "title":
			b.WriteByte('\n')
		case "td", "th":
			b.WriteByte(' ')
		}
		i += j + 1
	}
	return b.String()
}

var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// decodeWords decodes RFC 2047 encoded words in an unfolded header value.
func decodeWords(v []byte) string {
	s := fallbackUTF8(v)
	if !strings.Contains(s, "=?") {
		return s
	}
	d, err := wordDecoder.DecodeHeader(s)
	if err != nil {
		return s
	}
	return strings.ToValidUTF8(d, "\uFFFD")
}

// fillSearchFields sets the decoded header fields of out from the top-level
// header.
func fillSearchFields(out *Parsed, h *textproto.Header) {
	if v, ok := rawValue(h, "Subject"); ok {
		out.Subject = decodeWords(v)
	}
	out.From = decodedAddresses(h, "From")
	out.To = decodedAddresses(h, "To")
	out.Cc = decodedAddresses(h, "Cc")
	out.Bcc = decodedAddresses(h, "Bcc")
	if v, ok := rawValue(h, "Message-Id"); ok {
		out.MessageID = fallbackUTF8(v)
	}
	if v, ok := rawValue(h, "In-Reply-To"); ok {
		out.InReplyTo = fallbackUTF8(v)
	}
	if v, ok := rawValue(h, "Date"); ok {
		out.Date = parseDate(string(v))
	}
}

// decodedAddresses renders an address list for searching:
// "Name <local@domain>, group: a@b;" with names decoded to UTF-8.
func decodedAddresses(h *textproto.Header, k string) string {
	v, ok := rawValue(h, k)
	if !ok {
		return ""
	}
	var b strings.Builder
	for _, a := range parseAddressList(string(v)) {
		switch {
		case a.groupStart:
			if b.Len() > 0 {
				b.WriteString(", ")
			}
			b.WriteString(decodeWords([]byte(a.mailbox)))
			b.WriteString(":")
			continue
		case a.groupEnd:
			b.WriteString(";")
			continue
		}
		if a.mailbox == missingMailbox && a.host == missingDomain {
			continue // <>
		}
		if b.Len() > 0 && !strings.HasSuffix(b.String(), ":") {
			b.WriteString(", ")
		} else if b.Len() > 0 {
			b.WriteByte(' ')
		}
		addr := a.mailbox + "@" + a.host
		if a.host == missingDomain {
			addr = a.mailbox
		}
		if a.hasName && a.name != "" {
			b.WriteString(decodeWords([]byte(a.name)))
			b.WriteString(" <")
			b.WriteString(fallbackUTF8([]byte(addr)))
			b.WriteString(">")
		} else {
			b.WriteString(fallbackUTF8([]byte(addr)))
		}
	}
	return b.String()
}

// parseDate parses an RFC 5322 date, tolerating common deviations; the zero
// time when it cannot.
func parseDate(s string) time.Time {
	s = strings.TrimSpace(s)
	if t, err := mail.ParseDate(s); err == nil {
		return t
	}
	// Trailing comments and junk such as "(PST)" or "+0000 (UTC)".
	if i := strings.IndexByte(s, '('); i > 0 {
		if t, err := mail.ParseDate(strings.TrimSpace(s[:i])); err == nil {
			return t
		}
	}
	for _, layout := range []string{
		"Mon, 2 Jan 2006 15:04 -0700",
		"2 Jan 2006 15:04 -0700",
		"Mon, 2 Jan 2006 15:04:05 MST",
		"Mon, 2 Jan 06 15:04:05 -0700",
		"Mon Jan 2 15:04:05 2006",
		"Mon Jan 2 15:04:05 -0700 2006",
		time.RFC3339,
	} {
		if t, err := time.Parse(layout, s); err == nil {
			return t
		}
	}
	return time.Time{}
}

// asciiLower lower-cases ASCII letters only, keeping every other octet (and
// so every index) where it is; strings.ToLower may change lengths.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
