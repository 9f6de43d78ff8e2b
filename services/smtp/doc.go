// Package smtp is SMTP ingress: receives mail as MX (port 25) and from authenticated submission (587, 465), writes it to the blob store and queues it.
//
// It follows RFC 5321 (SMTP), RFC 6409 (submission), RFC 8314 (implicit TLS).
// New assembles the service from a Config (blob store, NATS, the store's
// directory over gRPC, sender authentication, one server per listener) and
// Group serves the listeners as one lifecycle component so that they drain
// together on SIGTERM. The binary is cmd/petrel-smtp; its settings are
// Config's flags and PETREL_SMTP_* variables (see package
// platform/config for the precedence rules).
package smtp
