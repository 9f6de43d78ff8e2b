package smtp

import (
	"time"

	"github.com/petrel-mail/petrel/platform/config"
	"github.com/petrel-mail/petrel/platform/lifecycle"
	"github.com/petrel-mail/petrel/platform/logging"
	"github.com/petrel-mail/petrel/platform/natsx"
	"github.com/petrel-mail/petrel/platform/proxyproto"
	"github.com/petrel-mail/petrel/services/smtp/internal/ingest"
)

// Name is the service name: it forms the PETREL_SMTP_* variables,
// the binary's name and the service attribute of every log record.
const Name = "smtp"

// Config is petrel-smtp's configuration.
type Config struct {
	Log logging.Config
	// MetricsListen is where /metrics, /healthz and /readyz are served.
	MetricsListen string
	// ShutdownGrace bounds the drain after SIGTERM.
	ShutdownGrace time.Duration
	// AddrFile, if set, receives the bound addresses as JSON once the
	// service listens, for tests and launchers that use port 0.
	AddrFile string

	// Listeners; an empty address disables that listener.
	MXListen          string
	SubmissionListen  string
	SubmissionsListen string
	// Hostname names this server in the greeting, Received: and
	// Authentication-Results; empty means the system host name.
	Hostname string

	// TLS: a certificate and key file pair (reloaded when they change),
	// or a self-signed certificate made at start for local runs.
	TLSCertFile   string
	TLSKeyFile    string
	DevSelfSigned bool

	// PROXY protocol: load balancer networks trusted per listener
	// (comma-separated CIDRs; empty means no PROXY protocol).
	MXProxyCIDRs          string
	SubmissionProxyCIDRs  string
	SubmissionsProxyCIDRs string

	// AllowPlaintextAuthLoopback lets loopback clients AUTH without TLS.
	AllowPlaintextAuthLoopback bool

	// StoreAddr is the store's gRPC address; StoreTokenFile holds smtp's
	// service token; StoreCAFile, if set, is the CA that signs the store's
	// certificate (TLS), otherwise the connection is plaintext (loopback).
	StoreAddr      string
	StoreTokenFile string
	StoreCAFile    string
	// RecipientCacheTTL: how long RCPT TO answers are reused (0: never);
	// see directory.Cache.
	RecipientCacheTTL time.Duration

	// NATS: the servers and a prefix of stream and subject names (tests
	// on a shared server).
	NATSURLs   []string
	NATSPrefix string

	// Blob storage: an S3 bucket, or a directory (BlobDir) for a single
	// node and development. Same flag names as the store's, so shared
	// PETREL_S3_* variables reach both.
	S3Endpoint  string
	S3Bucket    string
	S3AccessKey string
	S3SecretKey string
	S3Region    string
	S3TLS       bool
	BlobDir     string

	MaxMessageSize int
	// MaxHops refuses a message with this many Received: fields or more
	// (a mail loop, 554 5.4.6).
	MaxHops       int
	MaxRecipients int
	// MaxCommands bounds commands that are not part of a mail
	// transaction (NOOP, RSET, VRFY, HELP, unknown) per session.
	MaxCommands    int
	IdleTimeout    time.Duration
	SessionTimeout time.Duration

	// Abuse limits.
	MaxConnsPerNetwork    int
	UserMessagesPerHour   int
	AuthFailuresPerWindow int
	AuthFailureWindow     time.Duration

	// DNSServer answers SPF, DKIM and DMARC queries (host:port); empty
	// means the system resolver.
	DNSServer string
	// DMARCReject refuses (550 5.7.1) mail failing a DMARC p=reject.
	DMARCReject bool
	// CheckSenderAuth turns SPF/DKIM/DMARC evaluation on the MX listener
	// on or off.
	CheckSenderAuth bool
}

