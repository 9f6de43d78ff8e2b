// Package cli is petrelctl: a non-interactive command line over the
// store's AdminService (proto/petrel/store/v1/admin.proto) and, once it
// exists, the delivery service's queue admin API.
//
// Every command prints a human-readable table by default and JSON with
// -o json, and exits with a code scripts can test:
//
//	0  success
//	1  error (the server refused, is unreachable, or failed)
//	2  usage: unknown command, wrong arguments or flags
//	3  not found: the named tenant, domain, account, alias... does not exist
//	4  already exists: the object to create is there already
//
// Errors go to stderr as one line "petrelctl: <what>: <why>"; never a Go
// stack. The admin token travels as a bearer token (RFC 6750 §2.1); it
// comes from PETREL_TOKEN, --token-file (PETREL_TOKEN_FILE), or the
// operator.token that `make run` has the store write into .data/store of
// the repository petrelctl is run from.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/petrel-mail/petrel/services/store/storeclient"
)

// Exit codes; see the package documentation.
const (
	ExitOK       = 0
	ExitError    = 1
	ExitUsage    = 2
	ExitNotFound = 3
	ExitExists   = 4
)

// DefaultServer is where `make run` starts the store's gRPC API.
const DefaultServer = "127.0.0.1:7070"

// LocalTokenPath is where, relative to the repository root, `make run`
// has the store write the operator token (scripts/run.sh).
const LocalTokenPath = ".data/store/operator.token"

// App is one run of petrelctl with its environment, so that tests run it
// in-process with their own streams and environment.
type App struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Getenv reads the environment (os.Getenv).
	Getenv func(string) string
	// Getwd returns the directory the local token is searched from
	// (os.Getwd).
	Getwd func() (string, error)
}

// globals are the flags every command accepts.
type globals struct {
	server    string
	tokenFile string
	output    string
	timeout   time.Duration
	tlsCA     string
	tlsCert   string
	tlsKey    string
	tls       bool
}

// usageError is a mistake on the command line: exit code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// Run runs the command in args (without the program name) and returns the
// exit code.
func (a *App) Run(ctx context.Context, args []string) int {
	if a.Getenv == nil {
		a.Getenv = os.Getenv
	}
	if a.Getwd == nil {
		a.Getwd = os.Getwd
	}
	if a.Stdin == nil {
		a.Stdin = strings.NewReader("")
	}
	if len(args) == 0 {
		a.printUsage(a.Stderr, nil)
		return ExitUsage
	}
	if isHelp(args[0]) {
		a.printUsage(a.Stdout, nil)
		return ExitOK
	}
	args = globalsLast(args)
	cmd, rest, group := findCommand(args)
	if cmd == nil {
		if group != "" && len(rest) > 0 && isHelp(rest[0]) {
			a.printUsage(a.Stdout, commandsUnder(group))
			return ExitOK
		}
		if group != "" && len(rest) == 0 {
			a.printUsage(a.Stderr, commandsUnder(group))
			return ExitUsage
		}
		fmt.Fprintf(a.Stderr, "petrelctl: unknown command %q; run 'petrelctl help'\n", strings.Join(args[:min(len(args), 2)], " "))
		return ExitUsage
	}
	return a.runCommand(ctx, cmd, rest)
}

// globalsLast moves flags given before the command
// (`petrelctl --server host:7070 domain list`) after it, where the
// command's parser reads them.
func globalsLast(args []string) []string {
	i := 0
	for i < len(args) && strings.HasPrefix(args[i], "-") && !isHelp(args[i]) && args[i] != "--" {
		name := strings.TrimLeft(args[i], "-")
		if strings.Contains(name, "=") || name == "tls" {
			i++
		} else {
			i += 2
		}
	}
	if i == 0 || i > len(args) {
		return args
	}
	return append(append([]string(nil), args[i:]...), args[:i]...)
}

func isHelp(s string) bool { return s == "-h" || s == "--help" || s == "-help" || s == "help" }

