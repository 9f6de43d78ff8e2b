package ingest

import (
	"bufio"
	"bytes"
	"io"
)

// headerFixer counts a message's Received: fields, refusing a message that
// has travelled too many hops (a mail loop), and adds header fields that a
// submitted message lacks (RFC 6409 §8.2 Message-ID, §8.3 Date), without
// holding the header block in memory:
// it watches field names go by, line by line, and inserts what is missing
// just before the blank line that ends the header (or at the end of a
// message that has no body). Lines longer than its buffer pass through in
// pieces; only the start of a line is ever looked at.
//
// Its input must already have been through the guard, so every line ends in
// CRLF and the blank line is exactly "\r\n".
type headerFixer struct {
	br      *bufio.Reader
	missing func(seen fieldSet) []byte
	// check, if set, sees the header's fields of interest once the header
	// has ended; its error stops the message (kept in err).
	check   func(seen fieldSet) error
	maxHops int // Received: fields allowed (fewer than this many); 0: any
	err     error
	seen    fieldSet
	inFrom  bool   // the field being read is From:
	midLine bool   // inside a line longer than the buffer
	pending []byte // bytes to hand out before reading more
	body    bool   // past the header: pass everything through
	eof     bool
}

// maxFromBytes bounds the From: field kept for the sender check.
const maxFromBytes = 8192

// fieldSet records which fields of interest the header has.
type fieldSet struct {
	messageID, date bool
	// from holds each From: field's value, unfolded; fromTooLong is set
	// when one did not fit (the check then refuses the message).
	from        []string
	fromTooLong bool
	// received counts the Received: fields.
	received int
}

func newHeaderFixer(r io.Reader, maxHops int, missing func(seen fieldSet) []byte, check func(seen fieldSet) error) *headerFixer {
	if missing == nil {
		missing = func(fieldSet) []byte { return nil }
	}
	return &headerFixer{br: bufio.NewReaderSize(r, 4096), maxHops: maxHops, missing: missing, check: check}
}

// endOfHeader runs the checks once the whole header has been seen.
func (h *headerFixer) endOfHeader() error {
	if h.maxHops > 0 && h.seen.received >= h.maxHops {
		h.err = ErrTooManyHops
		return h.err
	}
	if h.check != nil {
		if err := h.check(h.seen); err != nil {
			h.err = err
			return err
		}
	}
	return nil
}

func (h *headerFixer) Read(p []byte) (int, error) {
	if h.err != nil {
		return 0, h.err
	}
	for len(h.pending) == 0 {
		if h.body {
			return h.br.Read(p)
		}
		if h.eof {
			return 0, io.EOF
		}
		if err := h.step(); err != nil {
			return 0, err
		}
	}
	n := copy(p, h.pending)
	h.pending = h.pending[n:]
	return n, nil
}

// step reads one line (or one buffer of a long line) and queues it, with
// the missing fields in front of the blank line.
func (h *headerFixer) step() error {
	line, err := h.br.ReadSlice('\n')
	switch {
	case err == bufio.ErrBufferFull:
		if !h.midLine {
			h.note(line)
			if h.inFrom {
				h.seen.fromTooLong = true
			}
		}
		h.midLine = true
		h.pending = append(h.pending[:0], line...)
		return nil
	case err == io.EOF:
		// A message with only a header (or nothing): add the fields at
		// the end, after a partial last line if the client sent one.
		h.pending = append(h.pending[:0], line...)
		if len(line) > 0 && !h.midLine {
			h.note(line)
		}
		if len(h.pending) > 0 && !bytes.HasSuffix(h.pending, []byte("\r\n")) {
			h.pending = append(h.pending, '\r', '\n')
		}
		if err := h.endOfHeader(); err != nil {
			return err
		}
		h.pending = append(h.pending, h.missing(h.seen)...)
		h.eof = true
		return nil
	case err != nil:
		return err
	}
	if h.midLine {
		h.midLine = false
		h.pending = append(h.pending[:0], line...)
		return nil
	}
	if len(line) == 2 && line[0] == '\r' {
		if err := h.endOfHeader(); err != nil {
			return err
		}
		h.pending = append(append(h.pending[:0], h.missing(h.seen)...), line...)
		h.body = true
		return nil
	}
	h.note(line)
	h.pending = append(h.pending[:0], line...)
	return nil
}

// note records the field a header line starts, if it is one we track,
// and the value of From: fields with their continuation lines.
func (h *headerFixer) note(line []byte) {
	if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
		if h.inFrom && len(h.seen.from) > 0 {
			i := len(h.seen.from) - 1
			if len(h.seen.from[i])+len(line) > maxFromBytes {
				h.seen.fromTooLong = true
			} else {
				h.seen.from[i] += string(bytes.TrimRight(line, "\r\n"))
			}
		}
		return
	}
	h.inFrom = false
	name, value, ok := bytes.Cut(line, []byte(":"))
	if !ok {
		return
	}
	name = bytes.TrimRight(name, " \t")
	switch {
	case bytes.EqualFold(name, []byte("From")):
		h.inFrom = true
		h.seen.from = append(h.seen.from, string(bytes.TrimRight(value, "\r\n")))
	case bytes.EqualFold(name, []byte("Message-ID")):
		h.seen.messageID = true
	case bytes.EqualFold(name, []byte("Date")):
		h.seen.date = true
	case bytes.EqualFold(name, []byte("Received")):
		h.seen.received++
	}
}
