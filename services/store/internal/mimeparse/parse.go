package mimeparse

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// Options bounds the work done on hostile input. Zero values take defaults.
type Options struct {
	// MaxDepth is how deep multipart and message/rfc822 entities nest before
	// deeper ones are treated as opaque leaves (default 100).
	MaxDepth int
	// MaxParts is how many entities are described at most (default 10000).
	MaxParts int
}

const (
	defaultMaxDepth = 100
	defaultMaxParts = 10000
	// readBufSize is the longest line seen in one piece; longer lines are
	// streamed in fragments and can never be a delimiter or a blank line.
	readBufSize = 64 << 10
	// maxRawText bounds the still-encoded text of one text part that is kept
	// for decoding (base64 and quoted-printable expand, UTF-16 doubles).
	maxRawText = 4 * MaxTextBytes
	// maxPartHeader bounds the header block kept for a body part's fields.
	maxPartHeader = 64 << 10
)

// Parse reads a raw RFC 5322 message from r once and describes it. It returns
// an error only when reading r fails; malformed content sets Malformed.
func Parse(r io.Reader) (*Parsed, error) {
	return ParseWithOptions(r, Options{})
}

// ParseWithOptions is Parse with explicit limits.
func ParseWithOptions(r io.Reader, opts Options) (*Parsed, error) {
	if opts.MaxDepth <= 0 {
		opts.MaxDepth = defaultMaxDepth
	}
	if opts.MaxParts <= 0 {
		opts.MaxParts = defaultMaxParts
	}
	p := &parser{br: bufio.NewReaderSize(r, readBufSize), opts: opts}
	root, _, err := p.parseEntity(nil, 0, true, "", true)
	if err != nil {
		return nil, err
	}
	// The root ends only at EOF, but drain defensively so Size is exact.
	n, err := io.Copy(io.Discard, p.br)
	p.off += n
	if err != nil {
		return nil, fmt.Errorf("mimeparse: reading message: %w", err)
	}

	out := &Parsed{
		Size:      p.off,
		Header:    p.rootHeader,
		Malformed: p.malformed,
	}
	out.Envelope = root.envelope
	out.BodyStructure = renderStructure(root, true)
	out.Body = renderStructure(root, false)
	fillSearchFields(out, &p.rootFields)
	out.Text = string(p.text)

	out.Parts = append(out.Parts, root.part(""))
	if root.isMultipart() {
		numberChildren(&out.Parts, root, "")
	} else {
		out.Parts = append(out.Parts, root.part("1"))
		numberChildren(&out.Parts, root, "1")
	}
	return out, nil
}

// numberChildren appends the parts inside e, which has section number path,
// in RFC 9051 §6.4.5 order.
func numberChildren(parts *[]Part, e *entity, path string) {
	switch {
	case e.isMultipart():
		for i, c := range e.children {
			cp := joinPath(path, i+1)
			*parts = append(*parts, c.part(cp))
			numberChildren(parts, c, cp)
		}
	case e.msg != nil:
		m := e.msg
		if m.isMultipart() {
			numberChildren(parts, m, path)
			return
		}
		cp := joinPath(path, 1)
		*parts = append(*parts, m.part(cp))
		numberChildren(parts, m, cp)
	}
}

func joinPath(prefix string, n int) string {
	if prefix == "" {
		return strconv.Itoa(n)
	}
	return prefix + "." + strconv.Itoa(n)
}

// entity is one parsed MIME entity: a message or a body part.
type entity struct {
	headerOff, headerLen int64
	bodyOff, bodyLen     int64
	lines                int64
	f                    mimeFields
	children             []*entity // multipart
	msg                  *entity   // message/rfc822: the encapsulated message
	envelope             []byte    // message entities only
}

func (e *entity) isMultipart() bool { return e.f.multipart }

func (e *entity) part(path string) Part {
	pt := Part{
		Path:         path,
		HeaderOffset: e.headerOff,
		HeaderLen:    e.headerLen,
		BodyOffset:   e.bodyOff,
		BodyLen:      e.bodyLen,
		ContentType:  strings.ToLower(e.f.typ + "/" + e.f.sub),
		Encoding:     strings.ToLower(e.f.encoding),
		Charset:      e.f.charset,
	}
	if e.f.hasLines() {
		pt.Lines = e.lines
	}
	if e.msg != nil {
		pt.MessageHeaderLen = e.msg.headerLen
	}
	return pt
}

