package downgrade

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
	"sync/atomic"
	"testing"
)

func convert(t *testing.T, in string) string {
	t.Helper()
	var out bytes.Buffer
	if err := Convert(&out, strings.NewReader(in)); err != nil {
		t.Fatalf("Convert: %v", err)
	}
	return out.String()
}

// check7bit fails unless every line is 7-bit, at most 998 octets and
// ended by CRLF.
func check7bit(t *testing.T, out string) {
	t.Helper()
	for i, l := range strings.SplitAfter(out, "\r\n") {
		body := strings.TrimSuffix(l, "\r\n")
		if strings.ContainsAny(body, "\r\n") {
			t.Errorf("line %d has a lone CR or LF: %q", i, l)
		}
		if len(body) > 998 {
			t.Errorf("line %d is %d octets long", i, len(body))
		}
		for _, b := range []byte(body) {
			if b >= 0x80 || b == 0 {
				t.Fatalf("line %d is not 7-bit: %q", i, l)
			}
		}
	}
}

// part is a leaf as a reader sees it after decoding.
type part struct {
	contentType string
	encoding    string
	body        string
}

// leaves decodes a message with the standard library alone (another
// implementation than the converter's) into its leaf parts, depth first.
func leaves(t *testing.T, raw string) []part {
	t.Helper()
	m, err := mail.ReadMessage(strings.NewReader(raw))
	if err != nil {
		t.Fatalf("read message: %v\n%s", err, raw)
	}
	return leavesOf(t, textproto.MIMEHeader(m.Header), m.Body)
}

func leavesOf(t *testing.T, h textproto.MIMEHeader, body io.Reader) []part {
	t.Helper()
	ct := h.Get("Content-Type")
	mt, params, _ := mime.ParseMediaType(ct)
	cte := strings.ToLower(h.Get("Content-Transfer-Encoding"))
	switch {
	case strings.HasPrefix(mt, "multipart/"):
		mr := multipart.NewReader(body, params["boundary"])
		var out []part
		for {
			p, err := mr.NextRawPart()
			if err == io.EOF {
				return out
			}
			if err != nil {
				t.Fatalf("next part: %v", err)
			}
			out = append(out, leavesOf(t, p.Header, p)...)
		}
	case mt == "message/rfc822":
		m, err := mail.ReadMessage(body)
		if err != nil {
			t.Fatalf("embedded message: %v", err)
		}
		return leavesOf(t, textproto.MIMEHeader(m.Header), m.Body)
	}
	var r io.Reader = body
	switch cte {
	case "quoted-printable":
		r = quotedprintable.NewReader(body)
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, body)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decode %s part: %v", cte, err)
	}
	return []part{{contentType: ct, encoding: cte, body: string(b)}}
}

func TestNonMIMEMessageBecomesQuotedPrintable(t *testing.T) {
	in := "From: a@example.org\r\nSubject: caf\r\n\r\nGr\xfc\xdfe aus K\xf6ln\r\nzweite Zeile\r\n"
	out := convert(t, in)
	check7bit(t, out)
	ls := leaves(t, out)
	if len(ls) != 1 || ls[0].body != "Gr\xfc\xdfe aus K\xf6ln\r\nzweite Zeile\r\n" || ls[0].encoding != "quoted-printable" {
		t.Fatalf("leaves %+v\n%s", ls, out)
	}
	if !strings.HasPrefix(out, "From: a@example.org\r\nSubject: caf\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=unknown-8bit\r\n") {
		t.Errorf("header:\n%s", out)
	}
	if !strings.HasSuffix(out, "\r\n") || strings.HasSuffix(out, "\r\n\r\n") {
		t.Errorf("message end %q", out[len(out)-10:])
	}
}

