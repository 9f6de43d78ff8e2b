package msgauth

import (
	"strings"
	"unicode/utf8"
)

// resinfo is one method's result in an Authentication-Results field
// (RFC 8601 §2.2): method=result, an optional comment, an optional reason
// and properties, in the order given.
type resinfo struct {
	method  string
	result  string
	comment string // our own text only: never client data
	reason  string
	props   []prop
}

type prop struct{ name, value string }

// foldWidth is where we fold: RFC 5322 §2.1.1 asks for lines of at most 78
// characters. A single long token may still exceed it; values are bounded
// well below the hard limit of 998.
const foldWidth = 78

// formatAuthResults builds a complete "Authentication-Results: ...\r\n"
// field. Each resinfo starts a new folded line; long ones fold again between
// properties. Only CRLF ever appears, and only before white space.
func formatAuthResults(authservID string, infos []resinfo) string {
	var b strings.Builder
	b.WriteString("Authentication-Results: ")
	b.WriteString(authservID)
	b.WriteString(";")
	if len(infos) == 0 {
		b.WriteString(" none\r\n")
		return b.String()
	}
	for i, ri := range infos {
		words := []string{ri.method + "=" + ri.result}
		if ri.comment != "" {
			words = append(words, "("+ri.comment+")")
		}
		if ri.reason != "" {
			// ";" inside the quoted reason is legal but trips parsers that
			// split on it; a reason reads as well with ",".
			reason := strings.ReplaceAll(asciiOnly(truncate(cleanValue(ri.reason), 200)), ";", ",")
			words = append(words, "reason="+quoteString(reason))
		}
		for _, p := range ri.props {
			words = append(words, p.name+"="+formatPvalue(p.value))
		}
		if i < len(infos)-1 {
			words[len(words)-1] += ";"
		}
		b.WriteString("\r\n\t")
		col := 8 // a tab counts as up to 8 columns
		for j, w := range words {
			if j > 0 {
				if col+1+len(w) > foldWidth {
					b.WriteString("\r\n\t")
					col = 8
				} else {
					b.WriteByte(' ')
					col++
				}
			}
			b.WriteString(w)
			col += len(w)
		}
	}
	b.WriteString("\r\n")
	return b.String()
}

// formatPvalue writes a property value (RFC 8601 §2.2 pvalue) bare when it
// is a MIME token or a dot-atom address, and as a quoted-string otherwise.
func formatPvalue(s string) string {
	if s != "" && (isToken(s) || isDotAtomAddress(s)) {
		return s
	}
	return quoteString(s)
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return s != ""
}

// isDotAtomAddress reports whether s is [dot-atom-local-part]@domain-name,
// all ASCII.
func isDotAtomAddress(s string) bool {
	at := strings.LastIndexByte(s, '@')
	if at < 0 || !isDomainName(s[at+1:]) {
		return false
	}
	local := s[:at]
	if local == "" {
		return true
	}
	for _, atom := range strings.Split(local, ".") {
		if atom == "" {
			return false
		}
		for i := 0; i < len(atom); i++ {
			c := atom[i]
			alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
			if !alnum && !strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", rune(c)) {
				return false
			}
		}
	}
	return true
}

func quoteString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

// cleanValue drops control characters, CR and LF above all, and invalid
// UTF-8 from a value that came from the network, so that it can go into a
// header field without ending or folding it (lesson 19).
func cleanValue(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return -1
		}
		return r
	}, s)
}

// asciiOnly replaces non-ASCII characters, for free text such as reasons.
func asciiOnly(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 0x80 {
			return '?'
		}
		return r
	}, s)
}