// RegisterFlags declares every setting with its default.
func (c *Config) RegisterFlags(f *config.FlagSet) {
	c.Log.RegisterFlags(f)
	f.String(&c.MetricsListen, "metrics-listen", "127.0.0.1:9101", "address of the HTTP server for /metrics, /healthz and /readyz (host:port)")
	f.Duration(&c.ShutdownGrace, "shutdown-grace", lifecycle.DefaultGrace, "how long to let sessions finish after SIGTERM; the rest are answered 421 and closed")
	f.String(&c.AddrFile, "addr-file", "", "file to write the bound listen addresses to, as JSON (for port 0)")

	f.String(&c.MXListen, "mx-listen", "127.0.0.1:2525", "address of the inbound MX listener (port 25 in production; empty disables it)")
	f.String(&c.SubmissionListen, "submission-listen", "127.0.0.1:2587", "address of the submission listener, STARTTLS before AUTH (port 587; empty disables it)")
	f.String(&c.SubmissionsListen, "submissions-listen", "127.0.0.1:2465", "address of the submissions listener, implicit TLS (port 465; empty disables it)")
	f.String(&c.Hostname, "hostname", "", "host name in the greeting, Received: and Authentication-Results (default: the system host name)")

	f.String(&c.TLSCertFile, "tls-cert-file", "", "PEM certificate chain for STARTTLS and port 465 (reloaded when it changes)")
	f.String(&c.TLSKeyFile, "tls-key-file", "", "PEM private key of --tls-cert-file")
	f.Bool(&c.DevSelfSigned, "dev-self-signed", false, "development: generate a self-signed certificate at start instead of --tls-cert-file")

	f.String(&c.MXProxyCIDRs, "mx-proxy-cidrs", "", "load balancer networks whose PROXY protocol header is trusted on the MX listener (comma-separated CIDRs)")
	f.String(&c.SubmissionProxyCIDRs, "submission-proxy-cidrs", "", "trusted PROXY protocol senders on the submission listener")
	f.String(&c.SubmissionsProxyCIDRs, "submissions-proxy-cidrs", "", "trusted PROXY protocol senders on the submissions listener")

	f.Bool(&c.AllowPlaintextAuthLoopback, "allow-plaintext-auth-loopback", false, "allow AUTH without TLS from loopback clients (local runs)")

	f.String(&c.StoreAddr, "store-addr", "127.0.0.1:7070", "gRPC address of the store (directory: recipients, AUTH, send-as)")
	f.String(&c.StoreTokenFile, "store-token-file", "", "file holding smtp's service token for the store (required)")
	f.String(&c.StoreCAFile, "store-ca-file", "", "PEM CA of the store's TLS certificate (empty: plaintext gRPC, loopback only)")
	f.Duration(&c.RecipientCacheTTL, "recipient-cache-ttl", 5*time.Second, "reuse the store's answer for an RCPT TO address this long (0: ask every time); new, deleted or over-quota accounts are seen up to this late at RCPT, never at delivery")

	f.StringList(&c.NATSURLs, "nats-url", []string{"nats://127.0.0.1:4222"}, "NATS server URL of the mail queue (repeat or comma-separate for a cluster)")
	f.String(&c.NATSPrefix, "nats-subject-prefix", "", "prefix of the queue stream and subject names (letters, digits, '-', '_'; for shared test servers)")

	f.String(&c.S3Endpoint, "s3-endpoint", "", "S3 endpoint host:port (without scheme)")
	f.String(&c.S3Bucket, "s3-bucket", "", "S3 bucket holding the raw messages")
	f.String(&c.S3AccessKey, "s3-access-key", "", "S3 access key")
	f.String(&c.S3SecretKey, "s3-secret-key", "", "S3 secret key")
	f.String(&c.S3Region, "s3-region", "", "S3 region (empty: discovered)")
	f.Bool(&c.S3TLS, "s3-tls", true, "use HTTPS to reach S3")
	f.String(&c.BlobDir, "blob-dir", "", "store raw messages in this directory instead of S3 (single node, development)")

	f.Int(&c.MaxMessageSize, "max-message-size", 50<<20, "largest message accepted, in bytes (advertised with SIZE)")
	f.Int(&c.MaxHops, "max-hops", ingest.DefaultMaxHops, "refuse a message with this many Received: header fields or more as a mail loop (554 5.4.6; Postfix's hopcount_limit)")
	f.Int(&c.MaxRecipients, "max-recipients", 100, "most RCPT TO accepted per message")
	f.Int(&c.MaxCommands, "max-commands", 100, "most commands outside mail transactions (NOOP, RSET, VRFY, HELP, ...) per session before 421")
	f.Duration(&c.IdleTimeout, "idle-timeout", 5*time.Minute, "how long a client may stay silent (RFC 5321 §4.5.3.2)")
	f.Duration(&c.SessionTimeout, "session-timeout", 30*time.Minute, "longest session")

	f.Int(&c.MaxConnsPerNetwork, "max-conns-per-network", 20, "concurrent connections per client /24 (IPv4) or /64 (IPv6); 0 means no limit")
	f.Int(&c.UserMessagesPerHour, "user-messages-per-hour", 1000, "messages an authenticated account may submit per hour; 0 means no limit")
	f.Int(&c.AuthFailuresPerWindow, "auth-failures", 10, "failed AUTH from one network within --auth-failure-window before AUTH is refused")
	f.Duration(&c.AuthFailureWindow, "auth-failure-window", 10*time.Minute, "window of --auth-failures")

	f.String(&c.DNSServer, "dns-server", "", "DNS server for SPF, DKIM and DMARC (host:port; empty: the system resolver)")
	f.Bool(&c.DMARCReject, "dmarc-reject", false, "refuse (550 5.7.1) inbound mail that fails DMARC with policy reject")
	f.Bool(&c.CheckSenderAuth, "check-sender-auth", true, "evaluate SPF, DKIM and DMARC on the MX listener and add Authentication-Results")
}