const mixed = "From: a@example.org\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"outer\"\r\n" +
	"Content-Transfer-Encoding: 8bit\r\n" +
	"\r\n" +
	"pr\xe9amble\r\n" +
	"--outer\r\n" +
	"Content-Type: text/plain; charset=iso-8859-1\r\n" +
	"Content-Transfer-Encoding: 8bit\r\n" +
	"X-Keep: yes\r\n" +
	"\r\n" +
	"Fa\xe7ade = caf\xe9  \r\n" +
	"\r\n" +
	"--outer\r\n" +
	"Content-Type: application/octet-stream\r\n" +
	"Content-Transfer-Encoding: binary\r\n" +
	"\r\n" +
	"\x00\x01\xff\xfe binary\r\n" +
	"--outer\r\n" +
	"Content-Type: text/plain\r\n" +
	"Content-Transfer-Encoding: 7bit\r\n" +
	"\r\n" +
	"plain ascii\r\n" +
	"--outer\r\n" +
	"Content-Type: image/png\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"iVBORw0KGgo=\r\n" +
	"--outer\r\n" +
	"Content-Type: message/rfc822\r\n" +
	"Content-Transfer-Encoding: 8bit\r\n" +
	"\r\n" +
	"Subject: inner\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/alternative; boundary=inner\r\n" +
	"\r\n" +
	"--inner\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"h\xc3\xa9 inner\r\n" +
	"--inner--\r\n" +
	"--outer--\r\n" +
	"\xe9pilogue\r\n"

func TestMultipartPartsConvertedOneByOne(t *testing.T) {
	out := convert(t, mixed)
	check7bit(t, out)
	want := []part{
		{"text/plain; charset=iso-8859-1", "quoted-printable", "Fa\xe7ade = caf\xe9  \r\n"},
		{"application/octet-stream", "base64", "\x00\x01\xff\xfe binary"},
		{"text/plain", "7bit", "plain ascii"},
		{"image/png", "base64", "\x89PNG\r\n\x1a\n"},
		{"text/plain; charset=utf-8", "quoted-printable", "h\xc3\xa9 inner"},
	}
	got := leaves(t, out)
	if len(got) != len(want) {
		t.Fatalf("got %d leaves, want %d:\n%s", len(got), len(want), out)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("leaf %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, s := range []string{
		// Structure relabelled, not encoded.
		"Content-Type: multipart/mixed; boundary=\"outer\"\r\nContent-Transfer-Encoding: 7bit\r\n\r\npr?amble\r\n--outer\r\n",
		"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 7bit\r\n\r\nSubject: inner\r\n",
		// Other fields of a converted part kept, in order.
		"Content-Type: text/plain; charset=iso-8859-1\r\nX-Keep: yes\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
		// Clean and already-encoded parts byte for byte.
		"Content-Transfer-Encoding: 7bit\r\n\r\nplain ascii\r\n--outer\r\n",
		"Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--outer\r\n",
		"--inner--\r\n--outer--\r\n?pilogue\r\n",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
}

func TestCleanMessagePassesUnchanged(t *testing.T) {
	in := "From: a@example.org\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n" +
		"Content-Transfer-Encoding: 8bit\r\n\r\n--b\r\nContent-Transfer-Encoding: 8bit\r\n\r\nonly ascii here\r\n--b--\r\n"
	// Only the multipart's label changes: its parts are clean.
	want := strings.Replace(in, "multipart/mixed; boundary=b\r\nContent-Transfer-Encoding: 8bit", "multipart/mixed; boundary=b\r\nContent-Transfer-Encoding: 7bit", 1)
	if out := convert(t, in); out != want {
		t.Errorf("got\n%q\nwant\n%q", out, want)
	}
	plain := "Subject: x\r\n\r\nhello\r\n.\r\nworld\r\n"
	if out := convert(t, plain); out != plain {
		t.Errorf("clean non-MIME message changed: %q", out)
	}
}

func TestLongLinesAndLargeParts(t *testing.T) {
	long := strings.Repeat("x", 5000)
	in := "Subject: long\r\nContent-Type: text/plain\r\n\r\n" + long + "\r\nend\r\n"
	out := convert(t, in)
	check7bit(t, out)
	if ls := leaves(t, out); len(ls) != 1 || ls[0].body != long+"\r\nend\r\n" {
		t.Errorf("long line: %+v", ls)
	}

	// Clean 7-bit for more than the look-ahead, 8-bit after it; lines
	// longer than the converter's read buffer; LF line ends.
	var b strings.Builder
	b.WriteString("Content-Type: multipart/mixed; boundary=zz\n\n--zz\nContent-Type: text/plain; charset=latin1\n\n")
	var body strings.Builder
	for body.Len() < 200<<10 {
		body.WriteString("line of plain text number whatever\n")
	}
	body.WriteString(strings.Repeat("\xe4", 70<<10) + "\n")
	body.WriteString("last\n")
	b.WriteString(body.String())
	b.WriteString("--zz\nContent-Type: application/pdf\n\n" + strings.Repeat("%PDF\xff", 20<<10) + "\n--zz--\n")
	out = convert(t, b.String())
	check7bit(t, out)
	ls := leaves(t, out)
	wantText := strings.TrimSuffix(strings.ReplaceAll(body.String(), "\n", "\r\n"), "\r\n")
	if len(ls) != 2 || ls[0].body != wantText || ls[1].body != strings.Repeat("%PDF\xff", 20<<10) {
		t.Fatalf("got %d leaves; text equal %v, pdf equal %v", len(ls), len(ls) > 0 && ls[0].body == wantText, len(ls) > 1 && ls[1].body == strings.Repeat("%PDF\xff", 20<<10))
	}
	if ls[0].encoding != "quoted-printable" || ls[1].encoding != "base64" {
		t.Errorf("encodings %q %q", ls[0].encoding, ls[1].encoding)
	}
}

func TestDeepNestingIsMalformed(t *testing.T) {
	var b strings.Builder
	for i := range 40 {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i)
	}
	b.WriteString("\r\n\xff\r\n")
	err := Convert(io.Discard, strings.NewReader(b.String()))
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("got %v, want ErrMalformed", err)
	}
	huge := "Subject: " + strings.Repeat("a", 2<<20) + "\r\n\r\n\xff\r\n"
	if err := Convert(io.Discard, strings.NewReader(huge)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("huge header: got %v, want ErrMalformed", err)
	}
}

