package mimeparse

import (
	"bytes"
	"strconv"

	"github.com/emersion/go-message/textproto"
)

// maxQuoted is the longest string sent quoted; longer ones go as literals,
// which clients handle without line-length limits.
const maxQuoted = 1024

// writeString writes s as an IMAP string (RFC 9051 §4.3): quoted when it is
// short 7-bit text without CR, LF, '"' or '\', a literal otherwise (quotes
// and backslashes could be escaped, but clients have been seen to mishandle
// escapes, and Dovecot sends literals too). NUL cannot appear in either form
// and is dropped.
func writeString(b *bytes.Buffer, s []byte) {
	if bytes.IndexByte(s, 0) >= 0 {
		s = bytes.ReplaceAll(s, []byte{0}, nil)
	}
	quoted := len(s) <= maxQuoted
	for _, c := range s {
		if c == '\r' || c == '\n' || c >= 0x80 || c == '"' || c == '\\' {
			quoted = false
			break
		}
	}
	if !quoted {
		b.WriteByte('{')
		b.WriteString(strconv.Itoa(len(s)))
		b.WriteString("}\r\n")
		b.Write(s)
		return
	}
	b.WriteByte('"')
	b.Write(s)
	b.WriteByte('"')
}

func writeNString(b *bytes.Buffer, s []byte, ok bool) {
	if !ok {
		b.WriteString("NIL")
		return
	}
	writeString(b, s)
}

// renderEnvelope builds the ENVELOPE of a message header (RFC 9051 §7.5.2).
func renderEnvelope(h *textproto.Header) []byte {
	var b bytes.Buffer
	b.WriteByte('(')
	v, ok := rawValue(h, "Date")
	writeNString(&b, v, ok)
	b.WriteByte(' ')
	v, ok = rawValue(h, "Subject")
	writeNString(&b, v, ok)
	from := addressField(h, "From")
	for _, k := range []string{"From", "Sender", "Reply-To", "To", "Cc", "Bcc"} {
		b.WriteByte(' ')
		list := addressField(h, k)
		if (k == "Sender" || k == "Reply-To") && len(list) == 0 {
			// Absent or empty Sender/Reply-To take the From value.
			list = from
		}
		writeAddressList(&b, list)
	}
	b.WriteByte(' ')
	v, ok = rawValue(h, "In-Reply-To")
	writeNString(&b, v, ok)
	b.WriteByte(' ')
	v, ok = rawValue(h, "Message-Id")
	writeNString(&b, v, ok)
	b.WriteByte(')')
	return b.Bytes()
}

func addressField(h *textproto.Header, k string) []address {
	v, ok := rawValue(h, k)
	if !ok {
		return nil
	}
	return parseAddressList(string(v))
}

func writeAddressList(b *bytes.Buffer, list []address) {
	if len(list) == 0 {
		b.WriteString("NIL")
		return
	}
	b.WriteByte('(')
	for _, a := range list {
		b.WriteByte('(')
		switch {
		case a.groupStart:
			b.WriteString("NIL NIL ")
			writeString(b, []byte(a.mailbox))
			b.WriteString(" NIL")
		case a.groupEnd:
			b.WriteString("NIL NIL NIL NIL")
		default:
			writeNString(b, []byte(a.name), a.hasName)
			b.WriteByte(' ')
			writeNString(b, []byte(a.adl), a.hasAdl)
			b.WriteByte(' ')
			writeString(b, []byte(a.mailbox))
			b.WriteByte(' ')
			writeString(b, []byte(a.host))
		}
		b.WriteByte(')')
	}
	b.WriteByte(')')
}

// renderStructure writes BODYSTRUCTURE (ext) or BODY (!ext) of e
// (RFC 9051 §7.5.2, body grammar in §9).
func renderStructure(e *entity, ext bool) []byte {
	var b bytes.Buffer
	writeBody(&b, e, ext)
	return b.Bytes()
}

func writeBody(b *bytes.Buffer, e *entity, ext bool) {
	f := &e.f
	b.WriteByte('(')
	if f.multipart {
		for _, c := range e.children {
			writeBody(b, c, ext)
		}
		b.WriteByte(' ')
		writeString(b, []byte(f.sub))
		if ext {
			b.WriteByte(' ')
			writeParams(b, f.params)
			b.WriteByte(' ')
			writeDisposition(b, f)
			b.WriteByte(' ')
			writeLanguage(b, f.lang)
			b.WriteByte(' ')
			writeNString(b, f.loc, f.hasLoc)
		}
		b.WriteByte(')')
		return
	}
	writeString(b, []byte(f.typ))
	b.WriteByte(' ')
	writeString(b, []byte(f.sub))
	b.WriteByte(' ')
	writeParams(b, f.params)
	b.WriteByte(' ')
	writeNString(b, f.id, f.hasID)
	b.WriteByte(' ')
	writeNString(b, f.desc, f.hasDesc)
	b.WriteByte(' ')
	writeString(b, []byte(f.encoding))
	b.WriteByte(' ')
	b.WriteString(strconv.FormatInt(e.bodyLen, 10))
	if f.message && e.msg != nil {
		b.WriteByte(' ')
		b.Write(e.msg.envelope)
		b.WriteByte(' ')
		writeBody(b, e.msg, ext)
		b.WriteByte(' ')
		b.WriteString(strconv.FormatInt(e.lines, 10))
	} else if f.hasLines() {
		b.WriteByte(' ')
		b.WriteString(strconv.FormatInt(e.lines, 10))
	}
	if ext {
		b.WriteByte(' ')
		writeNString(b, f.md5, f.hasMD5)
		b.WriteByte(' ')
		writeDisposition(b, f)
		b.WriteByte(' ')
		writeLanguage(b, f.lang)
		b.WriteByte(' ')
		writeNString(b, f.loc, f.hasLoc)
	}
	b.WriteByte(')')
}

func writeParams(b *bytes.Buffer, ps []param) {
	if len(ps) == 0 {
		b.WriteString("NIL")
		return
	}
	b.WriteByte('(')
	for i, p := range ps {
		if i > 0 {
			b.WriteByte(' ')
		}
		writeString(b, []byte(p.name))
		b.WriteByte(' ')
		writeString(b, []byte(p.value))
	}
	b.WriteByte(')')
}

func writeDisposition(b *bytes.Buffer, f *mimeFields) {
	if !f.hasDisp {
		b.WriteString("NIL")
		return
	}
	b.WriteByte('(')
	writeString(b, []byte(f.dispType))
	b.WriteByte(' ')
	writeParams(b, f.dispParams)
	b.WriteByte(')')
}

func writeLanguage(b *bytes.Buffer, tags []string) {
	if len(tags) == 0 {
		b.WriteString("NIL")
		return
	}
	b.WriteByte('(')
	for i, t := range tags {
		if i > 0 {
			b.WriteByte(' ')
		}
		writeString(b, []byte(t))
	}
	b.WriteByte(')')
}
