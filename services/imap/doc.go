// Package imap is the stateless IMAP frontend: serves mailboxes held by store.
//
// It follows RFC 9051 (IMAP4rev2), RFC 3501 (IMAP4rev1). The binary is cmd/petrel-imap; its settings are
// Config's flags and PETREL_IMAP_* variables (see package
// platform/config for the precedence rules).
package imap
