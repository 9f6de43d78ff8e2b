// Package mimeparse parses a raw message once, at ingest, into everything the
// store keeps about its content: the exact size, the byte offsets of every
// MIME part, the IMAP ENVELOPE, BODY and BODYSTRUCTURE already in wire form,
// and decoded text for searching. After this no metadata request (FETCH
// ENVELOPE/BODYSTRUCTURE, SEARCH on headers or text) reads the object again,
// and every BODY[section] is a ranged read of the stored object.
//
// It follows RFC 5322 (message format), RFC 2045/2046 (MIME entities,
// multipart bodies, boundary delimiters), RFC 2047 (encoded words, decoded
// only for the search fields), RFC 2231 (parameter continuations), RFC 2183
// (Content-Disposition), RFC 3066/RFC 3282 (Content-Language), RFC 2557
// (Content-Location) and RFC 9051 §6.4.5 (section numbering), §7.5.2
// (ENVELOPE, BODY, BODYSTRUCTURE) and §4.3 (quoted strings and literals).
//
// # Why its own scanner
//
// The message is read exactly once, as a stream: memory stays bounded by the
// header cap, the text cap and the part tree, whatever the message size (a
// 50 MiB attachment is counted, never held). go-message's textproto parses
// the header fields (after this package has cut the header block out of the
// stream) and go-message/charset converts charsets, but go-message's multipart
// reader neither reports byte offsets nor tolerates the broken MIME found in
// real mail. So this package scans lines itself, counting every octet, and
// recognizes boundary delimiters per RFC 2046 §5.1.1: a line "--boundary"
// (or "--boundary--" to close) followed only by white space; the line break
// before a delimiter belongs to the delimiter, not to the part before it.
// A delimiter of an enclosing multipart also ends every inner one.
//
// # Malformed input
//
// Parse never fails on content: only an error reading r is returned. What
// violates MIME is described as well as it can be and Parsed.Malformed is set:
//
//   - a multipart without a boundary parameter, or nested deeper than
//     Options.MaxDepth, is an opaque text/plain leaf; a message/rfc822 part
//     that is too deep or not in an identity transfer encoding is an opaque
//     application/octet-stream leaf (it cannot be parsed without decoding);
//   - a multipart with no body part gets one synthesized empty-header
//     text/plain part covering its body, because BODYSTRUCTURE requires one;
//   - a missing close delimiter ends the multipart at the end of the message
//     (or at an enclosing delimiter);
//   - header lines without a colon are skipped; bad base64 characters are
//     ignored; an unknown charset falls back to UTF-8 or windows-1252;
//   - after Options.MaxParts parts the remaining parts of a multipart are not
//     described (their bytes still count toward its body).
//
// # Wire form
//
// IMAP strings are quoted when they are short 7-bit text without CR, LF,
// '"' or '\', and sent as literals otherwise (RFC 9051 §4.3); NUL octets,
// which no IMAP string may carry, are dropped. Sizes are of the stored
// octets: a message stored with bare LF line endings reports the sizes of
// what BODY[...] will send, not CRLF-converted ones as Dovecot does.
// ENVELOPE fields are the raw header values, unfolded, encoded words kept as
// they are (RFC 9051 §7.5.2). Types, subtypes and parameters are written as
// the message wrote them (as Dovecot does); RFC 2231 continuations are joined
// ("name*" keeps its encoded charset'language'value form).
package mimeparse
