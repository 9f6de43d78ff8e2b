package repo

import (
	"bytes"
	"errors"
	"fmt"
)

// MaxHeaderPrefix bounds a delivery's per-recipient header lines: a
// Return-Path: and a Delivered-To: line (RFC 5321 §4.4, Postfix local(8))
// need a few hundred bytes; the bound keeps the message rows narrow.
const MaxHeaderPrefix = 4096

// ErrBadHeaderPrefix: a delivery's header prefix is not a sequence of
// complete RFC 5322 header fields.
var ErrBadHeaderPrefix = errors.New("repo: bad header prefix")

// CheckHeaderPrefix reports whether p is a valid header prefix: at most
// MaxHeaderPrefix bytes of complete header fields (RFC 5322 §2.2), each
// line ending in CRLF, a field name of printable ASCII but ':' followed by
// ':', continuation lines (folding, §2.2.3) only after a field line, no
// empty line (it would end the header) and no NUL, bare CR or bare LF.
// Octets above 127 are allowed in field bodies (RFC 6532 addresses).
func CheckHeaderPrefix(p []byte) error {
	if len(p) > MaxHeaderPrefix {
		return fmt.Errorf("%w: %d bytes, more than %d", ErrBadHeaderPrefix, len(p), MaxHeaderPrefix)
	}
	for first := true; len(p) > 0; first = false {
		end := bytes.Index(p, []byte("\r\n"))
		if end < 0 {
			return fmt.Errorf("%w: a line does not end in CRLF", ErrBadHeaderPrefix)
		}
		line := p[:end]
		p = p[end+2:]
		if bytes.IndexAny(line, "\r\n\x00") >= 0 {
			return fmt.Errorf("%w: bare CR, LF or NUL", ErrBadHeaderPrefix)
		}
		if len(line) == 0 {
			return fmt.Errorf("%w: empty line", ErrBadHeaderPrefix)
		}
		if line[0] == ' ' || line[0] == '\t' {
			if first {
				return fmt.Errorf("%w: starts with a continuation line", ErrBadHeaderPrefix)
			}
			continue
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return fmt.Errorf("%w: a line is not a header field", ErrBadHeaderPrefix)
		}
		for _, c := range line[:colon] {
			if c < 33 || c > 126 {
				return fmt.Errorf("%w: bad field name", ErrBadHeaderPrefix)
			}
		}
	}
	return nil
}
