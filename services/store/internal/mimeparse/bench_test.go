package mimeparse

import (
	"bytes"
	"encoding/base64"
	"io"
	"runtime"
	"strings"
	"testing"
)

// benchMessage builds a realistic message of about size octets: a text
// part, an HTML alternative and a base64 attachment filling the rest.
func benchMessage(size int) []byte {
	var b bytes.Buffer
	b.WriteString("From: \"Bench Sender\" <sender@example.com>\r\nTo: a@example.com, b@example.com\r\n" +
		"Subject: =?utf-8?q?Benchmark_caf=C3=A9?=\r\nDate: Mon, 2 Nov 2026 08:00:00 +0000\r\n" +
		"Message-ID: <bench@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n" +
		"--mix\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n--alt\r\nContent-Type: text/plain; charset=utf-8\r\n" +
		"Content-Transfer-Encoding: quoted-printable\r\n\r\n")
	for i := 0; i < 20; i++ {
		b.WriteString("The quick brown fox jumps over the lazy dog, caf=C3=A9 edition.\r\n")
	}
	b.WriteString("--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body>")
	for i := 0; i < 20; i++ {
		b.WriteString("<p>The quick brown fox jumps over the lazy dog.</p>\r\n")
	}
	b.WriteString("</body></html>\r\n--alt--\r\n--mix\r\nContent-Type: application/octet-stream\r\n" +
		"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=data.bin\r\n\r\n")
	line := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xfb, 0x10, 0x42}, 19)) + "\r\n"
	for b.Len() < size-len("--mix--\r\n")-len(line) {
		b.WriteString(line)
	}
	b.WriteString("--mix--\r\n")
	return b.Bytes()
}

func BenchmarkParse(b *testing.B) {
	for _, tc := range []struct {
		name string
		size int
	}{{"10KiB", 10 << 10}, {"1MiB", 1 << 20}} {
		raw := benchMessage(tc.size)
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Parse(bytes.NewReader(raw)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// sampledReader generates a message of n body octets without holding it,
// and records the live heap every few MiB while Parse consumes it.
type sampledReader struct {
	r        io.Reader
	read     int64
	next     int64
	maxHeap  uint64
	interval int64
}

func (s *sampledReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.read += int64(n)
	if s.read >= s.next {
		s.next += s.interval
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		s.maxHeap = max(s.maxHeap, ms.HeapAlloc)
	}
	return n, err
}

type repeatReader struct {
	chunk []byte
	left  int64
	off   int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && r.left > 0 {
		c := copy(p[n:], r.chunk[r.off:])
		c = int(min(int64(c), r.left))
		n += c
		r.left -= int64(c)
		r.off = (r.off + c) % len(r.chunk)
	}
	return n, nil
}

// TestLargeMessagesStayBounded parses 50 MiB attachments, one in 76-column
// base64 lines and one as a single unbroken line, and checks that the live
// heap never comes near the message size.
func TestLargeMessagesStayBounded(t *testing.T) {
	const attachment = 50 << 20
	for _, tc := range []struct{ name, chunk string }{
		{"base64 lines", strings.Repeat("A", 76) + "\r\n"},
		{"one long line", strings.Repeat("QUJD", 1024)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			head := "Subject: big\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n" +
				"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
			tail := "\r\n--b--\r\n"
			sr := &sampledReader{
				r:        io.MultiReader(strings.NewReader(head), &repeatReader{chunk: []byte(tc.chunk), left: attachment}, strings.NewReader(tail)),
				interval: 5 << 20,
			}
			var before runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			p, err := Parse(sr)
			if err != nil {
				t.Fatal(err)
			}
			if want := int64(len(head) + attachment + len(tail)); p.Size != want {
				t.Fatalf("Size = %d, want %d", p.Size, want)
			}
			pt, _ := partByPath(p, "2")
			if pt.BodyLen != attachment || p.Text != "see attachment" {
				t.Fatalf("part 2 = %+v, text %q", pt, p.Text)
			}
			if grown := int64(sr.maxHeap) - int64(before.HeapAlloc); grown > 8<<20 {
				t.Fatalf("live heap grew by %d octets while parsing a %d-octet message", grown, p.Size)
			}
		})
	}
}
