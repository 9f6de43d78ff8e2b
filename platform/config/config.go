// Package config reads a service's configuration from command-line flags and
// PETREL_* environment variables, and gives every component the same way to
// validate what it read and report all problems at once.
//
// # Where a value comes from
//
// Every setting is declared once, as a flag. For a flag --foo-bar of service
// "smtp" the value is taken from the first of:
//
//  1. the command line: --foo-bar=value;
//  2. PETREL_SMTP_FOO_BAR, the service's own variable;
//  3. PETREL_FOO_BAR, the variable shared by every service (so one ConfigMap
//     entry such as PETREL_LOG_FORMAT=json reaches all of them);
//  4. the default declared with the flag.
//
// Flags win over the environment so that an operator can override a
// deployment's environment for one run. A variable PETREL_SMTP_* that names
// no flag of the service is an error: a typo must not silently fall back to
// the default. Shared PETREL_* variables are not checked that way, because
// they are read by several services that each know only their own flags.
//
// # Conventions
//
// Every service registers --check-config (see FlagSet.CheckConfig): it parses
// and validates the configuration, reports every problem, and exits without
// starting anything, like nats-server -t. Components validate with a
// Validator, which collects problems and returns them joined (errors.Join), so
// the operator fixes a broken deployment in one round trip.
//
// WriteReference prints the documented list of flags and variables that the
// configuration reference in docs/ is made of.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"
)

// FlagSet declares a service's settings. It wraps a flag.FlagSet and
// remembers each setting's documentation for WriteReference.
type FlagSet struct {
	service string
	fs      *flag.FlagSet
	entries []*entry
	byName  map[string]*entry
	check   bool
	sources map[string]string
}

type entry struct {
	name  string
	usage string
	def   string
	kind  string
}

// New returns the flag set of the service named service (for example
// "smtp"); the name forms the service-scoped variables PETREL_<SERVICE>_*.
// The flag set already holds --check-config.
func New(service string) *FlagSet {
	f := &FlagSet{
		service: service,
		fs:      flag.NewFlagSet("petrel-"+service, flag.ContinueOnError),
		byName:  map[string]*entry{},
		sources: map[string]string{},
	}
	// Errors are returned by Parse and printed by main; flag's own printing
	// would duplicate them.
	f.fs.SetOutput(io.Discard)
	f.Bool(&f.check, "check-config", false, "validate the configuration, report every problem and exit without starting")
	return f
}

// Service is the service name given to New.
func (f *FlagSet) Service() string { return f.service }

// CheckConfig reports whether --check-config was given.
func (f *FlagSet) CheckConfig() bool { return f.check }

// ServiceEnv is the service-scoped variable of flag name, e.g.
// PETREL_SMTP_LOG_LEVEL for service "smtp" and flag "log-level".
func (f *FlagSet) ServiceEnv(name string) string {
	return "PETREL_" + envWord(f.service) + "_" + envWord(name)
}

// SharedEnv is the variable of flag name shared by all services, e.g.
// PETREL_LOG_LEVEL.
func SharedEnv(name string) string { return "PETREL_" + envWord(name) }

func envWord(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		default:
			return '_'
		}
	}, s)
}

func (f *FlagSet) add(v flag.Value, name, kind, usage string) {
	if _, dup := f.byName[name]; dup {
		panic("config: flag --" + name + " declared twice")
	}
	e := &entry{name: name, usage: usage, def: v.String(), kind: kind}
	f.entries = append(f.entries, e)
	f.byName[name] = e
	f.fs.Var(v, name, usage)
}

// String declares a string setting stored in *p.
func (f *FlagSet) String(p *string, name, def, usage string) {
	*p = def
	f.add((*stringValue)(p), name, "string", usage)
}

// Int declares an integer setting stored in *p.
func (f *FlagSet) Int(p *int, name string, def int, usage string) {
	*p = def
	f.add((*intValue)(p), name, "int", usage)
}

// Duration declares a duration setting (Go syntax: 30s, 5m, 1h30m).
func (f *FlagSet) Duration(p *time.Duration, name string, def time.Duration, usage string) {
	*p = def
	f.add((*durationValue)(p), name, "duration", usage)
}

// Bool declares a boolean setting; --name alone means true.
func (f *FlagSet) Bool(p *bool, name string, def bool, usage string) {
	*p = def
	f.add((*boolValue)(p), name, "bool", usage)
}

// StringList declares a comma-separated list. On the command line the flag
// may also be repeated; the values given replace the default.
func (f *FlagSet) StringList(p *[]string, name string, def []string, usage string) {
	*p = append([]string(nil), def...)
	f.add(&listValue{p: p}, name, "list", usage)
}

// Prefixes declares a comma-separated list of IP networks in CIDR notation
// (10.0.0.0/8, 2001:db8::/32); a bare address means that one host.
func (f *FlagSet) Prefixes(p *[]netip.Prefix, name string, def []netip.Prefix, usage string) {
	*p = append([]netip.Prefix(nil), def...)
	f.add(&prefixesValue{p: p}, name, "prefixes", usage)
}

