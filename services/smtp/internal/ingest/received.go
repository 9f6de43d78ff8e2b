package ingest

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"strings"
	"time"
)

// crockford is Crockford's base32 alphabet, lower case: no i, l, o, u, so
// ids read back unambiguously, and every byte is allowed in a blob key.
const crockford = "0123456789abcdefghjkmnpqrstvwxyz"

// NewQueueID returns a 26-character id: 48 bits of milliseconds since the
// epoch then 80 random bits, base32. Ids sort by creation time, which keeps
// logs and blob listings in order, and never repeat in practice.
func NewQueueID(now time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	if _, err := rand.Read(b[6:]); err != nil {
		panic(fmt.Sprintf("ingest: crypto/rand failed: %v", err)) // never happens on supported platforms
	}
	hi := binary.BigEndian.Uint64(b[:8])
	lo := binary.BigEndian.Uint64(b[8:])
	var out [26]byte
	// 128 bits in 26 groups of 5 (the first group holds the top 3 bits).
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}

// Clean makes a client-supplied value safe inside a header field or a log
// line: control characters (CR and LF above all, SMTP-LESSONS 19) and the
// characters that would end or nest the comment or the clause it sits in
// are replaced by '?', and it is cut to max bytes.
func Clean(s string, max int) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= max {
			break
		}
		switch {
		case r < 0x21 || r == 0x7f || r == '(' || r == ')' || r == ';' || r == '\\' || r == '<' || r == '>' || r == '"':
			b.WriteByte('?')
		case r == 0xfffd:
			b.WriteByte('?')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// receivedProtocol is the "with" keyword of RFC 5321 §4.4 as extended by
// RFC 3848: ESMTP, plus S for TLS and A for authentication.
func receivedProtocol(esmtp, tls, auth bool) string {
	if !esmtp {
		return "SMTP"
	}
	p := "ESMTP"
	if tls {
		p += "S"
	}
	if auth {
		p += "A"
	}
	return p
}

// receivedField builds the trace field prepended to every accepted message
// (RFC 5321 §4.4). Every client-supplied value goes through Clean. It is
// folded over three lines, each ending in CRLF.
func receivedField(env *Envelope, hostname, queueID string, now time.Time) string {
	var b strings.Builder
	b.WriteString("Received: from ")
	helo := Clean(env.HELO, 255)
	if helo == "" {
		helo = "unknown"
	}
	b.WriteString(helo)
	b.WriteString(" ([")
	if env.ClientIP.IsValid() {
		ip := env.ClientIP.Unmap()
		if ip.Is6() {
			b.WriteString("IPv6:")
		}
		b.WriteString(ip.String())
	}
	b.WriteString("])\r\n\tby ")
	b.WriteString(Clean(hostname, 255))
	b.WriteString(" (Petrel) with ")
	b.WriteString(receivedProtocol(env.ESMTP, env.TLS, env.AuthAccount != ""))
	b.WriteString(" id ")
	b.WriteString(queueID)
	b.WriteString("\r\n\t; ")
	b.WriteString(now.UTC().Format(time.RFC1123Z))
	b.WriteString("\r\n")
	return b.String()
}
