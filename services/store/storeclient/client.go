package storeclient

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/petrel-mail/petrel/platform/grpcx"
)

// Options configure Dial.
type Options struct {
	// TLSConfig secures the connection (mTLS in a cluster). Without it,
	// Insecure must be set, which is for loopback and in-process
	// connections only.
	TLSConfig *tls.Config
	Insecure  bool
	// Token, if set, is sent with every call: the service token of smtp or
	// delivery, or an operator token. A frontend acting for many users
	// leaves it empty and passes each user's session token with WithToken.
	Token string
	// Logger and Registry are handed to grpcx.Dial (client logs and
	// metrics); both may be nil.
	Logger   *slog.Logger
	Registry prometheus.Registerer
	// Dialer replaces the network dialer (grpcx.InProcessListener.Dial).
	Dialer func(ctx context.Context, addr string) (net.Conn, error)
}

// Client holds the store's service clients on one connection. Every error
// they return has gone through FromStatus.
type Client struct {
	Conn      *grpc.ClientConn
	Directory storev1.DirectoryServiceClient
	Mailboxes storev1.MailboxServiceClient
	Messages  storev1.MessageServiceClient
	Admin     storev1.AdminServiceClient
}

// Dial returns a client of the store at target (e.g. "store:7070",
// "127.0.0.1:7070", grpcx.InProcessTarget). Like grpc.NewClient it does not
// connect before the first call.
func Dial(target string, opts Options) (*Client, error) {
	if opts.Token != "" && opts.TLSConfig == nil && opts.Insecure && opts.Dialer == nil && !isLoopback(target) {
		return nil, fmt.Errorf("storeclient: refusing to send a token in plaintext to %s", target)
	}
	extra := []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(unaryErrors),
		grpc.WithChainStreamInterceptor(streamErrors),
	}
	if opts.Token != "" {
		token := opts.Token
		extra = append(extra, grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, o ...grpc.CallOption) error {
			return invoker(withDefaultToken(ctx, token), method, req, reply, cc, o...)
		}), grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, o ...grpc.CallOption) (grpc.ClientStream, error) {
			return streamer(withDefaultToken(ctx, token), desc, cc, method, o...)
		}))
	}
	conn, err := grpcx.Dial(target, grpcx.ClientOptions{
		Logger:    opts.Logger,
		Registry:  opts.Registry,
		TLSConfig: opts.TLSConfig,
		Insecure:  opts.Insecure,
		Dialer:    opts.Dialer,
		Extra:     extra,
	})
	if err != nil {
		return nil, fmt.Errorf("storeclient: dial %s: %w", target, err)
	}
	return &Client{
		Conn:      conn,
		Directory: storev1.NewDirectoryServiceClient(conn),
		Mailboxes: storev1.NewMailboxServiceClient(conn),
		Messages:  storev1.NewMessageServiceClient(conn),
		Admin:     storev1.NewAdminServiceClient(conn),
	}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.Conn.Close() }

// WithToken returns ctx carrying a bearer token for the calls made with it
// (a user's session token); it replaces Options.Token for those calls.
func WithToken(ctx context.Context, token string) context.Context {
	md, _ := metadata.FromOutgoingContext(ctx)
	md = md.Copy()
	md.Set("authorization", "Bearer "+token)
	return metadata.NewOutgoingContext(ctx, md)
}

// ReadTokenFile reads a token written by the store (--data-dir with
// --dev-generate-secrets) or mounted from a Kubernetes Secret.
func ReadTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("storeclient: read token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("storeclient: token file %s is empty", path)
	}
	return tok, nil
}

func withDefaultToken(ctx context.Context, token string) context.Context {
	if md, ok := metadata.FromOutgoingContext(ctx); ok && len(md.Get("authorization")) > 0 {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

func unaryErrors(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return FromStatus(invoker(ctx, method, req, reply, cc, opts...))
}

func streamErrors(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, FromStatus(err)
	}
	return &errStream{ClientStream: s}, nil
}

// errStream maps the errors of a stream's calls; io.EOF passes through
// unchanged because FromStatus leaves errors without a status alone.
type errStream struct{ grpc.ClientStream }

func (s *errStream) SendMsg(m any) error { return FromStatus(s.ClientStream.SendMsg(m)) }
func (s *errStream) RecvMsg(m any) error { return FromStatus(s.ClientStream.RecvMsg(m)) }
func (s *errStream) CloseSend() error    { return FromStatus(s.ClientStream.CloseSend()) }

func isLoopback(target string) bool {
	for _, scheme := range []string{"dns:///", "passthrough:///"} {
		target = strings.TrimPrefix(target, scheme)
	}
	if strings.HasPrefix(target, "unix:") {
		return true
	}
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
