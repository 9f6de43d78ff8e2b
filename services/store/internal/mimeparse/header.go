package mimeparse

import (
	"bytes"
	"net/url"
	"strconv"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// splitHeader turns a raw header block into fields. textproto.ReadHeader
// stops at the first line without a colon; real mail has such lines (and
// continuation lines with nothing to continue), so the block is split here,
// tolerantly, and each well-formed field handed to textproto. bad reports
// that something was skipped.
func splitHeader(raw []byte) (h textproto.Header, bad bool) {
	var fields [][]byte
	cur := -1 // index in fields of the field being continued
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\n')
		var line []byte
		if i < 0 {
			line, raw = raw, nil
		} else {
			line, raw = raw[:i+1], raw[i+1:]
		}
		content := bytes.TrimRight(line, "\r\n")
		if len(content) == 0 {
			break // the blank line ending the header
		}
		if content[0] == ' ' || content[0] == '\t' {
			if cur < 0 {
				bad = true
				continue
			}
			fields[cur] = append(fields[cur], line...)
			continue
		}
		if !validFieldName(content) {
			bad = true
			cur = -1
			continue
		}
		fields = append(fields, append([]byte(nil), line...))
		cur = len(fields) - 1
	}
	// textproto.Header keeps fields newest-first: add them in reverse so
	// that Get returns the first occurrence, as RFC 9051 §7.5.2 wants.
	for i := len(fields) - 1; i >= 0; i-- {
		h.AddRaw(fields[i])
	}
	return h, bad
}

// validFieldName reports whether line starts with "name:" where name is
// printable US-ASCII without ':' (RFC 5322 §2.2), white space before the
// colon tolerated.
func validFieldName(line []byte) bool {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return false
	}
	name := bytes.TrimRight(line[:colon], " \t")
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if c < '!' || c > '~' {
			return false
		}
	}
	return true
}

// rawValue returns the first field named k, unfolded (CR and LF removed,
// RFC 5322 §2.2.3) and trimmed, encoded words left as they are. ok is false
// when the field is absent.
func rawValue(h *textproto.Header, k string) (v []byte, ok bool) {
	kv, err := h.Raw(k)
	if err != nil || kv == nil {
		return nil, false
	}
	colon := bytes.IndexByte(kv, ':')
	v = kv[colon+1:]
	if bytes.ContainsAny(v, "\r\n") {
		u := make([]byte, 0, len(v))
		for _, c := range v {
			if c != '\r' && c != '\n' {
				u = append(u, c)
			}
		}
		v = u
	}
	return bytes.Trim(v, " \t"), true
}

type param struct {
	name, value string
}

// mimeFields are the MIME header fields of an entity, as BODYSTRUCTURE
// shows them.
type mimeFields struct {
	typ, sub string
	params   []param
	charset  string // decoded charset parameter
	boundary string

	multipart, message, opaque bool

	id, desc, md5, loc []byte
	hasID, hasDesc     bool
	hasMD5, hasLoc     bool
	encoding           string
	dispType           string
	dispParams         []param
	hasDisp            bool
	lang               []string
	malformed          bool
}

func (f *mimeFields) hasLines() bool {
	return strings.EqualFold(f.typ, "text") || f.message
}

// makeOpaque turns an entity that cannot be descended into a leaf of the
// given type, without its (now meaningless) parameters.
func (f *mimeFields) makeOpaque(typ, sub string) {
	f.typ, f.sub = typ, sub
	f.params = nil
	if typ == "text" {
		f.params = []param{{"charset", "us-ascii"}}
	}
	f.charset = ""
	f.multipart, f.message, f.opaque = false, false, true
}

func defaultFields(ct string) mimeFields {
	var h textproto.Header
	return parseMIMEFields(&h, ct)
}