func (a *App) runCommand(ctx context.Context, cmd *command, args []string) int {
	fs := flag.NewFlagSet("petrelctl "+cmd.path, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var g globals
	a.globalFlags(fs, &g)
	run := cmd.setup(fs)
	pos, err := parseInterleaved(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		a.commandHelp(a.Stdout, cmd, fs)
		return ExitOK
	}
	if err == nil {
		err = checkArgs(cmd, pos)
	}
	if err == nil && g.output != "table" && g.output != "json" {
		err = usagef("-o must be table or json, not %q", g.output)
	}
	if err != nil {
		fmt.Fprintf(a.Stderr, "petrelctl %s: %v\nusage: petrelctl %s %s (see 'petrelctl %s -h')\n", cmd.path, err, cmd.path, cmd.args, cmd.path)
		return ExitUsage
	}
	if g.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, g.timeout)
		defer cancel()
	}
	inv := &invocation{app: a, g: g, args: pos, out: &printer{w: a.Stdout, json: g.output == "json"}}
	defer inv.close()
	err = run(ctx, inv)
	if err == nil {
		return ExitOK
	}
	return a.report(cmd, inv, err)
}

// report prints err as one line and returns its exit code.
func (a *App) report(cmd *command, inv *invocation, err error) int {
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(a.Stderr, "petrelctl %s: %v\n", cmd.path, err)
		return ExitUsage
	}
	var ee exitError
	if errors.As(err, &ee) {
		fmt.Fprintf(a.Stderr, "petrelctl %s: %s\n", cmd.path, ee.msg)
		return ee.code
	}
	code := ExitError
	msg := err.Error()
	target, what := inv.target, "the store"
	if target == "" {
		target = inv.g.server
	}
	if inv.targetName != "" {
		what = inv.targetName
	}
	// Errors of the store come as *storeclient.Error; others (the
	// delivery service) as plain gRPC statuses.
	var se *storeclient.Error
	st, isStatus := status.FromError(err)
	if errors.As(err, &se) || isStatus {
		c, m := st.Code(), st.Message()
		if se != nil {
			c, m = se.Code, se.Message
		}
		msg = m
		switch {
		case errors.Is(err, storeclient.ErrNotFound) || c == codes.NotFound:
			code = ExitNotFound
		case errors.Is(err, storeclient.ErrExists) || c == codes.AlreadyExists:
			code = ExitExists
		case c == codes.Unavailable:
			msg = fmt.Sprintf("%s at %s is unavailable (is it running? 'make run' starts it): %s", what, target, m)
		case c == codes.DeadlineExceeded:
			msg = fmt.Sprintf("no answer from %s at %s in time", what, target)
		case c == codes.Unauthenticated:
			msg = fmt.Sprintf("%s refused the admin token from %s: %s", what, inv.tokenSource, m)
		case c == codes.PermissionDenied:
			msg = fmt.Sprintf("the admin token from %s does not allow this: %s", inv.tokenSource, m)
		case c == codes.Unimplemented:
			msg = fmt.Sprintf("not available: %s at %s does not implement this yet", what, target)
		}
		if inv.what != "" {
			msg = inv.what + ": " + msg
		}
	} else if errors.Is(err, context.DeadlineExceeded) {
		msg = fmt.Sprintf("no answer from %s at %s in time", what, target)
	}
	fmt.Fprintf(a.Stderr, "petrelctl %s: %s\n", cmd.path, msg)
	return code
}

// globalFlagNames are the flags globalFlags registers, left out of a
// command's own help.
var globalFlagNames = map[string]bool{"server": true, "token-file": true, "o": true, "output": true, "timeout": true, "tls": true, "tls-ca": true, "tls-cert": true, "tls-key": true}

// groupOrder is the order help lists the command groups in.
var groupOrder = []string{"tenant", "domain", "account", "app-password", "alias", "dkim", "dns", "queue"}

func sortedCommands(cs []*command) []*command {
	rank := func(c *command) int {
		for i, g := range groupOrder {
			if strings.Fields(c.path)[0] == g {
				return i
			}
		}
		return len(groupOrder)
	}
	out := append([]*command(nil), cs...)
	sort.SliceStable(out, func(i, j int) bool { return rank(out[i]) < rank(out[j]) })
	return out
}

