// Package downgrade converts an 8-bit message to 7-bit MIME for a server
// that does not announce 8BITMIME (RFC 6152 §3 lets the client either
// return such a message or convert it; RFC 1652 §4 and RFC 2045 say how:
// change only the Content-Transfer-Encoding of the parts that need it).
// Postfix converts; so do we, rather than bounce with 5.6.3.
//
// What changes: a leaf part labelled 7bit, 8bit or binary (or unlabelled)
// whose body holds 8-bit bytes, NULs or lines longer than 998 octets is
// re-encoded, text/* as quoted-printable and everything else as base64,
// with its other header fields untouched; multipart and message/rfc822
// entities labelled 8bit or binary are relabelled 7bit and their parts
// converted recursively (RFC 2046 §5.2.1 forbids encoding message/rfc822
// itself); 8-bit bytes in a multipart's preamble or epilogue, which no
// reader shows, become '?'. A message without MIME-Version that needs
// re-encoding becomes MIME 1.0, text/plain; charset=unknown-8bit
// (RFC 1428) unless it names a Content-Type. Parts already in base64 or
// quoted-printable, and parts that are clean 7-bit whatever their label,
// pass through byte for byte. Header fields are never rewritten: a raw
// 8-bit header needs a charset we do not know, and RFC 6152 conversion
// is about bodies.
//
// Why not github.com/emersion/go-message: its reader transcodes text to
// UTF-8 and its writer refuses any charset but UTF-8 and US-ASCII, while a
// downgrade must keep a part's charset and bytes and change only the
// transfer encoding; it also drops preambles and epilogues and rewrites
// MIME structure. This package streams line by line instead: memory is
// bounded by a header (1 MiB at most) and a 64 KiB look-ahead per leaf,
// whatever the size of the message.
package downgrade

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"

	"github.com/petrel-mail/petrel/services/delivery/internal/crlf"
)

// ErrMalformed is returned (wrapped) for a message this package will not
// convert: a header block over 1 MiB or MIME nesting deeper than 32.
// Converting it again would fail again, so the failure is permanent.
var ErrMalformed = errors.New("downgrade: message cannot be converted to 7-bit")

const (
	maxHeader = 1 << 20
	maxDepth  = 32
	lookahead = 64 << 10
	maxLine   = 998 // RFC 5322 §2.1.1, without the CRLF
)

// Convert writes the message read from r to w as 7-bit MIME. Line
// endings are normalized to CRLF first (package crlf). Errors are read
// and write errors, or ErrMalformed.
func Convert(w io.Writer, r io.Reader) error {
	ew := &errWriter{w: w}
	c := &converter{
		br: bufio.NewReaderSize(crlf.NewReader(r), 32<<10),
		w:  bufio.NewWriterSize(ew, 32<<10),
		ew: ew,
	}
	if _, err := c.entity(nil, 0, true, "text/plain"); err != nil {
		return err
	}
	return c.w.Flush()
}

// Reader returns the converted message of r as a stream (through a
// goroutine and a pipe); closing it stops the conversion and closes r.
func Reader(r io.ReadCloser) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		err := Convert(pw, r)
		r.Close()
		pw.CloseWithError(err)
	}()
	return pr
}

type converter struct {
	br   *bufio.Reader
	w    *bufio.Writer
	ew   *errWriter // under w: a failed write stops the reading
	cont bool       // the next read continues a line longer than the buffer
}

// line is one line, or one buffer-sized piece of a longer line. data
// excludes the CRLF and is valid until the next read.
type line struct {
	data  []byte
	eol   bool // ended by CRLF
	start bool // begins a line
}