// parseMIMEFields reads the Content-* fields. defType is the default type
// ("" meaning text/plain; charset=us-ascii, RFC 2045 §5.2; message/rfc822
// inside multipart/digest, RFC 2046 §5.1.5).
func parseMIMEFields(h *textproto.Header, defType string) mimeFields {
	var f mimeFields
	if v, ok := rawValue(h, "Content-Type"); ok {
		typ, sub, params, good := parseContentType(string(v))
		if good {
			f.typ, f.sub, f.params = typ, sub, params
		} else {
			f.malformed = true
		}
	}
	if f.typ == "" {
		if defType == "message/rfc822" {
			f.typ, f.sub = "message", "rfc822"
		} else {
			f.typ, f.sub = "text", "plain"
			f.params = []param{{"charset", "us-ascii"}}
		}
	}
	f.charset = paramValue(f.params, "charset")
	if strings.EqualFold(f.typ, "text") && f.charset == "" {
		// RFC 2045 §5.2: text defaults to us-ascii; say so, as Dovecot does.
		f.params = append(f.params, param{"charset", "us-ascii"})
	}
	f.multipart = strings.EqualFold(f.typ, "multipart")
	if f.multipart {
		f.boundary = paramValue(f.params, "boundary")
	}
	f.message = strings.EqualFold(f.typ, "message") &&
		(strings.EqualFold(f.sub, "rfc822") || strings.EqualFold(f.sub, "global"))

	if v, ok := rawValue(h, "Content-Transfer-Encoding"); ok {
		f.encoding = firstToken(string(v))
	}
	if f.encoding == "" {
		f.encoding = "7bit"
	}
	f.id, f.hasID = rawValue(h, "Content-Id")
	f.desc, f.hasDesc = rawValue(h, "Content-Description")
	f.md5, f.hasMD5 = rawValue(h, "Content-Md5")
	f.loc, f.hasLoc = rawValue(h, "Content-Location")
	if v, ok := rawValue(h, "Content-Disposition"); ok {
		s := string(v)
		head, rest, _ := strings.Cut(s, ";")
		head = strings.TrimSpace(stripComments(head))
		if head != "" {
			f.hasDisp = true
			f.dispType = head
			f.dispParams = parseParams(rest)
		}
	}
	if v, ok := rawValue(h, "Content-Language"); ok {
		for _, tag := range strings.Split(stripComments(string(v)), ",") {
			if tag = strings.TrimSpace(tag); tag != "" {
				f.lang = append(f.lang, tag)
			}
		}
	}
	return f
}

func firstToken(s string) string {
	s = strings.TrimSpace(stripComments(s))
	if i := strings.IndexAny(s, " \t;"); i >= 0 {
		s = s[:i]
	}
	return s
}

// parseContentType splits "type/subtype; params" (RFC 2045 §5.1).
func parseContentType(s string) (typ, sub string, params []param, ok bool) {
	head, rest, _ := strings.Cut(s, ";")
	head = strings.TrimSpace(stripComments(head))
	typ, sub, found := strings.Cut(head, "/")
	typ, sub = strings.TrimSpace(typ), strings.TrimSpace(sub)
	if !found || !isToken(typ) || !isToken(sub) {
		return "", "", nil, false
	}
	return typ, sub, parseParams(rest), true
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?=", c) >= 0 {
			return false
		}
	}
	return true
}

