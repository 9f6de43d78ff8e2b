package auth

import (
	"crypto/rand"
	"fmt"
	"io"
	"strings"
)

// appPasswordAlphabet has 32 lower-case letters and digits without the
// pairs easily confused on a screen (0/o, 1/l). 32 symbols make one random
// byte masked to 5 bits exactly uniform.
const appPasswordAlphabet = "abcdefghijkmnpqrstuvwxyz23456789"

// AppPasswordLen is the number of random characters in an app password:
// 20 characters of 5 bits are 100 bits of entropy, far beyond what online
// guessing under throttling can reach.
const AppPasswordLen = 20

// GenerateAppPassword returns a new random app password, grouped in fives
// with dashes for readability ("abcde-fghjk-mnpqr-stuvw"). Dashes, spaces
// and case are ignored when it is checked.
func GenerateAppPassword() (string, error) {
	return generateAppPassword(rand.Reader)
}

func generateAppPassword(r io.Reader) (string, error) {
	buf := make([]byte, AppPasswordLen)
	if _, err := io.ReadFull(r, buf); err != nil {
		return "", fmt.Errorf("auth: generate app password: %w", err)
	}
	var b strings.Builder
	for i, c := range buf {
		if i > 0 && i%5 == 0 {
			b.WriteByte('-')
		}
		b.WriteByte(appPasswordAlphabet[c&31])
	}
	return b.String(), nil
}

// NormalizeAppPassword returns the form of an app password that is hashed:
// lower case without dashes or spaces, so that users may type it either way.
func NormalizeAppPassword(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '-' || r == ' ':
			return -1
		case r >= 'A' && r <= 'Z':
			return r + ('a' - 'A')
		}
		return r
	}, s)
}

// NewAppPassword generates an app password and its hash. The password is
// shown to the user once; only the hash is stored.
func (h *Hasher) NewAppPassword() (password, hash string, err error) {
	password, err = GenerateAppPassword()
	if err != nil {
		return "", "", err
	}
	hash, err = h.Hash(NormalizeAppPassword(password))
	if err != nil {
		return "", "", err
	}
	return password, hash, nil
}
