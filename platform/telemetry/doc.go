// Package telemetry gives every service its operational endpoints and
// tracing setup:
//
//   - an HTTP server with /metrics (Prometheus text exposition, from a
//     registry of the service's own rather than the global one, so that the
//     standalone build can run several services in one process and tests can
//     inspect one server's metrics), /healthz and /readyz;
//   - Readiness, the set of checks behind /readyz and behind the gRPC health
//     service (package grpcx), so both report the same state;
//   - an OpenTelemetry TracerProvider and the W3C Trace Context and Baggage
//     propagators, so traces cross gRPC calls.
//
// /healthz is liveness: it answers 200 as long as the process serves HTTP,
// and Kubernetes restarts the pod when it stops. /readyz is readiness: it
// runs every registered check with a timeout and answers 503 naming the
// failing checks, and also while the service drains before shutdown, so that
// load balancers stop sending new work first (Kubernetes probe semantics).
package telemetry
