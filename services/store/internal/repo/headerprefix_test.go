package repo

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckHeaderPrefix(t *testing.T) {
	good := []string{
		"",
		"Delivered-To: a@example.org\r\n",
		"Return-Path: <b@example.net>\r\nDelivered-To: a@example.org\r\n",
		"X-Long: one\r\n\ttwo\r\n",
		"Delivered-To: \xc3\xa9@example.org\r\n",
		strings.Repeat("X: y\r\n", MaxHeaderPrefix/6),
	}
	for _, p := range good {
		if err := CheckHeaderPrefix([]byte(p)); err != nil {
			t.Errorf("%q: %v", p, err)
		}
	}
	bad := []string{
		"Delivered-To: a@example.org",                   // no CRLF
		"Delivered-To: a@example.org\n",                 // bare LF
		"Delivered-To: a\rb@example.org\r\n",            // bare CR
		"Delivered-To: a@example.org\r\n\r\n",           // ends the header
		" folded: first\r\n",                            // continuation first
		"no colon here\r\n",                             // not a field
		": empty name\r\n",                              // empty name
		"Bad Name: x\r\n",                               // space in name
		"X: a\x00b\r\n",                                 // NUL
		strings.Repeat("X: y\r\n", MaxHeaderPrefix/6+1), // too long
	}
	for _, p := range bad {
		if err := CheckHeaderPrefix([]byte(p)); !errors.Is(err, ErrBadHeaderPrefix) {
			t.Errorf("%q: %v, want ErrBadHeaderPrefix", p, err)
		}
	}
}
