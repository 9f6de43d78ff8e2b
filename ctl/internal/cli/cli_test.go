package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// run runs petrelctl in-process with env as its whole environment and
// stdin as its input.
func run(t *testing.T, env map[string]string, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	wd := t.TempDir()
	if env["PWD"] != "" {
		wd = env["PWD"]
	}
	app := &App{
		Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errOut,
		Getenv: func(k string) string { return env[k] },
		Getwd:  func() (string, error) { return wd, nil },
	}
	code = app.Run(context.Background(), args)
	if strings.Contains(errOut.String(), "goroutine ") || strings.Contains(errOut.String(), "panic") {
		t.Fatalf("stack trace on stderr:\n%s", errOut.String())
	}
	return code, out.String(), errOut.String()
}

// TestUsageErrors: mistakes on the command line exit 2 with a message
// naming the mistake, before any server is contacted (none runs here).
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "usage: petrelctl"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"domain", "rename", "x"}, `unknown command "domain rename"`},
		{[]string{"domain"}, "domain add DOMAIN"},
		{[]string{"domain", "add"}, "missing arguments"},
		{[]string{"domain", "add", "a.test", "b.test"}, "too many arguments: b.test"},
		{[]string{"domain", "list", "--no-such-flag"}, "flag provided but not defined: -no-such-flag"},
		{[]string{"domain", "list", "-o", "yaml"}, `-o must be table or json, not "yaml"`},
		{[]string{"account", "add", "bob@example.test"}, "exactly one of --password-stdin"},
		{[]string{"account", "add", "bob@example.test", "--password-stdin", "--password-file", "/x"}, "exactly one of --password-stdin"},
		{[]string{"account", "add", "bob@example.test", "--password-stdin", "--quota", "lots"}, `"lots" is not a size`},
		{[]string{"account", "quota", "bob@example.test", "--messages", "-1"}, "is not a count"},
		{[]string{"alias", "add", "info@example.test"}, "missing arguments"},
		{[]string{"app-password", "delete", "bob@example.test", "abc"}, `app password id "abc" is not a number`},
		{[]string{"dns", "localhost"}, `"localhost" is not a domain name`},
		{[]string{"dns", "example.test", "--dmarc-policy", "drop"}, "DMARC policy must be"},
		{[]string{"queue", "show"}, "missing arguments"},
		{[]string{"dkim", "generate", "example.test", "--algorithm", "dsa"}, "--algorithm must be rsa or ed25519"},
		{[]string{"dkim", "delete", "example.test"}, "missing arguments"},
		{[]string{"queue", "delete", "a", "b"}, "too many arguments"},
		{[]string{"tenant", "add", ""}, "empty argument"},
	} {
		code, _, stderr := run(t, map[string]string{"PETREL_TOKEN": "unused"}, "", tc.args...)
		if code != ExitUsage {
			t.Errorf("%q: exit %d, want %d (stderr %q)", tc.args, code, ExitUsage, stderr)
		}
		if !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: stderr %q lacks %q", tc.args, stderr, tc.want)
		}
	}
}

func TestHelp(t *testing.T) {
	code, out, _ := run(t, nil, "", "help")
	if code != ExitOK || !strings.Contains(out, "account add ADDRESS") || !strings.Contains(out, "exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 already exists") {
		t.Fatalf("help: %d\n%s", code, out)
	}
	code, out, _ = run(t, nil, "", "account", "add", "-h")
	if code != ExitOK || !strings.Contains(out, "--password-stdin") || strings.Contains(out, "--tls-ca") {
		t.Fatalf("account add -h: %d\n%s", code, out)
	}
	code, out, _ = run(t, nil, "", "alias", "--help")
	if code != ExitOK || !strings.Contains(out, "alias delete ADDRESS") || strings.Contains(out, "account add") {
		t.Fatalf("alias --help: %d\n%s", code, out)
	}
}

