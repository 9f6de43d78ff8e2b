package store

import (
	"time"

	"github.com/petrel-mail/petrel/platform/config"
	"github.com/petrel-mail/petrel/platform/lifecycle"
	"github.com/petrel-mail/petrel/platform/logging"
)

// Name is the service name: it forms the PETREL_STORE_* variables,
// the binary's name and the service attribute of every log record.
const Name = "store"

// Config is petrel-store's configuration.
type Config struct {
	Log logging.Config
	// MetricsListen is where /metrics, /healthz and /readyz are served.
	MetricsListen string
	// GRPCListen is where the gRPC API and the gRPC health service listen.
	GRPCListen string
	// ShutdownGrace bounds the drain after SIGTERM.
	ShutdownGrace time.Duration
	// AddrFile, if set, receives the bound addresses as JSON once the
	// service listens, for tests and launchers that use port 0.
	AddrFile string
}

// RegisterFlags declares every setting with its default.
func (c *Config) RegisterFlags(f *config.FlagSet) {
	c.Log.RegisterFlags(f)
	f.String(&c.MetricsListen, "metrics-listen", "127.0.0.1:9105", "address of the HTTP server for /metrics, /healthz and /readyz (host:port)")
	f.String(&c.GRPCListen, "grpc-listen", "127.0.0.1:7070", "address of the gRPC API and health service (host:port)")
	f.Duration(&c.ShutdownGrace, "shutdown-grace", lifecycle.DefaultGrace, "how long to let work in flight finish after SIGTERM before stopping it")
	f.String(&c.AddrFile, "addr-file", "", "file to write the bound listen addresses to, as JSON (for port 0)")
}

// Validate reports every problem in c at once.
func (c Config) Validate() error {
	var v config.Validator
	v.Join(c.Log.Validate())
	v.ListenAddr("metrics-listen", c.MetricsListen)
	v.ListenAddr("grpc-listen", c.GRPCListen)
	v.Positive("shutdown-grace", c.ShutdownGrace)
	return v.Err()
}
