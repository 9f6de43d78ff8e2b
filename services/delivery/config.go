package delivery

import (
	"net"
	"net/netip"
	"time"

	"github.com/petrel-mail/petrel/platform/config"
	"github.com/petrel-mail/petrel/platform/lifecycle"
	"github.com/petrel-mail/petrel/platform/logging"
	"github.com/petrel-mail/petrel/platform/natsx"
	"github.com/petrel-mail/petrel/services/delivery/internal/local"
	"github.com/petrel-mail/petrel/services/delivery/internal/retry"
)

// Name is the service name: it forms the PETREL_DELIVERY_* variables,
// the binary's name and the service attribute of every log record.
const Name = "delivery"

// Config is petrel-delivery's configuration.
type Config struct {
	Log logging.Config
	// MetricsListen is where /metrics, /healthz and /readyz are served.
	MetricsListen string
	// GRPCListen is where the queue admin API and the gRPC health service
	// listen.
	GRPCListen string
	// ShutdownGrace bounds the drain after SIGTERM.
	ShutdownGrace time.Duration
	// AddrFile, if set, receives the bound addresses as JSON once the
	// service listens, for tests and launchers that use port 0.
	AddrFile string

	// StoreAddr is the store's gRPC address; StoreTokenFile holds the
	// delivery service token; StoreCAFile, when set, the CA of the store's
	// TLS certificate (without it, plaintext gRPC, loopback only).
	StoreAddr      string
	StoreTokenFile string
	StoreCAFile    string

	// NATSURLs are the servers of the mail queue; NATSPrefix prefixes every
	// stream, consumer and subject name (tests on a shared server).
	NATSURLs   []string
	NATSPrefix string

	// Blob storage holding the raw messages smtp wrote: an S3 bucket, or a
	// directory (BlobDir) for a single node and development.
	S3Endpoint  string
	S3Bucket    string
	S3AccessKey string
	S3SecretKey string
	S3Region    string
	S3TLS       bool
	BlobDir     string

	// Concurrency bounds the queue entries in work at once per replica.
	Concurrency int
	// DeliverBatch and DeliverCalls: local.Options.BatchSize and
	// BatchCalls (store calls carrying several entries).
	DeliverBatch int
	DeliverCalls int
	// Hostname names this MTA (outbound EHLO, DSN Reporting-MTA).
	Hostname string

	// Outbound SMTP. DNSServer is the recursive resolver (host:port) for
	// MX, A and AAAA look-ups; empty: the first nameserver of
	// /etc/resolv.conf. MXPort is the port of MX hosts (25; other values
	// for tests). LocalAddrs are the addresses this MTA receives mail on:
	// an MX that resolves to one of them is a loop (RFC 5321 §5.1).
	DNSServer              string
	MXPort                 int
	LocalAddrs             []string
	MaxConnsPerDestination int
	// InitialConnsPerDestination is the window a destination starts with
	// (slow start, destlimit); 0: MaxConnsPerDestination.
	InitialConnsPerDestination int
	// LocalDestinationLimit: MaxConnsPerDestination bounds this replica
	// alone instead of all replicas together.
	LocalDestinationLimit bool
	// DeadDestinationTime is how long a destination none of whose hosts
	// answered is suspended (its mail deferred without connecting), for
	// every replica; 0: never.
	DeadDestinationTime time.Duration
	// Smarthost (host:port), when set, relays all outbound mail, over TLS
	// (STARTTLS, or implicit TLS with SmarthostImplicitTLS), with AUTH
	// PLAIN when SmarthostUser is set (password read from
	// SmarthostPasswordFile).
	Smarthost             string
	SmarthostUser         string
	SmarthostPasswordFile string
	SmarthostImplicitTLS  bool
	// DKIMKeyCache is how long a domain's signing key (or its absence),
	// fetched from the store, is reused.
	DKIMKeyCache time.Duration

	// Retry schedule of temporary failures (see package retry).
	RetryFloor        time.Duration
	RetryCeiling      time.Duration
	DelayWarning      time.Duration
	MaxQueueLifetime  time.Duration
	OverQuotaBounceAt time.Duration
}