// stripComments removes RFC 5322 comments outside quoted strings.
func stripComments(s string) string {
	if !strings.Contains(s, "(") {
		return s
	}
	var b strings.Builder
	depth, inQuote := 0, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && (inQuote || depth > 0) && i+1 < len(s):
			if depth == 0 {
				b.WriteByte(c)
				b.WriteByte(s[i+1])
			}
			i++
			continue
		case inQuote:
			if c == '"' {
				inQuote = false
			}
		case c == '"' && depth == 0:
			inQuote = true
		case c == '(':
			depth++
			continue
		case c == ')' && depth > 0:
			depth--
			continue
		}
		if depth == 0 {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// parseParams reads "; name=value" parameters tolerantly: values are tokens
// or quoted strings, parameters without '=' are skipped. RFC 2231
// continuations are joined: name*0, name*1 → name; name*0*, name*1* →
// name* with the encoded value kept (charset'language'%XX), as Dovecot shows
// them.
func parseParams(s string) []param {
	var raw []param
	for s != "" {
		s = strings.TrimLeft(s, " \t;")
		if s == "" {
			break
		}
		eq := strings.IndexAny(s, "=;")
		if eq < 0 || s[eq] == ';' {
			// No value: skip to the next ';'.
			if eq < 0 {
				break
			}
			s = s[eq:]
			continue
		}
		name := strings.TrimSpace(stripComments(s[:eq]))
		s = strings.TrimLeft(s[eq+1:], " \t")
		var value string
		if strings.HasPrefix(s, "\"") {
			var b strings.Builder
			i := 1
			for ; i < len(s); i++ {
				c := s[i]
				if c == '\\' && i+1 < len(s) {
					i++
					b.WriteByte(s[i])
					continue
				}
				if c == '"' {
					break
				}
				b.WriteByte(c)
			}
			value = b.String()
			if i < len(s) {
				i++
			}
			s = s[i:]
			if j := strings.IndexByte(s, ';'); j >= 0 {
				s = s[j:]
			} else {
				s = ""
			}
		} else {
			j := strings.IndexByte(s, ';')
			if j < 0 {
				j = len(s)
			}
			value = strings.TrimSpace(stripComments(s[:j]))
			s = s[j:]
		}
		if name != "" {
			raw = append(raw, param{name, value})
		}
	}
	return joinContinuations(raw)
}

// joinContinuations merges RFC 2231 §3 continuations into one parameter at
// the position of the first section.
func joinContinuations(ps []param) []param {
	hasCont := false
	for _, p := range ps {
		if _, _, ok := contSection(p.name); ok {
			hasCont = true
			break
		}
	}
	if !hasCont {
		return ps
	}
	type joined struct {
		base     string
		extended bool
		sections map[int]string
		at       int
	}
	var out []param
	groups := map[string]*joined{}
	for _, p := range ps {
		base, n, ok := contSection(p.name)
		if !ok {
			out = append(out, p)
			continue
		}
		key := strings.ToLower(base)
		g := groups[key]
		if g == nil {
			g = &joined{base: base, sections: map[int]string{}, at: len(out)}
			groups[key] = g
			out = append(out, param{}) // placeholder
		}
		if n == 0 && strings.HasSuffix(p.name, "*") {
			g.extended = true
		}
		g.sections[n] = p.value
	}
	for _, g := range groups {
		var b strings.Builder
		for i := 0; ; i++ {
			v, ok := g.sections[i]
			if !ok {
				break
			}
			b.WriteString(v)
		}
		name := g.base
		if g.extended {
			name += "*"
		}
		out[g.at] = param{name, b.String()}
	}
	return out
}

// contSection parses "name*N" or "name*N*".
func contSection(name string) (base string, n int, ok bool) {
	s := strings.TrimSuffix(name, "*")
	i := strings.LastIndexByte(s, '*')
	if i <= 0 {
		return "", 0, false
	}
	n, err := strconv.Atoi(s[i+1:])
	if err != nil || n < 0 || n > 999 {
		return "", 0, false
	}
	return s[:i], n, true
}

// paramValue returns the value of parameter name, decoding an RFC 2231
// extended value (name*=charset'lang'%XX) when that is what is there.
func paramValue(ps []param, name string) string {
	for _, p := range ps {
		if strings.EqualFold(p.name, name) {
			return p.value
		}
	}
	for _, p := range ps {
		if strings.EqualFold(p.name, name+"*") {
			return decode2231(p.value)
		}
	}
	return ""
}

func decode2231(v string) string {
	parts := strings.SplitN(v, "'", 3)
	if len(parts) != 3 {
		return v
	}
	raw, err := url.PathUnescape(parts[2])
	if err != nil {
		return parts[2]
	}
	return toUTF8(parts[0], []byte(raw))
}
