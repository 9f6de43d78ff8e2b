package mimeparse

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: for any input Parse never panics or fails, and its output
// keeps the invariants the store serves FETCH from (checkInvariants).
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob("testdata/*.eml")
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		raw, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Add(nested(8))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: message/rfc822\r\n\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n\r\nx\r\n--a--\r\n--a--\r\n"))
	f.Add([]byte("To: g: a@b, (c) \"d\" <@x,@y:e@f>;, <>, @, x@\r\nSubject: =?utf-8?q?x?=\r\n\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		p, err := ParseWithOptions(bytes.NewReader(raw), Options{MaxDepth: 20, MaxParts: 200})
		if err != nil {
			t.Fatalf("Parse failed on content: %v", err)
		}
		p2, err := ParseWithOptions(bytes.NewReader(raw), Options{MaxDepth: 20, MaxParts: 200})
		if err != nil || !bytes.Equal(p.BodyStructure, p2.BodyStructure) || !bytes.Equal(p.Envelope, p2.Envelope) || p.Text != p2.Text {
			t.Fatalf("Parse is not deterministic")
		}
		checkInvariants(t, raw, mustParse(t, raw))
	})
}
