// Package pop3 is the stateless POP3 frontend: serves the INBOX held by store.
//
// It follows RFC 1939 (POP3), RFC 2595 (STLS). The binary is cmd/petrel-pop3; its settings are
// Config's flags and PETREL_POP3_* variables (see package
// platform/config for the precedence rules).
package pop3
