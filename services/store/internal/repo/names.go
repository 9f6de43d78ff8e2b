package repo

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxMailboxNameLen bounds a stored mailbox name in octets.
const MaxMailboxNameLen = 1000

// NormalizeMailboxName checks a mailbox name and returns its stored form:
// "INBOX" in any case becomes "INBOX", also as the first component of a
// child ("inbox/x" is "INBOX/x"). Names are valid UTF-8, non-empty, without
// empty components, leading or trailing delimiters, control characters or
// the LIST wildcards '%' and '*' (RFC 9051 §5.1).
func NormalizeMailboxName(name string) (string, error) {
	if name == "" || len(name) > MaxMailboxNameLen || !utf8.ValidString(name) {
		return "", fmt.Errorf("%w: %q", ErrInvalidName, name)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == '%' || r == '*' {
			return "", fmt.Errorf("%w: %q", ErrInvalidName, name)
		}
	}
	parts := strings.Split(name, string(Delimiter))
	for _, p := range parts {
		if p == "" {
			return "", fmt.Errorf("%w: %q", ErrInvalidName, name)
		}
	}
	if strings.EqualFold(parts[0], Inbox) {
		parts[0] = Inbox
	}
	return strings.Join(parts, string(Delimiter)), nil
}

// ParentNames returns the names of name's ancestors, outermost first.
func ParentNames(name string) []string {
	var out []string
	for i := 0; i < len(name); i++ {
		if name[i] == Delimiter {
			out = append(out, name[:i])
		}
	}
	return out
}

// MatchMailboxPattern reports whether name matches a LIST pattern: '*'
// matches any run of characters, '%' any run without the delimiter (RFC
// 9051 §6.3.9). A leading "INBOX" in the pattern matches case-insensitively.
func MatchMailboxPattern(pattern, name string) bool {
	if len(pattern) >= len(Inbox) && strings.EqualFold(pattern[:len(Inbox)], Inbox) &&
		(len(pattern) == len(Inbox) || pattern[len(Inbox)] == Delimiter) {
		pattern = Inbox + pattern[len(Inbox):]
	}
	return match(pattern, name)
}

func match(p, s string) bool {
	for len(p) > 0 {
		switch p[0] {
		case '*', '%':
			rest := p[1:]
			for i := 0; i <= len(s); i++ {
				if match(rest, s[i:]) {
					return true
				}
				if i < len(s) && p[0] == '%' && s[i] == Delimiter {
					return false
				}
			}
			return false
		default:
			if len(s) == 0 || s[0] != p[0] {
				return false
			}
			p, s = p[1:], s[1:]
		}
	}
	return len(s) == 0
}

// Contains reports whether uid is in the set (nil: every UID).
func (u UIDSet) Contains(uid uint32) bool {
	if u == nil {
		return true
	}
	for _, r := range u {
		if uid >= r.Start && uid <= r.Stop {
			return true
		}
	}
	return false
}
