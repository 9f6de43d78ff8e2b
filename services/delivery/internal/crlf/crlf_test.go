package crlf_test

import (
	"bytes"
	"io"
	"testing"
	"testing/iotest"

	"github.com/petrel-mail/petrel/services/delivery/internal/crlf"
)

func TestNormalize(t *testing.T) {
	cases := map[string]string{
		"":                        "",
		"a\r\nb\r\n":              "a\r\nb\r\n",
		"a\nb\n":                  "a\r\nb\r\n",
		"a\rb\r":                  "a\r\nb\r\n",
		"x\n.\r\nMAIL FROM:<a>\r": "x\r\n.\r\nMAIL FROM:<a>\r\n",
		"\r\r\n\n\r":              "\r\n\r\n\r\n\r\n",
		"no newline":              "no newline",
	}
	for in, want := range cases {
		got, err := io.ReadAll(crlf.NewReader(bytes.NewReader([]byte(in))))
		if err != nil || string(got) != want {
			t.Errorf("%q -> %q, %v; want %q", in, got, err, want)
		}
		// One byte at a time: a CR at the end of one read and its LF at
		// the start of the next must still make one CRLF.
		got, err = io.ReadAll(crlf.NewReader(iotest.OneByteReader(bytes.NewReader([]byte(in)))))
		if err != nil || string(got) != want {
			t.Errorf("one byte at a time: %q -> %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestReadErrorPassesThrough(t *testing.T) {
	boom := iotest.ErrReader(io.ErrUnexpectedEOF)
	_, err := io.ReadAll(crlf.NewReader(io.MultiReader(bytes.NewReader([]byte("a\n")), boom)))
	if err != io.ErrUnexpectedEOF {
		t.Fatalf("err = %v", err)
	}
}

func TestLargeInputStreams(t *testing.T) {
	line := bytes.Repeat([]byte("x"), 997)
	var in bytes.Buffer
	for range 3000 {
		in.Write(line)
		in.WriteByte('\n')
	}
	got, err := io.ReadAll(crlf.NewReader(&in))
	if err != nil || len(got) != 3000*999 || bytes.Count(got, []byte("\r\n")) != 3000 {
		t.Fatalf("len %d, %v", len(got), err)
	}
}
