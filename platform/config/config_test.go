package config

import (
	"errors"
	"flag"
	"net/netip"
	"strings"
	"testing"
	"time"
)

type testConfig struct {
	Addr    string
	Workers int
	Grace   time.Duration
	Debug   bool
	Hosts   []string
	Trusted []netip.Prefix
}

func declare(c *testConfig) *FlagSet {
	f := New("smtp")
	f.String(&c.Addr, "listen-addr", "127.0.0.1:25", "where to listen")
	f.Int(&c.Workers, "workers", 4, "worker count")
	f.Duration(&c.Grace, "shutdown-grace", 30*time.Second, "drain time")
	f.Bool(&c.Debug, "debug", false, "debug mode")
	f.StringList(&c.Hosts, "hosts", []string{"a", "b"}, "hosts")
	f.Prefixes(&c.Trusted, "trusted-proxies", nil, "load balancers")
	return f
}

func TestDefaults(t *testing.T) {
	var c testConfig
	f := declare(&c)
	if err := f.Parse(nil, nil); err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:25" || c.Workers != 4 || c.Grace != 30*time.Second || c.Debug ||
		strings.Join(c.Hosts, ",") != "a,b" || len(c.Trusted) != 0 {
		t.Fatalf("defaults not applied: %+v", c)
	}
	if f.CheckConfig() {
		t.Fatal("check-config set without flag")
	}
	if got := f.Source("workers"); got != "default" {
		t.Fatalf("source = %q", got)
	}
}

func TestPrecedenceFlagThenServiceEnvThenShared(t *testing.T) {
	var c testConfig
	f := declare(&c)
	env := []string{
		"PETREL_SMTP_WORKERS=8", "PETREL_WORKERS=16", // service-scoped wins over shared
		"PETREL_SHUTDOWN_GRACE=5s",             // shared applies when nothing else does
		"PETREL_SMTP_LISTEN_ADDR=0.0.0.0:2525", // flag below wins over env
		"PETREL_DEBUG=true",
		"PETREL_SMTP_HOSTS=x, y ,,z",
		"PETREL_TRUSTED_PROXIES=10.1.2.3/8, 192.0.2.7 ,2001:db8::/32",
		"PATH=/bin",
	}
	if err := f.Parse([]string{"--listen-addr=[::1]:25", "--check-config"}, env); err != nil {
		t.Fatal(err)
	}
	if c.Workers != 8 {
		t.Errorf("workers = %d, want 8 from PETREL_SMTP_WORKERS", c.Workers)
	}
	if c.Grace != 5*time.Second {
		t.Errorf("grace = %s, want 5s from PETREL_SHUTDOWN_GRACE", c.Grace)
	}
	if c.Addr != "[::1]:25" {
		t.Errorf("addr = %q, want the flag's value", c.Addr)
	}
	if !c.Debug {
		t.Error("debug not set from env")
	}
	if got := strings.Join(c.Hosts, ","); got != "x,y,z" {
		t.Errorf("hosts = %q", got)
	}
	want := []string{"10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"}
	if len(c.Trusted) != len(want) {
		t.Fatalf("trusted = %v", c.Trusted)
	}
	for i, w := range want {
		if c.Trusted[i].String() != w {
			t.Errorf("trusted[%d] = %s, want %s", i, c.Trusted[i], w)
		}
	}
	if !f.CheckConfig() {
		t.Error("--check-config not seen")
	}
	for name, want := range map[string]string{
		"workers": "PETREL_SMTP_WORKERS", "shutdown-grace": "PETREL_SHUTDOWN_GRACE",
		"listen-addr": "--listen-addr", "hosts": "PETREL_SMTP_HOSTS",
	} {
		if got := f.Source(name); got != want {
			t.Errorf("Source(%s) = %q, want %q", name, got, want)
		}
	}
}

func TestRepeatedListFlagReplacesDefault(t *testing.T) {
	var c testConfig
	f := declare(&c)
	if err := f.Parse([]string{"--hosts=p", "--hosts=q,r"}, nil); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Hosts, ","); got != "p,q,r" {
		t.Fatalf("hosts = %q", got)
	}
}

