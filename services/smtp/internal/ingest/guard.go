package ingest

import (
	"errors"
	"fmt"
	"io"
)

// ErrBareLineEnding is returned (wrapped) by the guard when the message has
// a CR not followed by LF, or an LF not preceded by CR. Such a message is
// refused, never normalised and never split: the lone line ending is what
// SMTP smuggling (CVE-2023-51764/51765/51766) uses to make two servers
// disagree on where DATA ends (SMTP-LESSONS 1). RFC 5321 §2.3.8 allows only
// CRLF as a line ending.
var ErrBareLineEnding = errors.New("ingest: bare CR or LF in message")

// ErrTooBig is returned (wrapped) when the message exceeds the size limit.
var ErrTooBig = errors.New("ingest: message too big")

// guard passes a message through while checking every line ending and the
// size. Its first error is sticky and remembered in err, so that the caller
// can tell a refused message from a storage failure after the blob store
// has given up on the reader.
type guard struct {
	r      io.Reader
	max    int64 // 0: no limit
	n      int64
	prevCR bool // the last byte passed on was CR
	err    error
}

func newGuard(r io.Reader, max int64) *guard { return &guard{r: r, max: max} }

func (g *guard) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.r.Read(p)
	for i := 0; i < n; i++ {
		c := p[i]
		switch {
		case g.prevCR && c != '\n':
			g.err = fmt.Errorf("%w: CR without LF at offset %d", ErrBareLineEnding, g.n+int64(i)-1)
		case !g.prevCR && c == '\n':
			g.err = fmt.Errorf("%w: LF without CR at offset %d", ErrBareLineEnding, g.n+int64(i))
		}
		if g.err != nil {
			return 0, g.err
		}
		g.prevCR = c == '\r'
	}
	g.n += int64(n)
	if g.max > 0 && g.n > g.max {
		g.err = fmt.Errorf("%w: more than %d octets", ErrTooBig, g.max)
		return 0, g.err
	}
	if err == io.EOF && g.prevCR {
		g.err = fmt.Errorf("%w: message ends with CR", ErrBareLineEnding)
		return 0, g.err
	}
	if err != nil && err != io.EOF {
		g.err = err
	}
	return n, err
}