// RegisterFlags declares every setting with its default.
func (c *Config) RegisterFlags(f *config.FlagSet) {
	c.Log.RegisterFlags(f)
	def := retry.Default()
	f.String(&c.MetricsListen, "metrics-listen", "127.0.0.1:9102", "address of the HTTP server for /metrics, /healthz and /readyz (host:port)")
	f.String(&c.GRPCListen, "grpc-listen", "127.0.0.1:7071", "address of the queue admin gRPC API and health service (host:port)")
	f.Duration(&c.ShutdownGrace, "shutdown-grace", lifecycle.DefaultGrace, "how long to let work in flight finish after SIGTERM before stopping it")
	f.String(&c.AddrFile, "addr-file", "", "file to write the bound listen addresses to, as JSON (for port 0)")

	f.String(&c.StoreAddr, "store-addr", "127.0.0.1:7070", "gRPC address of the store (recipients, local delivery, admin token checks)")
	f.String(&c.StoreTokenFile, "store-token-file", "", "file holding delivery's service token for the store (required)")
	f.String(&c.StoreCAFile, "store-ca-file", "", "PEM CA of the store's TLS certificate (empty: plaintext gRPC, loopback only)")

	f.StringList(&c.NATSURLs, "nats-url", []string{"nats://127.0.0.1:4222"}, "NATS server URL of the mail queue (repeat or comma-separate for a cluster)")
	f.String(&c.NATSPrefix, "nats-subject-prefix", "", "prefix of every NATS stream, consumer and subject name (letters, digits, '-', '_'; for shared test servers)")

	f.String(&c.S3Endpoint, "s3-endpoint", "", "S3 endpoint host:port (without scheme)")
	f.String(&c.S3Bucket, "s3-bucket", "", "S3 bucket holding the raw messages")
	f.String(&c.S3AccessKey, "s3-access-key", "", "S3 access key")
	f.String(&c.S3SecretKey, "s3-secret-key", "", "S3 secret key")
	f.String(&c.S3Region, "s3-region", "", "S3 region (empty: discovered)")
	f.Bool(&c.S3TLS, "s3-tls", true, "use HTTPS to reach S3")
	f.String(&c.BlobDir, "blob-dir", "", "read raw messages from this directory instead of S3 (single node, development)")

	f.Int(&c.Concurrency, "concurrency", 32, "queue entries in work at once in this replica")
	f.Int(&c.DeliverBatch, "deliver-batch", 32, "most local deliveries one store call carries (1: one call each)")
	f.Int(&c.DeliverCalls, "deliver-calls", 2, "store delivery calls in flight at once; entries that arrive meanwhile wait and share the next call")
	f.String(&c.Hostname, "hostname", "", "this MTA's host name (EHLO, DSN Reporting-MTA); default: the system host name")

	f.String(&c.DNSServer, "dns-server", "", "recursive DNS resolver for MX/A/AAAA look-ups (host:port); default: the first nameserver in /etc/resolv.conf")
	f.Int(&c.MXPort, "mx-port", 25, "TCP port of remote MX hosts (25; another value only for tests)")
	f.StringList(&c.LocalAddrs, "local-address", nil, "IP address this MTA receives mail on (repeat or comma-separate): an MX that resolves to one is a mail loop")
	f.Int(&c.MaxConnsPerDestination, "max-conns-per-destination", 10, "concurrent outbound SMTP sessions per recipient domain (or to the smarthost), across all delivery replicas (shared through NATS)")
	f.Int(&c.InitialConnsPerDestination, "initial-conns-per-destination", 5, "slow start: sessions a destination starts with, growing by one after as many deliveries as it has sessions and shrinking by one when no host answers, up to --max-conns-per-destination (Postfix's initial_destination_concurrency; 0: start at the maximum; with the shared limit only, not --local-destination-limit)")
	f.Bool(&c.LocalDestinationLimit, "local-destination-limit", false, "apply --max-conns-per-destination to each replica on its own instead of sharing it through NATS")
	f.Duration(&c.DeadDestinationTime, "dead-destination-time", 5*time.Minute, "when no host of a destination answers (connections refused or timed out, no greeting or a refusing one), defer its mail without connecting for this long, in every replica, unless a session to it succeeds first (0: never)")
	f.String(&c.Smarthost, "smarthost", "", "relay all outbound mail through this host:port (TLS required) instead of MX look-ups")
	f.String(&c.SmarthostUser, "smarthost-user", "", "AUTH PLAIN user name at the smarthost (empty: no AUTH)")
	f.String(&c.SmarthostPasswordFile, "smarthost-password-file", "", "file holding the smarthost AUTH password")
	f.Bool(&c.SmarthostImplicitTLS, "smarthost-implicit-tls", false, "connect to the smarthost with TLS from the first byte (port 465) instead of STARTTLS")
	f.Duration(&c.DKIMKeyCache, "dkim-key-cache", 5*time.Minute, "how long a domain's DKIM signing key fetched from the store is reused")

	f.Duration(&c.RetryFloor, "retry-floor", def.Floor, "delay before the first retry of a temporary failure; it doubles with each attempt")
	f.Duration(&c.RetryCeiling, "retry-ceiling", def.Ceiling, "longest delay between two attempts")
	f.Duration(&c.DelayWarning, "delay-warning", def.DelayWarning, "send the sender one delay notice once mail is this old and still queued (0: never)")
	f.Duration(&c.MaxQueueLifetime, "max-queue-lifetime", def.Lifetime, "bounce mail still undelivered this long after it arrived")
	f.Duration(&c.OverQuotaBounceAt, "over-quota-bounce-after", local.DefaultOverQuotaBounceAfter, "bounce mail for a full mailbox once it is this old (until then it is retried)")
}

