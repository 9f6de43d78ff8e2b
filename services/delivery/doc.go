// Package delivery is the delivery service: it consumes the mail queue that
// smtp fills, delivers to local mailboxes through the store and to remote
// MX hosts over SMTP, and bounces what cannot be delivered.
//
// It follows RFC 5321 (SMTP client, §4.5.4.1 retry strategy), RFC 3464
// (DSN), RFC 3463 (enhanced status codes in recorded replies) and RFC 6376
// (DKIM). The binary is cmd/petrel-delivery; its settings are Config's
// flags and PETREL_DELIVERY_* variables (see package platform/config for
// the precedence rules).
//
// The parts: internal/queue consumes PETREL_QUEUE and keeps retry state in
// JetStream (its package doc explains why and how); internal/local
// delivers to local accounts with the store's Deliver; Remote is the
// Outbound of the remote path: recipients grouped by domain, routed by
// internal/route (MX, implicit MX, null MX, --smarthost), one SMTP session
// per domain through internal/smtpout, the message DKIM-signed
// (internal/dkimsign) with the envelope sender domain's key, which the
// store holds (DKIMService.GetSigningKey, cached for --dkim-key-cache);
// DSNQueuer is the Bouncer: it builds bounces and the delay warning with
// internal/dsn and queues each as a new null-sender entry (blob under
// smtp's key scheme, JetStream message id "<queue id>-b<attempt>" or
// "-d<attempt>", so a repeated attempt queues it once); internal/admin
// serves the queue administration API on --grpc-listen.
//
// Admin authentication: only the store holds the keys that sign tokens, so
// the admin API sends the caller's token to the store (AdminService
// ListTenants, read-only) and accepts it when the store does and the
// token's signed claims say "operator"; accepted tokens are cached for 30
// seconds.
//
// The message object's lifetime: smtp writes it, the store references it
// once a local delivery links it, and the store's collector deletes it
// --gc-grace after the last reference goes. delivery deletes the object
// itself when an entry finishes and no Deliver call for it may have made
// the store reference it (remote-only or all-bounced entries). The gap
// that remains: a Deliver that made the store create an object row but no
// mailbox entry (all recipients over quota) lets the collector delete the
// object --gc-grace later, while the entry may still be retried; likewise
// a remote retry after every local copy was expunged. Until the store
// counts queue references, run the store with --gc-grace longer than
// --max-queue-lifetime (5 days by default).
package delivery