func TestEnvErrorsReportedTogether(t *testing.T) {
	var c testConfig
	f := declare(&c)
	err := f.Parse(nil, []string{
		"PETREL_SMTP_WORKERS=many",
		"PETREL_SHUTDOWN_GRACE=soon",
		"PETREL_SMTP_TRUSTED_PROXIES=10.0.0.0/8,not-an-ip",
		"PETREL_SMTP_WROKERS=3", // typo of a service-scoped variable
		"PETREL_UNRELATED=1",    // shared namespace: not ours to judge
	})
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{
		`PETREL_SMTP_WORKERS: "many" is not an integer`,
		`PETREL_SHUTDOWN_GRACE: "soon" is not a duration`,
		`PETREL_SMTP_TRUSTED_PROXIES: "not-an-ip" is not an IP address or network`,
		`PETREL_SMTP_WROKERS: no such setting for petrel-smtp`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "PETREL_UNRELATED") {
		t.Errorf("shared variable reported: %s", msg)
	}
}

func TestFlagErrors(t *testing.T) {
	var c testConfig
	if err := declare(&c).Parse([]string{"--workers=x"}, nil); err == nil || !strings.Contains(err.Error(), `"x" is not an integer`) {
		t.Fatalf("err = %v", err)
	}
	if err := declare(&c).Parse([]string{"--nope"}, nil); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("err = %v", err)
	}
	if err := declare(&c).Parse([]string{"stray"}, nil); err == nil || !strings.Contains(err.Error(), `"stray"`) {
		t.Fatalf("err = %v", err)
	}
	if err := declare(&c).Parse([]string{"--help"}, nil); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v, want flag.ErrHelp", err)
	}
}

func TestDuplicateFlagPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	var s string
	f := New("x")
	f.String(&s, "a", "", "")
	f.String(&s, "a", "", "")
}

func TestReferenceAndUsage(t *testing.T) {
	var c testConfig
	f := declare(&c)
	var b strings.Builder
	if err := f.WriteReference(&b); err != nil {
		t.Fatal(err)
	}
	ref := b.String()
	for _, want := range []string{
		"## petrel-smtp",
		"| `--shutdown-grace` | `PETREL_SMTP_SHUTDOWN_GRACE`, `PETREL_SHUTDOWN_GRACE` | duration | `30s` | drain time |",
		"| `--check-config` |",
		"| `--trusted-proxies` | `PETREL_SMTP_TRUSTED_PROXIES`, `PETREL_TRUSTED_PROXIES` | prefixes | — |",
	} {
		if !strings.Contains(ref, want) {
			t.Errorf("reference lacks %q:\n%s", want, ref)
		}
	}
	b.Reset()
	f.Usage(&b)
	if !strings.Contains(b.String(), "env PETREL_SMTP_WORKERS or PETREL_WORKERS; default \"4\"") {
		t.Errorf("usage:\n%s", b.String())
	}
}

func TestValidatorJoinsEveryProblem(t *testing.T) {
	var v Validator
	v.ListenAddr("metrics-listen", "127.0.0.1:9100")
	v.ListenAddr("grpc-listen", ":0")
	v.ListenAddr("a", "")
	v.ListenAddr("b", "localhost")
	v.ListenAddr("c", "127.0.0.1:99999")
	v.Positive("shutdown-grace", 0)
	v.OneOf("log-format", "xml", "text", "json")
	v.Check(false, "workers", "must be at least 1")
	v.Join(errors.New("tls: no certificate"))
	err := v.Err()
	if err == nil {
		t.Fatal("no error")
	}
	lines := strings.Split(err.Error(), "\n")
	want := []string{
		"--a: an address is required (host:port, e.g. 127.0.0.1:9100)",
		`--b: "localhost" is not host:port (e.g. 127.0.0.1:9100)`,
		`--c: "127.0.0.1:99999" has no valid port (0-65535)`,
		"--shutdown-grace: must be a positive duration, got 0s",
		`--log-format: "xml" is not one of ["text" "json"]`,
		"--workers: must be at least 1",
		"tls: no certificate",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got:\n%s\nwant:\n%s", err, strings.Join(want, "\n"))
	}
	var ok Validator
	ok.ListenAddr("x", "[::1]:25")
	if ok.Err() != nil {
		t.Fatal(ok.Err())
	}
}