// Validate reports every problem in c at once.
func (c Config) Validate() error {
	var v config.Validator
	v.Join(c.Log.Validate())
	v.ListenAddr("metrics-listen", c.MetricsListen)
	v.Positive("shutdown-grace", c.ShutdownGrace)
	for _, l := range []struct{ name, addr, cidrs string }{
		{"mx-listen", c.MXListen, c.MXProxyCIDRs},
		{"submission-listen", c.SubmissionListen, c.SubmissionProxyCIDRs},
		{"submissions-listen", c.SubmissionsListen, c.SubmissionsProxyCIDRs},
	} {
		if l.addr != "" {
			v.ListenAddr(l.name, l.addr)
		}
		if _, err := proxyproto.ParseCIDRs(l.cidrs); err != nil {
			v.Add(l.name[:len(l.name)-len("listen")]+"proxy-cidrs", "%v", err)
		}
	}
	v.Check(c.MXListen != "" || c.SubmissionListen != "" || c.SubmissionsListen != "", "mx-listen", "at least one SMTP listener is required")
	tlsNeeded := c.SubmissionsListen != ""
	switch {
	case c.DevSelfSigned && (c.TLSCertFile != "" || c.TLSKeyFile != ""):
		v.Add("dev-self-signed", "set either --dev-self-signed or --tls-cert-file/--tls-key-file, not both")
	case (c.TLSCertFile == "") != (c.TLSKeyFile == ""):
		v.Add("tls-cert-file", "--tls-cert-file and --tls-key-file go together")
	case tlsNeeded && c.TLSCertFile == "" && !c.DevSelfSigned:
		v.Add("tls-cert-file", "the submissions listener needs a certificate (or --dev-self-signed)")
	}
	v.Check(c.StoreAddr != "", "store-addr", "the store's gRPC address is required")
	v.Check(c.StoreTokenFile != "", "store-token-file", "smtp's service token file is required")
	v.Check(len(c.NATSURLs) > 0, "nats-url", "a NATS URL is required")
	if err := (natsx.Options{Prefix: c.NATSPrefix}).Validate(); err != nil {
		v.Add("nats-subject-prefix", "%v", err)
	}
	switch {
	case c.BlobDir != "" && c.S3Bucket != "":
		v.Add("blob-dir", "set either --blob-dir or --s3-bucket, not both")
	case c.BlobDir == "":
		v.Check(c.S3Bucket != "", "s3-bucket", "a bucket is required (or --blob-dir)")
		v.Check(c.S3Endpoint != "", "s3-endpoint", "an endpoint is required with --s3-bucket")
		v.Check(c.S3AccessKey != "" && c.S3SecretKey != "", "s3-access-key", "--s3-access-key and --s3-secret-key are required with --s3-bucket")
	}
	v.Check(c.MaxMessageSize > 0, "max-message-size", "must be positive")
	v.Check(c.MaxHops > 0, "max-hops", "must be positive")
	v.Check(c.MaxRecipients > 0, "max-recipients", "must be positive")
	v.Check(c.MaxCommands > 0, "max-commands", "must be positive")
	v.Positive("idle-timeout", c.IdleTimeout)
	v.Positive("session-timeout", c.SessionTimeout)
	v.Check(c.RecipientCacheTTL >= 0, "recipient-cache-ttl", "must not be negative")
	v.Check(c.MaxConnsPerNetwork >= 0, "max-conns-per-network", "must not be negative")
	v.Check(c.UserMessagesPerHour >= 0, "user-messages-per-hour", "must not be negative")
	v.Check(c.AuthFailuresPerWindow > 0, "auth-failures", "must be positive")
	v.Positive("auth-failure-window", c.AuthFailureWindow)
	if c.DNSServer != "" {
		v.ListenAddr("dns-server", c.DNSServer)
	}
	return v.Err()
}