func (c *converter) next() (line, error) {
	if c.ew.err != nil {
		return line{}, c.ew.err
	}
	start := !c.cont
	b, err := c.br.ReadSlice('\n')
	switch {
	case err == nil:
		c.cont = false
		// crlf guarantees CR before LF.
		return line{data: b[:len(b)-2], eol: true, start: start}, nil
	case errors.Is(err, bufio.ErrBufferFull):
		if b[len(b)-1] == '\r' {
			// Keep a CR with its LF.
			_ = c.br.UnreadByte()
			b = b[:len(b)-1]
		}
		c.cont = true
		return line{data: b, start: start}, nil
	case errors.Is(err, io.EOF) && len(b) > 0:
		c.cont = true
		return line{data: b, start: start}, nil
	default:
		return line{}, err
	}
}

func (c *converter) writeLine(l line) {
	c.w.Write(l.data)
	if l.eol {
		c.w.WriteString("\r\n")
	}
}

// term is the delimiter line that ended an entity: the index of its
// boundary among the enclosing ones and whether it closes the multipart.
type term struct {
	idx     int
	closing bool
	raw     []byte
}

func delimiter(l line, bounds []string) *term {
	if !l.start || len(l.data) < 3 || l.data[0] != '-' || l.data[1] != '-' {
		return nil
	}
	for i := len(bounds) - 1; i >= 0; i-- {
		b := bounds[i]
		d := l.data[2:]
		if !bytes.HasPrefix(d, []byte(b)) {
			continue
		}
		rest, closing := d[len(b):], false
		if bytes.HasPrefix(rest, []byte("--")) {
			rest, closing = rest[2:], true
		}
		if len(bytes.TrimRight(rest, " \t")) != 0 {
			continue
		}
		raw := append([]byte(nil), l.data...)
		if l.eol {
			raw = append(raw, '\r', '\n')
		}
		return &term{idx: i, closing: closing, raw: raw}
	}
	return nil
}

// header is a header block as read: each field's raw bytes with its
// folded lines, and whether the empty line that ends it was there.
type header struct {
	fields []field
	ended  bool
}

type field struct {
	name string // lower case; "" for a line that is no field
	raw  []byte
}

func (h *header) get(name string) (string, bool) {
	for _, f := range h.fields {
		if f.name == name {
			v := f.raw[bytes.IndexByte(f.raw, ':')+1:]
			v = bytes.ReplaceAll(v, []byte("\r\n"), nil)
			return strings.TrimSpace(string(v)), true
		}
	}
	return "", false
}

// setEncoding replaces every Content-Transfer-Encoding field by one with
// value, at the end of the block.
func (h *header) setEncoding(value string) {
	kept := h.fields[:0]
	for _, f := range h.fields {
		if f.name != "content-transfer-encoding" {
			kept = append(kept, f)
		}
	}
	h.fields = append(kept, field{name: "content-transfer-encoding", raw: []byte("Content-Transfer-Encoding: " + value + "\r\n")})
}

func (h *header) add(name, raw string) {
	h.fields = append(h.fields, field{name: name, raw: []byte(raw)})
}

func (c *converter) writeHeader(h *header) {
	for _, f := range h.fields {
		c.w.Write(f.raw)
	}
	if h.ended {
		c.w.WriteString("\r\n")
	}
}

// readHeader reads a header block; it stops early at a delimiter of
// bounds (returned) or at the end of input.
func (c *converter) readHeader(bounds []string) (*header, *term, error) {
	h := &header{}
	size := 0
	for {
		l, err := c.next()
		if errors.Is(err, io.EOF) {
			return h, nil, nil
		}
		if err != nil {
			return nil, nil, err
		}
		if t := delimiter(l, bounds); t != nil {
			return h, t, nil
		}
		if l.start && l.eol && len(l.data) == 0 {
			h.ended = true
			return h, nil, nil
		}
		size += len(l.data) + 2
		if size > maxHeader {
			return nil, nil, fmt.Errorf("%w: header block over %d octets", ErrMalformed, maxHeader)
		}
		raw := append([]byte(nil), l.data...)
		if l.eol {
			raw = append(raw, '\r', '\n')
		}
		folded := !l.start || (len(l.data) > 0 && (l.data[0] == ' ' || l.data[0] == '\t'))
		if folded && len(h.fields) > 0 {
			last := &h.fields[len(h.fields)-1]
			last.raw = append(last.raw, raw...)
			continue
		}
		name := ""
		if i := bytes.IndexByte(l.data, ':'); i > 0 {
			name = strings.ToLower(strings.TrimSpace(string(l.data[:i])))
		}
		h.fields = append(h.fields, field{name: name, raw: raw})
	}
}

