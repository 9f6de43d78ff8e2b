// Package logging sets up a service's log/slog logger: human-readable text
// for development, JSON lines for production (one object per line, what log
// collectors in Kubernetes parse), and a "service" attribute on every record
// so that logs from several services, or from the standalone build that runs
// all of them in one process, can be told apart.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/petrel-mail/petrel/platform/config"
)

// Formats accepted by --log-format.
const (
	FormatText = "text"
	FormatJSON = "json"
)

// Config is the logging part of a service's configuration.
type Config struct {
	Format string // FormatText or FormatJSON
	Level  string // debug, info, warn, error
}

// RegisterFlags declares --log-format and --log-level with the defaults for
// production (json, info).
func (c *Config) RegisterFlags(f *config.FlagSet) {
	f.String(&c.Format, "log-format", FormatJSON, "log format: text (for people) or json (for collectors)")
	f.String(&c.Level, "log-level", "info", "lowest level logged: debug, info, warn or error")
}

// Validate reports a bad format or level.
func (c Config) Validate() error {
	var v config.Validator
	v.OneOf("log-format", c.Format, FormatText, FormatJSON)
	if _, err := ParseLevel(c.Level); err != nil {
		v.Add("log-level", "%v", err)
	}
	return v.Err()
}

// ParseLevel parses debug, info, warn (or warning) and error, in any case.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%q is not a log level (debug, info, warn, error)", s)
}

// New returns a logger writing to w in the configured format, with a
// "service" attribute on every record.
func New(w io.Writer, service string, c Config) (*slog.Logger, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	level, _ := ParseLevel(c.Level)
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	if c.Format == FormatText {
		h = slog.NewTextHandler(w, opts)
	} else {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(h).With(slog.String("service", service)), nil
}

// Discard is a logger that drops everything, for components given no logger.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