// stop tells what ended an entity: the end of input or a delimiter line of
// the enclosing multipart at index level of the boundary stack.
type stop struct {
	eof     bool
	level   int
	closing bool
}

// end is where an entity's body ends, with what lines needs.
type end struct {
	off  int64
	lfs  int64 // LFs read before off
	last byte  // the octet before off
	st   stop
}

type parser struct {
	br        *bufio.Reader
	off       int64 // octets consumed
	lfs       int64 // LFs consumed
	lastByte  byte  // last octet consumed
	lastTerm  int   // length of the last complete line's terminator
	opts      Options
	parts     int
	malformed bool

	rootHeader []byte
	rootFields textproto.Header
	text       []byte
}

// next returns the next line, or a fragment of it when the line is longer
// than the buffer. complete reports that the fragment ends the line. The
// slice is valid until the next call. io.EOF only comes with no data.
func (p *parser) next() (frag []byte, complete bool, err error) {
	frag, err = p.br.ReadSlice('\n')
	p.off += int64(len(frag))
	if len(frag) > 0 {
		p.lfs += int64(bytes.Count(frag, []byte{'\n'}))
		p.lastByte = frag[len(frag)-1]
	}
	switch {
	case err == nil:
		p.lastTerm = termLen(frag)
		return frag, true, nil
	case errors.Is(err, bufio.ErrBufferFull):
		return frag, false, nil
	case errors.Is(err, io.EOF):
		if len(frag) == 0 {
			return nil, false, io.EOF
		}
		p.lastTerm = 0
		return frag, true, nil
	default:
		return nil, false, fmt.Errorf("mimeparse: reading message: %w", err)
	}
}

func termLen(line []byte) int {
	n := len(line)
	if n >= 2 && line[n-2] == '\r' && line[n-1] == '\n' {
		return 2
	}
	if n >= 1 && line[n-1] == '\n' {
		return 1
	}
	return 0
}

var crlf = []byte("\r\n")

// matchBoundary reports whether line (with its terminator) is a delimiter
// of one of bs, innermost first (RFC 2046 §5.1.1, trailing white space
// allowed as transport padding).
func matchBoundary(line []byte, bs []string) (level int, closing, ok bool) {
	if len(bs) == 0 || len(line) < 2 || line[0] != '-' || line[1] != '-' {
		return 0, false, false
	}
	line = line[2 : len(line)-termLen(line)]
	for i := len(bs) - 1; i >= 0; i-- {
		b := bs[i]
		// string(...) == b compares without allocating.
		if len(line) < len(b) || string(line[:len(b)]) != b {
			continue
		}
		rest := line[len(b):]
		closing := len(rest) >= 2 && rest[0] == '-' && rest[1] == '-'
		if closing {
			rest = rest[2:]
		}
		if len(bytes.TrimLeft(rest, " \t")) == 0 {
			return i, closing, true
		}
	}
	return 0, false, false
}

// scanBody consumes lines up to a delimiter of bs or EOF. The body region
// ends before the line break preceding the delimiter (RFC 2046: that break
// belongs to the delimiter); pending is the length of a line break already
// consumed that would belong to a delimiter on the very next line. sink, if
// set, receives exactly the region's octets.
func (p *parser) scanBody(bs []string, pending int, sink func([]byte)) (end, error) {
	last := p.lastByte
	atStart := true
	for {
		lineStart, lfsAtStart := p.off, p.lfs
		frag, complete, err := p.next()
		if errors.Is(err, io.EOF) {
			if pending > 0 {
				if sink != nil {
					sink(crlf[2-pending:])
				}
				last = '\n'
			}
			return end{off: p.off, lfs: p.lfs, last: last, st: stop{eof: true}}, nil
		}
		if err != nil {
			return end{}, err
		}
		if atStart && complete {
			if level, closing, ok := matchBoundary(frag, bs); ok {
				e := end{off: lineStart - int64(pending), lfs: lfsAtStart, last: last, st: stop{level: level, closing: closing}}
				if pending > 0 {
					e.lfs--
				}
				return e, nil
			}
		}
		if pending > 0 {
			if sink != nil {
				sink(crlf[2-pending:])
			}
			last = '\n'
			pending = 0
		}
		content := frag
		if complete {
			pending = termLen(frag)
			content = frag[:len(frag)-pending]
		}
		if len(content) > 0 {
			if sink != nil {
				sink(content)
			}
			last = content[len(content)-1]
		}
		atStart = complete
	}
}

