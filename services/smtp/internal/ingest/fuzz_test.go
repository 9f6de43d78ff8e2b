package ingest

import (
	"bytes"
	"errors"
	"io"
	"regexp"
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
		"Received: from a\r\n\tby b\r\nreceived : from c\r\n\r\nReceived: in the body\r\n",
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

		// The hop limit refuses exactly the headers with that many
		// Received: fields, whatever the reads' sizes.
		const maxHops = 2
		_, err = io.ReadAll(newHeaderFixer(iotest.OneByteReader(bytes.NewReader(in)), maxHops, nil, nil))
		if err != nil && !errors.Is(err, ErrTooManyHops) {
			t.Fatal(err)
		}
		if got, want := errors.Is(err, ErrTooManyHops), receivedFields(in) >= maxHops; got != want {
			t.Fatalf("refused=%v with %d Received: fields (limit %d)", got, receivedFields(in), maxHops)
		}
	})
}

// receivedLine is a header line that starts a Received: field (RFC 5322
// §4.5.3 allows white space before the colon).
var receivedLine = regexp.MustCompile(`(?i)^received[ \t]*:`)

// receivedFields counts the Received: fields of a message's header: the
// lines up to the first empty one that are not continuations.
func receivedFields(msg []byte) int {
	n := 0
	for _, line := range strings.Split(string(msg), "\r\n") {
		if line == "" {
			break
		}
		if receivedLine.MatchString(line) {
			n++
		}
	}
	return n
}
