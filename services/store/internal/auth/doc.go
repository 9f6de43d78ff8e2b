// Package auth is the authentication and authorization core of the mail
// store: it decides who a caller is and what that caller may do.
//
// It holds no data itself. Account credentials come from a CredentialSource
// that the data layer implements; everything else is computed here:
//
//   - Passwords and app passwords are argon2id hashes (RFC 9106) stored in
//     the PHC string format
//     ($argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>, unpadded
//     standard base64 as the PHC format and RFC 9106 reference code use).
//     Verification is constant-time, and a login name that does not exist is
//     checked against a dummy hash so that timing does not tell whether an
//     account exists.
//   - Tokens are HMAC-SHA256 (RFC 2104) signed, base64url (RFC 4648 §5)
//     encoded JSON claims carrying the id of the key that signed them, so a
//     Keyring can rotate keys while older tokens still verify. A token says
//     which kind of principal it stands for: a user session, a service (smtp,
//     delivery, imap, pop3) with a fixed set of capabilities, an operator, or
//     the admin of one tenant.
//   - Failed logins are throttled per login name and per remote network
//     (IPv4 /32, IPv6 /64) with a sliding window: after a few failures each
//     attempt is delayed exponentially, after more it is refused until the
//     window has passed.
//   - gRPC interceptors read "authorization: Bearer <token>" (RFC 6750 §2.1)
//     from incoming metadata, put the verified Principal in the context and
//     enforce a per-method table that denies any method it does not list.
//
// Error discipline: callers see ErrAuthFailed for both an unknown login name
// and a wrong password, and gRPC clients see only a status code with an
// ErrorInfo reason, never the cause.
package auth