func (a *App) globalFlags(fs *flag.FlagSet, g *globals) {
	server := a.Getenv("PETREL_SERVER")
	if server == "" {
		server = DefaultServer
	}
	fs.StringVar(&g.server, "server", server, "store admin gRPC address (env PETREL_SERVER)")
	fs.StringVar(&g.tokenFile, "token-file", a.Getenv("PETREL_TOKEN_FILE"), "file holding the admin token (env PETREL_TOKEN_FILE; PETREL_TOKEN holds the token itself)")
	fs.StringVar(&g.output, "o", "table", "output format: table or json")
	fs.StringVar(&g.output, "output", "table", "output format: table or json")
	fs.DurationVar(&g.timeout, "timeout", 30*time.Second, "give up on the server after this long")
	fs.BoolVar(&g.tls, "tls", false, "use TLS with the system's roots (implied by --tls-ca, --tls-cert)")
	fs.StringVar(&g.tlsCA, "tls-ca", "", "PEM file of the CA that signed the server's certificate")
	fs.StringVar(&g.tlsCert, "tls-cert", "", "PEM client certificate for mTLS (with --tls-key)")
	fs.StringVar(&g.tlsKey, "tls-key", "", "PEM client key for mTLS")
}

// parseInterleaved parses flags anywhere among the positional arguments
// (`account add bob@example.test --password-stdin`), which the flag
// package alone does not; "--" ends the flags.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		rest := fs.Args()
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func checkArgs(cmd *command, pos []string) error {
	switch {
	case len(pos) < cmd.minArgs:
		return usagef("missing arguments")
	case cmd.maxArgs >= 0 && len(pos) > cmd.maxArgs:
		return usagef("too many arguments: %s", strings.Join(pos[cmd.maxArgs:], " "))
	}
	for _, p := range pos {
		if p == "" {
			return usagef("empty argument")
		}
	}
	return nil
}

// findLocalToken looks for LocalTokenPath in dir and its parents, so that
// petrelctl finds the token of `make run` from anywhere in the repository.
func findLocalToken(dir string) (string, bool) {
	for {
		p := filepath.Join(dir, LocalTokenPath)
		if _, err := os.Stat(p); err == nil {
			return p, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

func (a *App) printUsage(w io.Writer, only []*command) {
	fmt.Fprint(w, `petrelctl administers a Petrel installation through its admin gRPC API.

usage: petrelctl <command> [arguments] [flags]

commands:
`)
	list := only
	if list == nil {
		list = commands
	}
	for _, c := range sortedCommands(list) {
		fmt.Fprintf(w, "  %s\n        %s\n", strings.TrimSpace(c.path+" "+c.args), c.summary)
	}
	fmt.Fprint(w, `
flags every command takes:
  --server HOST:PORT   store admin API (default 127.0.0.1:7070, env PETREL_SERVER)
  --token-file FILE    admin token file (env PETREL_TOKEN_FILE; PETREL_TOKEN holds
                       a token itself; default: .data/store/operator.token of the
                       repository, as written by 'make run')
  -o table|json        output format (default table)
  --timeout DURATION   give up after this long (default 30s)
  --tls, --tls-ca FILE, --tls-cert FILE, --tls-key FILE   TLS to a remote server

exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 already exists.
`)
}

func (a *App) commandHelp(w io.Writer, cmd *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: petrelctl %s %s\n\n%s\n", cmd.path, cmd.args, cmd.summary)
	if cmd.help != "" {
		fmt.Fprintf(w, "\n%s\n", cmd.help)
	}
	var names []string
	fs.VisitAll(func(f *flag.Flag) {
		if !globalFlagNames[f.Name] {
			names = append(names, f.Name)
		}
	})
	sort.Strings(names)
	if len(names) == 0 {
		fmt.Fprintf(w, "\nIt takes the flags every command takes: see 'petrelctl help'.\n")
		return
	}
	defer fmt.Fprintf(w, "\nand the flags every command takes: see 'petrelctl help'.\n")
	fmt.Fprintf(w, "\nflags:\n")
	for _, n := range names {
		f := fs.Lookup(n)
		dash := "--"
		if len(n) == 1 {
			dash = "-"
		}
		fmt.Fprintf(w, "  %s%-18s %s\n", dash, n, f.Usage)
	}
}
