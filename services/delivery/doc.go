// Package delivery is the delivery service: consumes the mail queue, delivers to local mailboxes through store and to remote MX hosts over SMTP, and bounces what cannot be delivered.
//
// It follows RFC 5321 (SMTP client), RFC 3464 (DSN), RFC 6376 (DKIM). The binary is cmd/petrel-delivery; its settings are
// Config's flags and PETREL_DELIVERY_* variables (see package
// platform/config for the precedence rules).
package delivery