func TestReaderStopsWhenClosed(t *testing.T) {
	src := &countingReader{r: strings.NewReader("Subject: x\r\n\r\n" + strings.Repeat("\xe9\xe9\xe9\xe9\r\n", 1<<20))}
	rc := Reader(io.NopCloser(src))
	if _, err := io.ReadFull(bufio.NewReader(rc), make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	// The converter sees the closed pipe at its next write and stops
	// reading; the whole 6 MiB would take far more reads.
	if n := src.reads(); n > 400 {
		t.Errorf("%d reads after close", n)
	}
}

func FuzzConvert(f *testing.F) {
	f.Add(mixed)
	f.Add("Subject: x\r\n\r\n\xff\r\n")
	f.Add("Content-Type: multipart/mixed; boundary=a\n\n--a\n\n\xe9\n--a--\n")
	f.Add("Content-Type: message/rfc822\r\n\r\nContent-Type: text/plain\r\n\r\n\x80")
	f.Fuzz(func(t *testing.T, in string) {
		var out bytes.Buffer
		if err := Convert(&out, strings.NewReader(in)); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Convert: %v", err)
			}
			return
		}
		// A converted message needs no further conversion.
		var again bytes.Buffer
		if err := Convert(&again, bytes.NewReader(out.Bytes())); err != nil {
			t.Fatalf("second Convert: %v", err)
		}
		if !bytes.Equal(out.Bytes(), again.Bytes()) {
			t.Fatalf("not a fixed point:\n%q\n%q", out.String(), again.String())
		}
	})
}

type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.n.Add(1)
	return c.r.Read(p)
}

func (c *countingReader) reads() int64 { return c.n.Load() }
