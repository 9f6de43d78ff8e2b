package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"text/tabwriter"

	"google.golang.org/grpc"

	"github.com/petrel-mail/petrel/platform/grpcx"
	"github.com/petrel-mail/petrel/services/store/storeclient"
)

// command is one leaf of the command tree ("domain add", "dns").
type command struct {
	path    string // words that select it
	args    string // synopsis of its arguments and flags
	summary string
	help    string
	// minArgs and maxArgs bound the positional arguments; maxArgs -1 is
	// unbounded.
	minArgs, maxArgs int
	// setup registers the command's flags and returns what runs it once
	// they are parsed.
	setup func(fs *flag.FlagSet) runFunc
}

type runFunc func(ctx context.Context, inv *invocation) error

// commands is filled by the files defining them, in the order help lists
// them.
var commands []*command

func register(c ...*command) { commands = append(commands, c...) }

// findCommand returns the command args select and the arguments after its
// words; with no command, group is the first word when it names a group
// ("domain") so that Run can list the group's commands.
func findCommand(args []string) (cmd *command, rest []string, group string) {
	for _, c := range commands {
		words := strings.Fields(c.path)
		if len(args) >= len(words) && strings.Join(args[:len(words)], " ") == c.path {
			return c, args[len(words):], ""
		}
		if words[0] == args[0] {
			group = args[0]
		}
	}
	if group != "" {
		return nil, args[1:], group
	}
	return nil, nil, ""
}

func commandsUnder(group string) []*command {
	var out []*command
	for _, c := range commands {
		if strings.HasPrefix(c.path, group+" ") || c.path == group {
			out = append(out, c)
		}
	}
	return out
}

// invocation is one command being run: its parsed global flags, its
// arguments, where it prints, and the store connection made on first use.
type invocation struct {
	app  *App
	g    globals
	args []string
	out  *printer
	// what names the object of the command in error messages.
	what        string
	tokenSource string
	client      *storeclient.Client
	// target and targetName name the server called, for error messages;
	// empty: the store at --server.
	target, targetName string
	conns              []*grpc.ClientConn
}

func (inv *invocation) close() {
	if inv.client != nil {
		inv.client.Close()
	}
	for _, c := range inv.conns {
		c.Close()
	}
}

// warnf prints a warning to stderr; it never changes the exit code.
func (inv *invocation) warnf(format string, args ...any) {
	fmt.Fprintf(inv.app.Stderr, "petrelctl: warning: "+format+"\n", args...)
}

// token finds the admin token: --token-file (or PETREL_TOKEN_FILE), then
// PETREL_TOKEN, then the local instance's token file.
func (inv *invocation) token() (string, error) {
	if inv.g.tokenFile != "" {
		inv.tokenSource = inv.g.tokenFile
		return storeclient.ReadTokenFile(inv.g.tokenFile)
	}
	if t := strings.TrimSpace(inv.app.Getenv("PETREL_TOKEN")); t != "" {
		inv.tokenSource = "PETREL_TOKEN"
		return t, nil
	}
	if wd, err := inv.app.Getwd(); err == nil {
		if p, ok := findLocalToken(wd); ok {
			inv.tokenSource = p
			return storeclient.ReadTokenFile(p)
		}
	}
	return "", errors.New("no admin token: set PETREL_TOKEN, pass --token-file, or run petrelctl inside the repository where 'make run' wrote " + LocalTokenPath)
}

// store connects to the store's admin API on first use.
func (inv *invocation) store() (*storeclient.Client, error) {
	if inv.client != nil {
		return inv.client, nil
	}
	tok, err := inv.token()
	if err != nil {
		return nil, err
	}
	opts := storeclient.Options{Token: tok}
	if inv.g.tls || inv.g.tlsCA != "" || inv.g.tlsCert != "" {
		if opts.TLSConfig, err = inv.tlsConfig(); err != nil {
			return nil, err
		}
	} else {
		opts.Insecure = true
	}
	cl, err := storeclient.Dial(inv.g.server, opts)
	if err != nil {
		return nil, err
	}
	inv.client = cl
	return cl, nil
}

// dial connects to another admin API than the store's (the delivery
// service's queue administration) with the same token and TLS settings;
// the token goes with every call.
func (inv *invocation) dial(name, target string) (*grpc.ClientConn, error) {
	inv.target, inv.targetName = target, name
	tok, err := inv.token()
	if err != nil {
		return nil, err
	}
	opts := grpcx.ClientOptions{Extra: []grpc.DialOption{grpc.WithPerRPCCredentials(bearer(tok))}}
	if inv.g.tls || inv.g.tlsCA != "" || inv.g.tlsCert != "" {
		if opts.TLSConfig, err = inv.tlsConfig(); err != nil {
			return nil, err
		}
	} else {
		if !isLoopback(target) {
			return nil, fmt.Errorf("refusing to send a token in plaintext to %s; use --tls or --tls-ca", target)
		}
		opts.Insecure = true
	}
	conn, err := grpcx.Dial(target, opts)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", target, err)
	}
	inv.conns = append(inv.conns, conn)
	return conn, nil
}

// bearer sends "authorization: Bearer <token>" (RFC 6750 §2.1) with every
// call. The transport's security is dial's business: it allows plaintext
// only to loopback.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }

func isLoopback(target string) bool {
	host := target
	if h, _, err := net.SplitHostPort(target); err == nil {
		host = h
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (inv *invocation) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if inv.g.tlsCA != "" {
		pem, err := os.ReadFile(inv.g.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("read --tls-ca: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s holds no PEM certificate", inv.g.tlsCA)
		}
	}
	if (inv.g.tlsCert == "") != (inv.g.tlsKey == "") {
		return nil, usagef("--tls-cert and --tls-key go together")
	}
	if inv.g.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(inv.g.tlsCert, inv.g.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// printer writes a command's result as a table or as JSON.
type printer struct {
	w    io.Writer
	json bool
}

// result prints v as indented JSON, or calls human to print it for
// people.
func (p *printer) result(v any, human func(w io.Writer)) error {
	if p.json {
		enc := json.NewEncoder(p.w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	human(p.w)
	return nil
}

// table prints rows under upper-case headers, aligned in columns.
func table(w io.Writer, headers []string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(headers, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}
