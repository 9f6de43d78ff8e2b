package grpcx

import (
	"context"
	"net"

	"google.golang.org/grpc/test/bufconn"
)

// InProcessTarget is the Dial target for an InProcessListener: passthrough
// hands the dialer the name unchanged, and the dialer ignores it.
const InProcessTarget = "passthrough:///in-process"

// InProcessListener is a listener whose connections are in-memory buffers,
// for a server and its clients in the same process (the standalone build,
// tests). It uses grpc's bufconn, a full-duplex buffered pipe; net.Pipe is
// unbuffered and would make HTTP/2's writer and reader wait on each other.
type InProcessListener struct {
	*bufconn.Listener
}

// ListenInProcess returns a new in-process listener.
func ListenInProcess() *InProcessListener {
	return &InProcessListener{bufconn.Listen(1 << 20)}
}

// Dial is a ClientOptions.Dialer that connects to the listener.
func (l *InProcessListener) Dial(ctx context.Context, _ string) (net.Conn, error) {
	return l.Listener.DialContext(ctx)
}

// ClientOptions returns opts set to connect to l: its dialer, and no
// transport security, which an in-memory connection does not need.
func (l *InProcessListener) ClientOptions(opts ClientOptions) ClientOptions {
	opts.Dialer = l.Dial
	opts.Insecure = true
	opts.TLSConfig = nil
	return opts
}