// readHeader consumes a header block: up to and including the blank line,
// or up to a delimiter of bs or EOF when the blank line is missing. It keeps
// at most limit octets of it.
func (p *parser) readHeader(bs []string, limit int) (raw []byte, hdrEnd int64, st *stop, err error) {
	atStart := true
	for {
		lineStart := p.off
		frag, complete, err := p.next()
		if errors.Is(err, io.EOF) {
			return raw, p.off, &stop{eof: true}, nil
		}
		if err != nil {
			return nil, 0, nil, err
		}
		if atStart && complete {
			if level, closing, ok := matchBoundary(frag, bs); ok {
				return raw, lineStart, &stop{level: level, closing: closing}, nil
			}
		}
		if n := limit - len(raw); n > 0 {
			raw = append(raw, frag[:min(n, len(frag))]...)
		}
		if atStart && complete && len(frag) == termLen(frag) && len(frag) > 0 {
			return raw, p.off, nil, nil
		}
		atStart = complete
	}
}

// parseEntity parses the entity starting at the current offset: a message
// when isMsg, else a body part. bs is the stack of enclosing boundaries.
func (p *parser) parseEntity(bs []string, depth int, isMsg bool, defType string, root bool) (*entity, end, error) {
	p.parts++
	e := &entity{headerOff: p.off}
	limit := maxPartHeader
	if isMsg {
		limit = MaxHeaderBytes
	}
	raw, hdrEnd, hst, err := p.readHeader(bs, limit)
	if err != nil {
		return nil, end{}, err
	}
	e.headerLen = hdrEnd - e.headerOff
	e.bodyOff = hdrEnd
	h, bad := splitHeader(raw)
	if bad || (hst != nil && !hst.eof && len(raw) > 0) {
		p.malformed = true
	}
	e.f = parseMIMEFields(&h, defType)
	if e.f.malformed {
		p.malformed = true
	}
	if isMsg {
		e.envelope = renderEnvelope(&h)
	}
	if root {
		p.rootHeader = raw
		p.rootFields = h
	}
	lfsAtBody := p.lfs
	if hst != nil {
		// The header ran into a delimiter or EOF: the body is empty.
		en := end{off: hdrEnd, lfs: p.lfs, last: p.lastByte, st: *hst}
		if !hst.eof {
			// The delimiter line was consumed; its LF is not ours.
			en.lfs -= int64(min(1, p.lastTerm))
		}
		switch {
		case e.f.multipart:
			p.malformed = true
			e.children = []*entity{{headerOff: hdrEnd, bodyOff: hdrEnd, f: defaultFields("text/plain")}}
			p.parts++
		case e.f.message:
			p.malformed = true
			inner := &entity{headerOff: hdrEnd, bodyOff: hdrEnd, f: defaultFields("text/plain")}
			inner.envelope = renderEnvelope(&textproto.Header{})
			e.msg = inner
			p.parts++
		}
		return e, en, nil
	}

	// Decide how the body is described before reading it.
	if e.f.multipart && (e.f.boundary == "" || depth >= p.opts.MaxDepth) {
		p.malformed = true
		e.f.makeOpaque("text", "plain")
	}
	if e.f.message && (!identityEncoding(e.f.encoding) || depth >= p.opts.MaxDepth) {
		// RFC 2046 §5.2.1 allows only identity encodings for message/rfc822.
		p.malformed = true
		e.f.makeOpaque("application", "octet-stream")
	}

	var en end
	switch {
	case e.f.multipart:
		en, err = p.parseMultipart(e, bs, depth)
	case e.f.message:
		var inner *entity
		inner, en, err = p.parseEntity(bs, depth+1, true, "", false)
		e.msg = inner
	default:
		en, err = p.parseLeaf(e, bs)
	}
	if err != nil {
		return nil, end{}, err
	}
	e.bodyLen = en.off - e.bodyOff
	e.lines = lineCount(e.bodyLen, en.lfs-lfsAtBody, en.last)
	return e, en, nil
}

