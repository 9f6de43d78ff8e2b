package mimeparse

import (
	"bytes"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func mustParse(t testing.TB, raw []byte) *Parsed {
	t.Helper()
	p, err := Parse(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

func partByPath(p *Parsed, path string) (Part, bool) {
	for _, pt := range p.Parts {
		if pt.Path == path {
			return pt, true
		}
	}
	return Part{}, false
}

// checkInvariants verifies what the store relies on for any input: offsets
// inside the message, children inside their parent's body, siblings in
// order without overlap, well-formed wire strings, deterministic output.
func checkInvariants(t testing.TB, raw []byte, p *Parsed) {
	t.Helper()
	if p.Size != int64(len(raw)) {
		t.Fatalf("Size = %d, want %d", p.Size, len(raw))
	}
	if len(p.Parts) < 2 || p.Parts[0].Path != "" {
		t.Fatalf("Parts must start with the root and one more part: %+v", p.Parts)
	}
	root := p.Parts[0]
	if root.HeaderOffset != 0 || root.BodyOffset != root.HeaderLen || root.BodyOffset+root.BodyLen != p.Size {
		t.Fatalf("root part does not cover the message: %+v (size %d)", root, p.Size)
	}
	byPath := map[string]Part{}
	lastChildEnd := map[string]int64{}
	for _, pt := range p.Parts {
		if _, dup := byPath[pt.Path]; dup {
			t.Fatalf("duplicate part path %q", pt.Path)
		}
		byPath[pt.Path] = pt
		if pt.HeaderOffset < 0 || pt.HeaderLen < 0 || pt.BodyLen < 0 ||
			pt.HeaderOffset+pt.HeaderLen != pt.BodyOffset || pt.BodyOffset+pt.BodyLen > p.Size {
			t.Fatalf("part %q out of bounds: %+v (size %d)", pt.Path, pt, p.Size)
		}
		if pt.Lines < 0 {
			t.Fatalf("part %q: negative Lines %d", pt.Path, pt.Lines)
		}
		if pt.MessageHeaderLen < 0 || pt.MessageHeaderLen > pt.BodyLen {
			t.Fatalf("part %q: MessageHeaderLen %d outside body %d", pt.Path, pt.MessageHeaderLen, pt.BodyLen)
		}
		if pt.Path == "" {
			continue
		}
		parentPath := ""
		if i := strings.LastIndexByte(pt.Path, '.'); i >= 0 {
			parentPath = pt.Path[:i]
		}
		parent, ok := byPath[parentPath]
		if !ok {
			t.Fatalf("part %q listed before its parent %q", pt.Path, parentPath)
		}
		lo, hi := parent.BodyOffset, parent.BodyOffset+parent.BodyLen
		if parentPath == "" {
			lo = 0
		}
		if pt.HeaderOffset < lo || pt.BodyOffset+pt.BodyLen > hi {
			t.Fatalf("part %q [%d,%d) outside parent %q body [%d,%d)", pt.Path, pt.HeaderOffset, pt.BodyOffset+pt.BodyLen, parentPath, lo, hi)
		}
		if end, ok := lastChildEnd[parentPath]; ok && pt.HeaderOffset < end {
			t.Fatalf("part %q starts at %d before its previous sibling ends at %d", pt.Path, pt.HeaderOffset, end)
		}
		lastChildEnd[parentPath] = pt.BodyOffset + pt.BodyLen
	}
	for name, w := range map[string][]byte{"ENVELOPE": p.Envelope, "BODYSTRUCTURE": p.BodyStructure, "BODY": p.Body} {
		if err := checkWire(w); err != nil {
			t.Fatalf("%s is not a valid IMAP list: %v\n%q", name, err, w)
		}
	}
	if len(p.Text) > MaxTextBytes || len(p.Header) > MaxHeaderBytes {
		t.Fatalf("caps exceeded: text %d, header %d", len(p.Text), len(p.Header))
	}
	again, err := Parse(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p, again) {
		t.Fatalf("Parse is not deterministic")
	}
}

// checkWire checks that b is exactly one parenthesized IMAP list made of
// NIL, numbers, quoted strings, literals and nested lists (RFC 9051 §4).
func checkWire(b []byte) error {
	depth := 0
	i := 0
	for i < len(b) {
		c := b[i]
		switch {
		case c == '(':
			if i > 0 && depth == 0 {
				return fmt.Errorf("data after the list at %d", i)
			}
			depth++
			i++
		case c == ')':
			depth--
			if depth < 0 {
				return fmt.Errorf("unbalanced ')' at %d", i)
			}
			i++
		case c == ' ':
			i++
		case depth == 0:
			return fmt.Errorf("data outside the list at %d", i)
		case c == '"':
			j := i + 1
			for ; j < len(b) && b[j] != '"'; j++ {
				if b[j] == '\\' || b[j] == '\r' || b[j] == '\n' || b[j] == 0 || b[j] >= 0x80 {
					return fmt.Errorf("bad octet %#x in quoted string at %d", b[j], j)
				}
			}
			if j == len(b) {
				return fmt.Errorf("unterminated quoted string at %d", i)
			}
			i = j + 1
		case c == '{':
			j := bytes.IndexByte(b[i:], '}')
			if j < 0 {
				return fmt.Errorf("bad literal at %d", i)
			}
			n, err := strconv.Atoi(string(b[i+1 : i+j]))
			if err != nil || !bytes.HasPrefix(b[i+j+1:], []byte("\r\n")) || i+j+3+n > len(b) {
				return fmt.Errorf("bad literal at %d", i)
			}
			if bytes.IndexByte(b[i+j+3:i+j+3+n], 0) >= 0 {
				return fmt.Errorf("NUL in literal at %d", i)
			}
			i += j + 3 + n
		case bytes.HasPrefix(b[i:], []byte("NIL")):
			i += 3
		case c >= '0' && c <= '9':
			for i < len(b) && b[i] >= '0' && b[i] <= '9' {
				i++
			}
		default:
			return fmt.Errorf("unexpected %q at %d", c, i)
		}
	}
	if depth != 0 || len(b) == 0 || b[0] != '(' {
		return fmt.Errorf("not one balanced list")
	}
	return nil
}