// Schedule is the retry schedule the flags describe.
func (c Config) Schedule() retry.Schedule {
	s := retry.Default()
	s.Floor, s.Ceiling, s.DelayWarning, s.Lifetime = c.RetryFloor, c.RetryCeiling, c.DelayWarning, c.MaxQueueLifetime
	return s
}

// Validate reports every problem in c at once.
func (c Config) Validate() error {
	var v config.Validator
	v.Join(c.Log.Validate())
	v.ListenAddr("metrics-listen", c.MetricsListen)
	v.ListenAddr("grpc-listen", c.GRPCListen)
	v.Positive("shutdown-grace", c.ShutdownGrace)
	v.Check(c.StoreAddr != "", "store-addr", "the store's address is required")
	v.Check(c.StoreTokenFile != "", "store-token-file", "the delivery service token file is required")
	v.Check(len(c.NATSURLs) > 0, "nats-url", "a NATS URL is required")
	switch {
	case c.BlobDir != "" && c.S3Bucket != "":
		v.Add("blob-dir", "set either --blob-dir or --s3-bucket, not both")
	case c.BlobDir == "":
		v.Check(c.S3Bucket != "", "s3-bucket", "a bucket is required (or --blob-dir)")
		v.Check(c.S3Endpoint != "", "s3-endpoint", "an endpoint is required with --s3-bucket")
		v.Check(c.S3AccessKey != "" && c.S3SecretKey != "", "s3-access-key", "--s3-access-key and --s3-secret-key are required with --s3-bucket")
	}
	v.Check(c.Concurrency > 0, "concurrency", "must be positive")
	v.Check(c.DeliverBatch > 0 && c.DeliverBatch <= 64, "deliver-batch", "must be 1 to 64 (the store's limit)")
	v.Check(c.DeliverCalls > 0, "deliver-calls", "must be positive")
	v.Check(c.MXPort > 0 && c.MXPort < 65536, "mx-port", "must be a TCP port")
	v.Check(c.MaxConnsPerDestination > 0, "max-conns-per-destination", "must be positive")
	v.Check(c.InitialConnsPerDestination >= 0, "initial-conns-per-destination", "must be 0 (start at the maximum) or positive")
	v.Positive("dkim-key-cache", c.DKIMKeyCache)
	if c.DeadDestinationTime < 0 || c.DeadDestinationTime > natsx.DeadDestinationsMaxTTL {
		v.Add("dead-destination-time", "must be 0 (never) to %s", natsx.DeadDestinationsMaxTTL)
	}
	if c.DNSServer != "" {
		if _, _, err := net.SplitHostPort(c.DNSServer); err != nil {
			v.Add("dns-server", "must be host:port")
		}
	}
	for _, a := range c.LocalAddrs {
		if _, err := netip.ParseAddr(a); err != nil {
			v.Add("local-address", "%q is not an IP address", a)
		}
	}
	if c.Smarthost != "" {
		if _, p, err := net.SplitHostPort(c.Smarthost); err != nil || p == "" {
			v.Add("smarthost", "must be host:port")
		}
		v.Check(c.SmarthostUser == "" || c.SmarthostPasswordFile != "", "smarthost-password-file", "required with --smarthost-user")
	} else {
		v.Check(c.SmarthostUser == "" && c.SmarthostPasswordFile == "", "smarthost", "--smarthost-user and --smarthost-password-file need --smarthost")
	}
	v.Positive("retry-floor", c.RetryFloor)
	v.Positive("max-queue-lifetime", c.MaxQueueLifetime)
	v.Positive("over-quota-bounce-after", c.OverQuotaBounceAt)
	if c.RetryFloor > 0 && c.MaxQueueLifetime > 0 {
		if err := c.Schedule().Validate(); err != nil {
			v.Add("retry-ceiling", "%v", err)
		}
	}
	return v.Err()
}
