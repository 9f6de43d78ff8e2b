// Package e2e holds the end-to-end tests of issue 6: they run `make dev`
// as a user would (scripts/run.sh starting every service binary), drive it
// with real clients only — petrelctl, swaks (SMTP, RFC 5321; AUTH PLAIN,
// RFC 4954/4616) and Postfix's smtp-source for the crash test — and check the
// result through the store's gRPC API. The package has no code of its
// own; it lives in the ctl module because it drives petrelctl.
package e2e
