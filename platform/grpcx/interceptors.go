package grpcx

import (
	"context"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// errInternal is what a client sees for a recovered panic: the panic value
// may hold internal detail and is only logged.
var errInternal = status.Error(codes.Internal, "internal error")

func recoverPanic(log *slog.Logger, m *serverMetrics, count *atomic.Int64, method string, err *error) {
	p := recover()
	if p == nil {
		return
	}
	count.Add(1)
	m.panics.WithLabelValues(method).Inc()
	log.Error("panic in gRPC handler", "method", method, "panic", p, "stack", string(debug.Stack()))
	*err = errInternal
}

func (s *Server) unaryRecover(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer recoverPanic(s.opts.Logger, s.metrics, &s.panics, info.FullMethod, &err)
	return handler(ctx, req)
}

func (s *Server) streamRecover(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer recoverPanic(s.opts.Logger, s.metrics, &s.panics, info.FullMethod, &err)
	return handler(srv, ss)
}

// observe logs and counts one finished call.
func (s *Server) observe(ctx context.Context, method string, start time.Time, err error) {
	code := status.Code(err)
	elapsed := time.Since(start)
	s.metrics.handled.WithLabelValues(method, code.String()).Inc()
	s.metrics.latency.WithLabelValues(method).Observe(elapsed.Seconds())
	logCall(ctx, s.opts.Logger, "gRPC call served", method, code, elapsed, err)
}

func logCall(ctx context.Context, log *slog.Logger, msg, method string, code codes.Code, elapsed time.Duration, err error) {
	level := slog.LevelInfo
	switch code {
	case codes.OK:
		level = slog.LevelDebug
	case codes.Internal, codes.Unknown, codes.DataLoss, codes.Unimplemented:
		// These mean a bug or a broken deployment, not a caller's mistake.
		level = slog.LevelError
	}
	if !log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("method", method),
		slog.String("code", code.String()),
		slog.Duration("duration", elapsed),
	}
	if err != nil {
		attrs = append(attrs, slog.String("err", err.Error()))
	}
	log.LogAttrs(ctx, level, msg, attrs...)
}

func (s *Server) unaryObserve(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	s.observe(ctx, info.FullMethod, start, err)
	return resp, err
}

func (s *Server) streamObserve(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	err := handler(srv, ss)
	s.observe(ss.Context(), info.FullMethod, start, err)
	return err
}

// deadlineInterceptor gives a unary call without a deadline the default one.
// Streams are left alone: they include long-lived watches.
func deadlineInterceptor(d time.Duration) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

func clientObserve(log *slog.Logger, m *clientMetrics) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		start := time.Now()
		err := invoker(ctx, method, req, reply, cc, opts...)
		code := status.Code(err)
		elapsed := time.Since(start)
		m.handled.WithLabelValues(method, code.String()).Inc()
		m.latency.WithLabelValues(method).Observe(elapsed.Seconds())
		logCall(ctx, log, "gRPC call made", method, code, elapsed, err)
		return err
	}
}
