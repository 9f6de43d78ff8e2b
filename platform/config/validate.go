package config

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
)

// Validator collects configuration problems so that Validate methods report
// all of them at once. Each problem names the flag it is about, since the
// flag name is what the operator knows (its variables derive from it).
//
//	func (c Config) Validate() error {
//		var v config.Validator
//		v.ListenAddr("metrics-listen", c.MetricsListen)
//		v.Check(c.Grace > 0, "shutdown-grace", "must be positive")
//		return v.Err()
//	}
type Validator struct {
	errs []error
}

// Add records a problem with the setting name.
func (v *Validator) Add(name, format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf("--%s: %s", name, fmt.Sprintf(format, args...)))
}

// Check records msg against name unless ok.
func (v *Validator) Check(ok bool, name, msg string) {
	if !ok {
		v.Add(name, "%s", msg)
	}
}

// Join adds the problems reported by a component's own Validate.
func (v *Validator) Join(err error) {
	if err != nil {
		v.errs = append(v.errs, err)
	}
}

// ListenAddr checks that value is a host:port a listener can bind: the host
// may be empty (all interfaces) or an IP address or name, the port 0-65535
// (0 asks the kernel for a free one, which tests use).
func (v *Validator) ListenAddr(name, value string) {
	if value == "" {
		v.Add(name, "an address is required (host:port, e.g. 127.0.0.1:9100)")
		return
	}
	_, port, err := net.SplitHostPort(value)
	if err != nil {
		v.Add(name, "%q is not host:port (e.g. 127.0.0.1:9100)", value)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		v.Add(name, "%q has no valid port (0-65535)", value)
	}
}

// Positive checks that a duration is greater than zero.
func (v *Validator) Positive(name string, d time.Duration) {
	if d <= 0 {
		v.Add(name, "must be a positive duration, got %s", d)
	}
}

// OneOf checks that value is one of allowed.
func (v *Validator) OneOf(name, value string, allowed ...string) {
	for _, a := range allowed {
		if value == a {
			return
		}
	}
	v.Add(name, "%q is not one of %q", value, allowed)
}

// Err is every recorded problem joined, or nil.
func (v *Validator) Err() error { return errors.Join(v.errs...) }