// entity converts one entity (header and body) that ends at a delimiter
// of bounds, which it returns, or at the end of input (nil).
func (c *converter) entity(bounds []string, depth int, top bool, defaultType string) (*term, error) {
	h, t, err := c.readHeader(bounds)
	if err != nil {
		return nil, err
	}
	if t != nil || !h.ended {
		// No body.
		c.writeHeader(h)
		return t, nil
	}
	mediaType, params := defaultType, map[string]string(nil)
	if v, ok := h.get("content-type"); ok {
		if mt, p, err := mime.ParseMediaType(v); mt != "" && (err == nil || errors.Is(err, mime.ErrInvalidMediaParameter)) {
			mediaType, params = mt, p
		}
	}
	cte := "7bit"
	if v, ok := h.get("content-transfer-encoding"); ok {
		cte = strings.ToLower(v)
	}
	identity := cte == "7bit" || cte == "8bit" || cte == "binary"
	switch {
	case cte == "base64" || cte == "quoted-printable":
		c.writeHeader(h)
		return c.copyBody(bounds, false)
	case strings.HasPrefix(mediaType, "multipart/") && params["boundary"] != "" && identity:
		if depth >= maxDepth {
			return nil, fmt.Errorf("%w: MIME nesting deeper than %d", ErrMalformed, maxDepth)
		}
		if cte != "7bit" {
			h.setEncoding("7bit")
		}
		c.writeHeader(h)
		child := "text/plain"
		if mediaType == "multipart/digest" {
			child = "message/rfc822"
		}
		return c.multipart(bounds, params["boundary"], depth, child)
	case mediaType == "message/rfc822" && identity:
		if depth >= maxDepth {
			return nil, fmt.Errorf("%w: MIME nesting deeper than %d", ErrMalformed, maxDepth)
		}
		if cte != "7bit" {
			h.setEncoding("7bit")
		}
		c.writeHeader(h)
		return c.entity(bounds, depth+1, false, "text/plain")
	default:
		return c.leaf(h, top, strings.HasPrefix(mediaType, "text/"), bounds)
	}
}

func (c *converter) multipart(bounds []string, boundary string, depth int, child string) (*term, error) {
	inner := append(bounds[:len(bounds):len(bounds)], boundary)
	me := len(inner) - 1
	t, err := c.copyBody(inner, true) // preamble
	for {
		if t == nil || err != nil {
			return nil, err
		}
		if t.idx != me {
			// An enclosing boundary: this multipart was never closed.
			return t, nil
		}
		c.w.Write(t.raw)
		if t.closing {
			return c.copyBody(bounds, true) // epilogue
		}
		t, err = c.entity(inner, depth+1, false, child)
	}
}

// bodyLine reads the next line of a body that ends at a delimiter of
// bounds or at the end of input. At the end ok is false and t is the
// delimiter, or nil at the end of input.
func (c *converter) bodyLine(bounds []string) (l line, t *term, ok bool, err error) {
	l, err = c.next()
	if errors.Is(err, io.EOF) {
		return line{}, nil, false, nil
	}
	if err != nil {
		return line{}, nil, false, err
	}
	if t := delimiter(l, bounds); t != nil {
		return line{}, t, false, nil
	}
	return l, nil, true, nil
}

// copyBody copies lines until a delimiter of bounds or the end of input;
// sanitize replaces 8-bit bytes by '?'.
func (c *converter) copyBody(bounds []string, sanitize bool) (*term, error) {
	for {
		l, t, ok, err := c.bodyLine(bounds)
		if !ok {
			return t, err
		}
		if sanitize {
			for i, b := range l.data {
				if b >= 0x80 {
					l.data[i] = '?'
				}
			}
		}
		c.writeLine(l)
	}
}