// TestNoToken: without any token source petrelctl says where it looked.
func TestNoToken(t *testing.T) {
	code, _, stderr := run(t, nil, "", "domain", "list")
	if code != ExitError || !strings.Contains(stderr, "no admin token") || !strings.Contains(stderr, LocalTokenPath) {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	code, _, stderr = run(t, map[string]string{"PETREL_TOKEN_FILE": "/nonexistent/token"}, "", "domain", "list")
	if code != ExitError || !strings.Contains(stderr, "/nonexistent/token") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
}

// TestFindLocalToken: the token of `make run` is found from a
// subdirectory of the repository.
func TestFindLocalToken(t *testing.T) {
	root := t.TempDir()
	tok := filepath.Join(root, LocalTokenPath)
	sub := filepath.Join(root, "services", "smtp")
	for _, d := range []string{filepath.Dir(tok), sub} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := findLocalToken(sub); ok {
		t.Fatal("found a token that is not there")
	}
	if err := os.WriteFile(tok, []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if p, ok := findLocalToken(sub); !ok || p != tok {
		t.Fatalf("findLocalToken = %q, %v", p, ok)
	}
}

// TestServerDown: an unreachable store is an error (exit 1) that says
// where petrelctl looked, not a gRPC dump.
func TestServerDown(t *testing.T) {
	code, _, stderr := run(t, map[string]string{"PETREL_TOKEN": "x"}, "", "domain", "list", "--server", "127.0.0.1:1", "--timeout", "5s")
	if code != ExitError || !strings.Contains(stderr, "127.0.0.1:1") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Errorf("error is more than one line:\n%s", stderr)
	}
}

// TestPlaintextTokenRefused: the token is never sent unencrypted off
// the machine.
func TestPlaintextTokenRefused(t *testing.T) {
	code, _, stderr := run(t, map[string]string{"PETREL_TOKEN": "x"}, "", "domain", "list", "--server", "192.0.2.1:7070")
	if code != ExitError || !strings.Contains(stderr, "refusing to send a token in plaintext") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
}

// TestQueueArgs: queue commands check their arguments, and never send the
// token in plaintext off the machine.
func TestQueueArgs(t *testing.T) {
	env := map[string]string{"PETREL_TOKEN": "x"}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"queue", "retry"}, ExitUsage, "give a queue id or --all"},
		{[]string{"queue", "retry", "q1", "--all"}, ExitUsage, "give a queue id or --all"},
		{[]string{"queue", "list", "--state", "stuck"}, ExitUsage, "--state must be active, deferred or all"},
		{[]string{"queue", "counts", "--queue-server", "192.0.2.1:7071"}, ExitError, "refusing to send a token in plaintext to 192.0.2.1:7071"},
		{[]string{"queue", "counts", "--queue-server", "127.0.0.1:1", "--timeout", "5s"}, ExitError, "the delivery service at 127.0.0.1:1"},
	} {
		code, _, stderr := run(t, env, "", tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want %d, %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "unlimited": 0, "1048576": 1 << 20, "500M": 500 << 20, "2G": 2 << 30, "2GiB": 2 << 30,
		"2gb": 2 << 30, "10k": 10 << 10, "1T": 1 << 40, "512B": 512,
	} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "lots", "-1", "1.5G", "G", "99999999999T"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) accepted", in)
		}
	}
}

func TestFormatBytes(t *testing.T) {
	for in, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 500 << 20: "500.0 MiB", 2 << 30: "2.0 GiB"} {
		if got := formatBytes(in, 10); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestParseInterleaved(t *testing.T) {
	code, _, stderr := run(t, map[string]string{"PETREL_TOKEN": "x"}, "", "alias", "add", "--send-as", "-o", "json", "info@example.test", "--server", "127.0.0.1:1", "--", "-odd@example.test")
	// The arguments parsed (the failure is reaching a server, exit 1,
	// not usage, exit 2).
	if code != ExitError {
		t.Fatalf("exit %d: %s", code, stderr)
	}
}

func TestGlobalsFirst(t *testing.T) {
	code, _, stderr := run(t, map[string]string{"PETREL_TOKEN": "x"}, "", "--server", "127.0.0.1:1", "-o=json", "--tls", "--timeout", "5s", "domain", "list")
	if code != ExitError || !strings.Contains(stderr, "domain list") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	code, _, stderr = run(t, nil, "", "--server", "127.0.0.1:1")
	if code != ExitUsage {
		t.Fatalf("flags without a command: exit %d: %s", code, stderr)
	}
}
