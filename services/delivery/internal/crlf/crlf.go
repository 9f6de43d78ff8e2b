// Package crlf normalizes line endings of outbound message data to CRLF.
//
// RFC 5321 §2.3.8 allows only CRLF as a line ending in SMTP, and we never
// emit a lone CR or LF (SMTP-LESSONS 2: a bare LF or CR on the wire is what
// SMTP smuggling exploits). Both the DKIM signer and the SMTP client read
// the message through this normalizer, so the bytes signed are exactly the
// bytes sent (SMTP-LESSONS 16). The normalization is idempotent: CRLF-clean
// input passes through unchanged.
package crlf

import (
	"bufio"
	"io"
)

// NewReader returns a reader that yields r with every lone LF and every
// lone CR replaced by CRLF. It streams: memory use is bounded by its
// buffers, whatever the size of r.
func NewReader(r io.Reader) io.Reader {
	return &reader{r: bufio.NewReaderSize(r, 32*1024), out: make([]byte, 0, 64*1024)}
}

type reader struct {
	r     *bufio.Reader
	out   []byte // normalized bytes not yet returned
	off   int
	sawCR bool // the last input byte was CR; its LF may be in the next chunk
	err   error
	chunk [32 * 1024]byte
}

func (n *reader) Read(p []byte) (int, error) {
	for n.off == len(n.out) {
		if n.err != nil {
			return 0, n.err
		}
		n.out, n.off = n.out[:0], 0
		k, err := n.r.Read(n.chunk[:])
		for _, b := range n.chunk[:k] {
			if n.sawCR {
				n.sawCR = false
				n.out = append(n.out, '\r', '\n')
				if b == '\n' {
					continue
				}
			}
			switch b {
			case '\r':
				n.sawCR = true
			case '\n':
				n.out = append(n.out, '\r', '\n')
			default:
				n.out = append(n.out, b)
			}
		}
		if err != nil {
			if n.sawCR {
				n.sawCR = false
				n.out = append(n.out, '\r', '\n')
			}
			n.err = err
		}
	}
	c := copy(p, n.out[n.off:])
	n.off += c
	return c, nil
}