// lineCount is the number of lines in a body region: its LF count. A last
// line without a line break is not counted (before a delimiter the break
// belongs to the delimiter), which is what Dovecot reports too.
func lineCount(n, lfs int64, last byte) int64 {
	return lfs
}

func identityEncoding(enc string) bool {
	switch strings.ToLower(enc) {
	case "", "7bit", "8bit", "binary":
		return true
	}
	return false
}

// parseLeaf scans a non-multipart body, collecting the text of text/plain
// and text/html parts for searching.
func (p *parser) parseLeaf(e *entity, bs []string) (end, error) {
	collect := !e.f.opaque && strings.EqualFold(e.f.typ, "text") &&
		(strings.EqualFold(e.f.sub, "plain") || strings.EqualFold(e.f.sub, "html")) &&
		len(p.text) < MaxTextBytes
	if !collect {
		return p.scanBody(bs, 0, nil)
	}
	var raw []byte
	en, err := p.scanBody(bs, 0, func(b []byte) {
		if n := maxRawText - len(raw); n > 0 {
			raw = append(raw, b[:min(n, len(b))]...)
		}
	})
	if err != nil {
		return end{}, err
	}
	text, bad := decodeText(raw, e.f.encoding, e.f.charset, strings.EqualFold(e.f.sub, "html"))
	if bad {
		p.malformed = true
	}
	p.addText(text)
	return en, nil
}

// addText appends a part's text, keeping Text within MaxTextBytes and valid
// UTF-8.
func (p *parser) addText(s string) {
	s = strings.TrimSpace(strings.ReplaceAll(s, "\r\n", "\n"))
	if s == "" {
		return
	}
	if len(p.text) > 0 {
		if len(p.text)+1 >= MaxTextBytes {
			return
		}
		p.text = append(p.text, '\n')
	}
	room := MaxTextBytes - len(p.text)
	if len(s) > room {
		s = truncateUTF8(s, room)
	}
	p.text = append(p.text, s...)
}

// parseMultipart parses the body of multipart e: preamble, body parts and
// epilogue (RFC 2046 §5.1.1).
func (p *parser) parseMultipart(e *entity, bs []string, depth int) (end, error) {
	inner := append(bs[:len(bs):len(bs)], e.f.boundary)
	level := len(bs)
	childType := "text/plain"
	if strings.EqualFold(e.f.sub, "digest") {
		childType = "message/rfc822" // RFC 2046 §5.1.5
	}

	lfsAtBody := p.lfs
	en, err := p.scanBody(inner, 0, nil)
	if err != nil {
		return end{}, err
	}
	if en.st.eof || en.st.level != level || en.st.closing {
		// No body part at all. BODYSTRUCTURE needs one: describe the whole
		// body as one header-less text/plain part.
		p.malformed = true
		c := &entity{headerOff: e.bodyOff, bodyOff: e.bodyOff, f: defaultFields("text/plain")}
		c.bodyLen = en.off - e.bodyOff
		c.lines = lineCount(c.bodyLen, en.lfs-lfsAtBody, en.last)
		e.children = append(e.children, c)
		p.parts++
		if en.st.eof || en.st.level != level {
			return en, nil
		}
		return p.scanBody(bs, p.lastTerm, nil)
	}
	for {
		if p.parts >= p.opts.MaxParts {
			// Too many parts: skip to this multipart's close delimiter.
			p.malformed = true
			for {
				en, err = p.scanBody(inner, 0, nil)
				if err != nil {
					return end{}, err
				}
				if en.st.eof || en.st.level != level || en.st.closing {
					break
				}
			}
		} else {
			var c *entity
			c, en, err = p.parseEntity(inner, depth+1, false, childType, false)
			if err != nil {
				return end{}, err
			}
			e.children = append(e.children, c)
		}
		if en.st.eof || en.st.level != level {
			// Close delimiter missing: implicitly closed by EOF or by an
			// enclosing delimiter.
			p.malformed = true
			return en, nil
		}
		if en.st.closing {
			return p.scanBody(bs, p.lastTerm, nil)
		}
	}
}
