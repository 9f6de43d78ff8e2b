package mimeparse

import (
	"strings"
)

// address is one entry of an ENVELOPE address list (RFC 9051 §7.5.2):
// a mailbox, or the start (groupStart) or end (groupEnd) of a group.
type address struct {
	name, adl, mailbox, host string
	hasName, hasAdl          bool
	groupStart, groupEnd     bool
}

// Placeholders for an address part that is missing, as Dovecot writes
// them: a NIL host would turn a broken address into a group marker.
const (
	missingMailbox = "MISSING_MAILBOX"
	missingDomain  = "MISSING_DOMAIN"
)

type addrToken struct {
	kind byte   // 'a' atom (dots included), 'q' quoted string, 'd' domain literal, or a special
	text string // unquoted text for 'q', raw for the others
	raw  string // as written
}

// tokenizeAddresses splits an unfolded address-list value into RFC 5322
// lexical tokens; comments are dropped but the last one is remembered per
// token position so "a@b (Name)" can lend its comment as a name.
func tokenizeAddresses(s string) (toks []addrToken, comments map[int]string) {
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			i++
		case c == '(':
			depth, j := 0, i
			var b strings.Builder
			for ; j < len(s); j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
					b.WriteByte(s[j])
					continue
				}
				if s[j] == '(' {
					depth++
					if depth == 1 {
						continue
					}
				}
				if s[j] == ')' {
					depth--
					if depth == 0 {
						j++
						break
					}
				}
				b.WriteByte(s[j])
			}
			if comments == nil {
				comments = map[int]string{}
			}
			comments[len(toks)] = strings.TrimSpace(b.String())
			i = j
		case c == '"':
			var b strings.Builder
			j := i + 1
			for ; j < len(s); j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
					b.WriteByte(s[j])
					continue
				}
				if s[j] == '"' {
					j++
					break
				}
				b.WriteByte(s[j])
			}
			toks = append(toks, addrToken{kind: 'q', text: b.String(), raw: s[i:min(j, len(s))]})
			i = j
		case c == '[':
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				j = len(s) - i - 1
			}
			toks = append(toks, addrToken{kind: 'd', text: s[i : i+j+1], raw: s[i : i+j+1]})
			i += j + 1
		case c == ')':
			i++ // a stray comment end
		case strings.IndexByte("<>@,;:", c) >= 0:
			toks = append(toks, addrToken{kind: c, text: s[i : i+1], raw: s[i : i+1]})
			i++
		default:
			j := i
			for j < len(s) && strings.IndexByte(" \t\r\n()\"[<>@,;:", s[j]) < 0 {
				j++
			}
			toks = append(toks, addrToken{kind: 'a', text: s[i:j], raw: s[i:j]})
			i = j
		}
	}
	return toks, comments
}

// parseAddressList parses an address-list header value tolerantly into
// ENVELOPE entries; groups become start and end markers. Names are the
// phrase as written (quoted strings unquoted, encoded words kept).
func parseAddressList(s string) []address {
	toks, comments := tokenizeAddresses(s)
	var out []address
	inGroup := false
	i := 0
	for i < len(toks) {
		t := toks[i]
		if t.kind == ',' {
			i++
			continue
		}
		if t.kind == ';' {
			if inGroup {
				out = append(out, address{groupEnd: true})
				inGroup = false
			}
			i++
			continue
		}
		// Collect a phrase (or a bare local part) up to a special.
		start := i
		for i < len(toks) && (toks[i].kind == 'a' || toks[i].kind == 'q' || toks[i].kind == 'd') {
			i++
		}
		phrase := toks[start:i]
		var next byte
		if i < len(toks) {
			next = toks[i].kind
		}
		switch next {
		case ':':
			i++
			if inGroup {
				// Nested groups do not exist; treat as a name-less separator.
				continue
			}
			out = append(out, address{groupStart: true, mailbox: phraseText(phrase)})
			inGroup = true
		case '<':
			i++
			a := address{}
			if len(phrase) > 0 {
				a.name, a.hasName = phraseText(phrase), true
			}
			// Optional obsolete route: "@a,@b:".
			var route []string
			j := i
			for j < len(toks) && toks[j].kind == '@' {
				k := j + 1
				var dom strings.Builder
				for k < len(toks) && (toks[k].kind == 'a' || toks[k].kind == 'd') {
					dom.WriteString(toks[k].raw)
					k++
				}
				route = append(route, "@"+dom.String())
				if k < len(toks) && toks[k].kind == ',' {
					k++
				}
				j = k
			}
			if len(route) > 0 && j < len(toks) && toks[j].kind == ':' {
				a.adl, a.hasAdl = strings.Join(route, ","), true
				i = j + 1
			}
			local, host, ni := parseAddrSpec(toks, i, '>')
			i = ni
			if i < len(toks) && toks[i].kind == '>' {
				i++
			}
			a.mailbox, a.host = orMissing(local, missingMailbox), orMissing(host, missingDomain)
			out = append(out, a)
		case '@':
			local := joinLocal(phrase)
			_, host, ni := parseAddrSpec(toks, i, 0)
			i = ni
			a := address{mailbox: orMissing(local, missingMailbox), host: orMissing(host, missingDomain)}
			if c, ok := comments[i]; ok && c != "" {
				a.name, a.hasName = c, true
			}
			out = append(out, a)
		default:
			if len(phrase) > 0 {
				out = append(out, address{mailbox: joinLocal(phrase), host: missingDomain})
			} else if i < len(toks) {
				i++ // a stray special such as '>'
			}
		}
	}
	if inGroup {
		out = append(out, address{groupEnd: true})
	}
	return out
}

// parseAddrSpec reads [local-part] "@" domain starting at toks[i], stopping
// at stopKind, ',' or ';'.
func parseAddrSpec(toks []addrToken, i int, stopKind byte) (local, host string, next int) {
	var lb, hb strings.Builder
	seenAt := false
	for ; i < len(toks); i++ {
		t := toks[i]
		if t.kind == stopKind || t.kind == ',' || t.kind == ';' || (stopKind == 0 && t.kind == '<') {
			break
		}
		if t.kind == '@' && !seenAt {
			seenAt = true
			continue
		}
		if t.kind != 'a' && t.kind != 'q' && t.kind != 'd' {
			continue
		}
		if seenAt {
			hb.WriteString(t.raw)
		} else {
			lb.WriteString(t.text)
		}
	}
	return lb.String(), hb.String(), i
}

func orMissing(s, missing string) string {
	if s == "" {
		return missing
	}
	return s
}

// phraseText joins the words of a display name with single spaces,
// unquoting quoted strings.
func phraseText(toks []addrToken) string {
	var b strings.Builder
	for i, t := range toks {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(t.text)
	}
	return b.String()
}

// joinLocal joins the tokens of a local part, quoted strings unquoted as
// Dovecot does: "a b"@c has the mailbox a b.
func joinLocal(toks []addrToken) string {
	var b strings.Builder
	for _, t := range toks {
		b.WriteString(t.text)
	}
	return b.String()
}
