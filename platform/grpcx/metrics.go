package grpcx

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type serverMetrics struct {
	handled *prometheus.CounterVec
	latency *prometheus.HistogramVec
	panics  *prometheus.CounterVec
}

type clientMetrics struct {
	handled *prometheus.CounterVec
	latency *prometheus.HistogramVec
}

func newServerMetrics(reg prometheus.Registerer) (*serverMetrics, error) {
	var m serverMetrics
	var errs []error
	m.handled = register(reg, &errs, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "petrel_grpc_server_handled_total",
		Help: "gRPC calls completed by the server, by full method and status code.",
	}, []string{"method", "code"}))
	m.latency = register(reg, &errs, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "petrel_grpc_server_handling_seconds",
		Help:    "Time the server took to complete a gRPC call, by full method.",
		Buckets: prometheus.DefBuckets,
	}, []string{"method"}))
	m.panics = register(reg, &errs, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "petrel_grpc_server_panics_total",
		Help: "Panics recovered in gRPC handlers, by full method. Any is a bug.",
	}, []string{"method"}))
	return &m, errors.Join(errs...)
}

func newClientMetrics(reg prometheus.Registerer) (*clientMetrics, error) {
	var m clientMetrics
	var errs []error
	m.handled = register(reg, &errs, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "petrel_grpc_client_handled_total",
		Help: "Unary gRPC calls completed by clients, by full method and status code.",
	}, []string{"method", "code"}))
	m.latency = register(reg, &errs, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "petrel_grpc_client_handling_seconds",
		Help:    "Time unary gRPC client calls took, by full method.",
		Buckets: prometheus.DefBuckets,
	}, []string{"method"}))
	return &m, errors.Join(errs...)
}

// register adds c to reg, or returns the collector already registered under
// the same name, so that several servers or clients of one service (the
// standalone build has many) share one set of series.
func register[T prometheus.Collector](reg prometheus.Registerer, errs *[]error, c T) T {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
		if existing, ok := are.ExistingCollector.(T); ok {
			return existing
		}
	}
	*errs = append(*errs, fmt.Errorf("grpcx: register metrics: %w", err))
	return c
}