// Parse reads args (without the program name) and then, for every flag not
// given on the command line, the environment, given as os.Environ() returns
// it. It reports every bad value at once; a --help or -h yields
// flag.ErrHelp.
func (f *FlagSet) Parse(args []string, environ []string) error {
	if err := f.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return flag.ErrHelp
		}
		return err
	}
	if f.fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: settings are flags (--name=value)", f.fs.Arg(0))
	}
	env := map[string]string{}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if ok {
			env[k] = v
		}
	}
	onCommandLine := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) {
		onCommandLine[fl.Name] = true
		f.sources[fl.Name] = "--" + fl.Name
	})

	var errs []error
	known := map[string]bool{}
	for _, e := range f.entries {
		svc, shared := f.ServiceEnv(e.name), SharedEnv(e.name)
		known[svc] = true
		if onCommandLine[e.name] {
			continue
		}
		for _, key := range []string{svc, shared} {
			v, ok := env[key]
			if !ok {
				continue
			}
			if err := f.fs.Set(e.name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", key, err))
			}
			f.sources[e.name] = key
			break
		}
	}
	prefix := "PETREL_" + envWord(f.service) + "_"
	var unknown []string
	for k := range env {
		if strings.HasPrefix(k, prefix) && !known[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		errs = append(errs, fmt.Errorf("%s: no such setting for petrel-%s (see --help)", k, f.service))
	}
	return errors.Join(errs...)
}

// Source tells where a setting's value came from after Parse: "--name", the
// variable's name, or "default".
func (f *FlagSet) Source(name string) string {
	if s, ok := f.sources[name]; ok {
		return s
	}
	return "default"
}

// Usage writes a short help text: how to set values and every flag with its
// variables and default.
func (f *FlagSet) Usage(w io.Writer) {
	fmt.Fprintf(w, "Usage of petrel-%s: settings are flags, or environment variables\n", f.service)
	fmt.Fprintf(w, "(flags win; PETREL_%s_<NAME> before the shared PETREL_<NAME>).\n\n", envWord(f.service))
	for _, e := range f.entries {
		fmt.Fprintf(w, "  --%s %s\n", e.name, e.kind)
		fmt.Fprintf(w, "        %s\n", e.usage)
		fmt.Fprintf(w, "        env %s or %s", f.ServiceEnv(e.name), SharedEnv(e.name))
		if e.def != "" {
			fmt.Fprintf(w, "; default %q", e.def)
		}
		fmt.Fprintln(w)
	}
}

// WriteReference writes the settings as a Markdown table, the form used by
// the configuration reference in docs/.
func (f *FlagSet) WriteReference(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "## petrel-%s\n\n", f.service)
	b.WriteString("| flag | environment | type | default | description |\n")
	b.WriteString("|---|---|---|---|---|\n")
	for _, e := range f.entries {
		def := "—"
		if e.def != "" {
			def = "`" + e.def + "`"
		}
		fmt.Fprintf(&b, "| `--%s` | `%s`, `%s` | %s | %s | %s |\n",
			e.name, f.ServiceEnv(e.name), SharedEnv(e.name), e.kind, def,
			strings.ReplaceAll(e.usage, "|", `\|`))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

type stringValue string

func (v *stringValue) Set(s string) error { *v = stringValue(s); return nil }
func (v *stringValue) String() string     { return string(*v) }

type intValue int

func (v *intValue) Set(s string) error {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%q is not an integer", s)
	}
	*v = intValue(n)
	return nil
}
func (v *intValue) String() string { return strconv.Itoa(int(*v)) }

type durationValue time.Duration

func (v *durationValue) Set(s string) error {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%q is not a duration (examples: 30s, 5m, 1h30m)", s)
	}
	*v = durationValue(d)
	return nil
}
func (v *durationValue) String() string { return time.Duration(*v).String() }

type boolValue bool

func (v *boolValue) Set(s string) error {
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%q is not a boolean (true or false)", s)
	}
	*v = boolValue(b)
	return nil
}
func (v *boolValue) String() string   { return strconv.FormatBool(bool(*v)) }
func (v *boolValue) IsBoolFlag() bool { return true }

// listValue replaces the default on its first Set and appends on later ones,
// so both --x=a,b and --x=a --x=b work.
type listValue struct {
	p   *[]string
	set bool
}

func (v *listValue) Set(s string) error {
	if !v.set {
		*v.p = nil
		v.set = true
	}
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			*v.p = append(*v.p, item)
		}
	}
	return nil
}

func (v *listValue) String() string {
	if v.p == nil {
		return ""
	}
	return strings.Join(*v.p, ",")
}

type prefixesValue struct {
	p   *[]netip.Prefix
	set bool
}

func (v *prefixesValue) Set(s string) error {
	var parsed []netip.Prefix
	var errs []error
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		p, err := ParsePrefix(item)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		parsed = append(parsed, p)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if !v.set {
		*v.p = nil
		v.set = true
	}
	*v.p = append(*v.p, parsed...)
	return nil
}

func (v *prefixesValue) String() string {
	if v.p == nil {
		return ""
	}
	parts := make([]string, len(*v.p))
	for i, p := range *v.p {
		parts[i] = p.String()
	}
	return strings.Join(parts, ",")
}

// ParsePrefix parses a CIDR network or a bare address (a one-host network).
// The network is masked, so 10.1.2.3/8 means 10.0.0.0/8.
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP network (example: 10.0.0.0/8)", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or network (example: 10.0.0.0/8)", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}
