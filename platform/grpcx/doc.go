// Package grpcx builds Petrel's gRPC servers and clients the same way in
// every service, so that each of them has, without thinking about it:
//
//   - panic recovery: a panicking handler is logged with its stack, counted
//     (petrel_grpc_server_panics_total) and answered with codes.Internal and
//     a generic message, never the panic's text;
//   - one log line per call (method, code, duration), at debug level for OK;
//   - Prometheus metrics per method and code, registered in the service's
//     own registry (petrel_grpc_server_handled_total,
//     petrel_grpc_server_handling_seconds and the client equivalents);
//   - OpenTelemetry tracing through the otelgrpc stats handler, with the W3C
//     trace context carried in metadata;
//   - the standard gRPC health service (grpc.health.v1, see
//     https://github.com/grpc/grpc/blob/master/doc/health-checking.md)
//     answering from the same telemetry.Readiness as HTTP /readyz;
//   - on the client, a default deadline for unary calls that have none, so a
//     stuck dependency cannot hold a request forever, and keepalive pings so
//     dead connections through load balancers are noticed.
//
// Connections use TLS from a *tls.Config (mutual TLS in a cluster) or, when
// asked explicitly, no transport security, which is for loopback and the
// in-process transport only. The in-process transport (ListenInProcess)
// lets the standalone build and tests connect a client to a server in the
// same process without TCP, with the same interceptors on both sides.
package grpcx