// leaf converts a part with an identity encoding. The first 64 KiB are
// read ahead: a body that ends within them and is clean 7-bit passes
// unchanged; any other is re-encoded from the first byte.
func (c *converter) leaf(h *header, top, text bool, bounds []string) (*term, error) {
	var buf bytes.Buffer // the look-ahead, while undecided
	var enc *encoder     // once re-encoding
	lineLen := 0
	for {
		l, t, ok, err := c.bodyLine(bounds)
		if err != nil {
			return nil, err
		}
		if !ok {
			if enc == nil {
				c.writeHeader(h)
				c.w.Write(buf.Bytes())
				return t, nil
			}
			return t, enc.close()
		}
		raw := l.data
		if l.eol {
			// data is a slice of the reader's buffer, where its CRLF
			// follows it.
			raw = l.data[:len(l.data)+2]
		}
		if enc != nil {
			enc.feed(raw)
			continue
		}
		if l.start {
			lineLen = 0
		}
		lineLen += len(l.data)
		buf.Write(raw)
		if lineLen > maxLine || !sevenBit(l.data) || buf.Len() > lookahead {
			enc = c.startEncoding(h, top, text)
			enc.feed(buf.Bytes())
		}
	}
}

// startEncoding writes h relabelled for the encoding the part gets
// (quoted-printable for text, base64 otherwise; a top-level message
// without MIME-Version becomes MIME) and returns the encoder for its body.
func (c *converter) startEncoding(h *header, top, text bool) *encoder {
	if top {
		if _, ok := h.get("mime-version"); !ok {
			h.add("mime-version", "MIME-Version: 1.0\r\n")
			if _, ok := h.get("content-type"); !ok {
				h.add("content-type", "Content-Type: text/plain; charset=unknown-8bit\r\n")
			}
		}
	}
	e := &encoder{w: c.w}
	if text {
		h.setEncoding("quoted-printable")
		e.enc = quotedprintable.NewWriter(c.w)
	} else {
		h.setEncoding("base64")
		e.enc = base64.NewEncoder(base64.StdEncoding, &wrap{w: c.w})
	}
	c.writeHeader(h)
	return e
}

// encoder encodes a part's body. The CRLF before a delimiter belongs to
// the delimiter (RFC 2046 §5.1.1): a body's last CRLF is held back from
// the encoder until more data follows, and written after it.
type encoder struct {
	w    *bufio.Writer
	enc  io.WriteCloser
	held bool
}

// feed encodes p, raw body bytes whose CRLFs end lines.
func (e *encoder) feed(p []byte) {
	if len(p) == 0 {
		return
	}
	if e.held {
		e.enc.Write([]byte("\r\n"))
		e.held = false
	}
	if bytes.HasSuffix(p, []byte("\r\n")) {
		p, e.held = p[:len(p)-2], true
	}
	e.enc.Write(p)
}

// close ends the encoding and the part's last line.
func (e *encoder) close() error {
	if err := e.enc.Close(); err != nil {
		return err
	}
	e.w.WriteString("\r\n")
	return nil
}

func sevenBit(p []byte) bool {
	for _, b := range p {
		if b >= 0x80 || b == 0 {
			return false
		}
	}
	return true
}

// errWriter keeps the first write error, so that a closed pipe stops
// the conversion instead of reading the rest of the message for nothing.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

// wrap breaks base64 output into lines of 76 characters (RFC 2045 §6.8).
type wrap struct {
	w io.Writer
	n int
}

func (l *wrap) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		k := min(76-l.n, len(p))
		if _, err := l.w.Write(p[:k]); err != nil {
			return 0, err
		}
		p, l.n = p[k:], l.n+k
		if l.n == 76 && len(p) > 0 {
			if _, err := io.WriteString(l.w, "\r\n"); err != nil {
				return 0, err
			}
			l.n = 0
		}
	}
	return total, nil
}
