package repo

import (
	"errors"
	"testing"
)

func TestNormalizeMailboxName(t *testing.T) {
	for in, want := range map[string]string{"inbox": "INBOX", "InBox/Sub": "INBOX/Sub", "a/b": "a/b", "Inboxes": "Inboxes"} {
		if got, err := NormalizeMailboxName(in); err != nil || got != want {
			t.Errorf("%q: got %q %v, want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "/a", "a/", "a//b", "a*", "a%b", "a\x00", "\xff"} {
		if _, err := NormalizeMailboxName(bad); !errors.Is(err, ErrInvalidName) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestMatchMailboxPattern(t *testing.T) {
	cases := []struct {
		pat, name string
		want      bool
	}{
		{"*", "a/b/c", true}, {"%", "a", true}, {"%", "a/b", false}, {"a/%", "a/b", true}, {"a/%", "a/b/c", false},
		{"a/*", "a/b/c", true}, {"a*", "ab/c", true}, {"a%", "ab/c", false}, {"%/%", "a/b", true}, {"inbox", "INBOX", true},
		{"inbox/%", "INBOX/x", true}, {"inboxes", "Inboxes", false}, {"a%c", "abc", true}, {"a%c", "a/c", false}, {"", "a", false},
	}
	for _, c := range cases {
		if got := MatchMailboxPattern(c.pat, c.name); got != c.want {
			t.Errorf("match(%q, %q) = %v, want %v", c.pat, c.name, got, c.want)
		}
	}
}
