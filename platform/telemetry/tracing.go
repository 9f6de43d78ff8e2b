package telemetry

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// TracingOptions configure NewTracerProvider.
type TracingOptions struct {
	// Service is the service.name resource attribute, e.g. "petrel-smtp".
	Service string
	// Exporter receives finished spans. Nil means nothing is exported.
	Exporter sdktrace.SpanExporter
	// SampleRatio is the fraction of new traces (those without a sampled
	// parent) that are recorded when an Exporter is set; 0 means 1.
	SampleRatio float64
}

// Propagator is the W3C Trace Context plus Baggage propagator that every
// Petrel service uses, on gRPC metadata and NATS headers alike.
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// NewTracerProvider returns an SDK tracer provider.
//
// Without an exporter it samples nothing of its own (ParentBased with
// NeverSample) and has no span processor, so it costs almost nothing, yet it
// still continues a trace that arrives from a caller: spans get the caller's
// trace id and a sampled caller's flag, so the context propagates to the
// next hop. A no-op provider would drop the incoming context instead.
//
// The caller must call Shutdown on the provider to flush spans at exit.
func NewTracerProvider(opts TracingOptions) (*sdktrace.TracerProvider, error) {
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		attribute.String("service.name", opts.Service),
	))
	if err != nil {
		return nil, fmt.Errorf("telemetry: tracing resource: %w", err)
	}
	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if opts.Exporter == nil {
		tpOpts = append(tpOpts, sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())))
	} else {
		ratio := opts.SampleRatio
		if ratio <= 0 {
			ratio = 1
		}
		tpOpts = append(tpOpts,
			sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
			sdktrace.WithBatcher(opts.Exporter),
		)
	}
	return sdktrace.NewTracerProvider(tpOpts...), nil
}

// SetupTracing creates the tracer provider and installs it and Propagator
// as the process-wide OpenTelemetry defaults, which instrumentation (gRPC,
// NATS) uses when not given its own. The returned function flushes and
// stops the provider.
func SetupTracing(opts TracingOptions) (shutdown func(context.Context) error, err error) {
	tp, err := NewTracerProvider(opts)
	if err != nil {
		return nil, err
	}
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(Propagator())
	return tp.Shutdown, nil
}
