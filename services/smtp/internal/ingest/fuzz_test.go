package ingest

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// FuzzGuardAndHeaderFixer checks the invariants of what ingest parses
// itself: the guard refuses exactly the inputs with a lone CR or LF; the
// header fixer only ever adds the missing fields, inside the header, and
// leaves every other byte as it was, however the input is split.
func FuzzGuardAndHeaderFixer(f *testing.F) {
	for _, s := range []string{
		"From: a@b\r\nSubject: x\r\n\r\nbody\r\n",
		"Message-ID: <x@y>\r\nDate: now\r\n\r\n",
		"\r\nno header\r\n",
		"Subject: only header\r\n",
		"Subject: x\r\n folded\r\n\r\nbody\n.\r\n",
		"body\r.\r\n",
		"From: " + strings.Repeat("a", 5000) + "\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		bare := false
		for i, c := range in {
			if c == '\n' && (i == 0 || in[i-1] != '\r') || c == '\r' && (i+1 == len(in) || in[i+1] != '\n') {
				bare = true
			}
		}
		out, err := io.ReadAll(newGuard(iotest.OneByteReader(bytes.NewReader(in)), 0))
		if bare != errors.Is(err, ErrBareLineEnding) {
			t.Fatalf("bare=%v err=%v", bare, err)
		}
		if bare {
			return
		}
		if !bytes.Equal(out, in) {
			t.Fatal("guard changed the message")
		}
		add := []byte("X-Added: 1\r\n")
		fixed, err := io.ReadAll(newHeaderFixer(iotest.HalfReader(bytes.NewReader(in)), 0, func(fieldSet) []byte { return add }, nil))
		if err != nil {
			t.Fatal(err)
		}
		i := bytes.Index(fixed, add)
		if i < 0 || bytes.Count(fixed, add) != bytes.Count(in, add)+1 {
			t.Fatalf("field not added once: %q", fixed)
		}
		rest := append(append([]byte{}, fixed[:i]...), fixed[i+len(add):]...)
		if !bytes.Equal(rest, in) && !bytes.Equal(rest, append(append([]byte{}, in...), '\r', '\n')) {
			t.Fatalf("other bytes changed:\nin  %q\nout %q", in, fixed)
		}
	})
}
