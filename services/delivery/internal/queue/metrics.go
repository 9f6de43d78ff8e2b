package queue

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/petrel-mail/petrel/platform/natsx"
)

// metrics are the consumer's Prometheus metrics.
type metrics struct {
	recipients *prometheus.CounterVec
	retries    prometheus.Counter
	// delay is the time from arrival to a recipient's final outcome.
	delay *prometheus.HistogramVec
}

func newMetrics() *metrics {
	return &metrics{
		recipients: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "petrel_delivery_recipient_attempts_total",
			Help: "Recipient delivery attempts by outcome (delivered, deferred, bounced).",
		}, []string{"outcome"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "petrel_delivery_unavailable_retries_total",
			Help: "Queue entries put back because an attempt could not be made (store unavailable, queue write failed).",
		}),
		delay: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "petrel_delivery_delay_seconds",
			Help: "Time from a message's arrival (the 250 of its SMTP transaction) to a recipient's final outcome, by outcome (delivered, bounced).",
			// From a local delivery (milliseconds) to the queue lifetime
			// (days).
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600, 5 * 24 * 3600},
		}, []string{"outcome"}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.recipients, m.retries, m.delay}
}

// depthCollector reports how many entries the queue holds, by state, read
// from the streams at each scrape: the figure `mailq | tail -1` gives a
// Postfix administrator, and the one to alert on when it grows.
type depthCollector struct {
	js      jetstream.JetStream
	streams map[string]string // state label → stream
	desc    *prometheus.Desc
}

func newDepthCollector(js jetstream.JetStream, o natsx.Options) *depthCollector {
	return &depthCollector{
		js: js,
		streams: map[string]string{
			"active":   o.QueueStream(),
			"deferred": DeferredStream(o),
		},
		desc: prometheus.NewDesc("petrel_delivery_queue_entries",
			"Queue entries by state: active (waiting for or in a delivery attempt) and deferred (waiting for a retry); read from JetStream at each scrape, absent when it cannot be read.",
			[]string{"state"}, nil),
	}
}

func (d *depthCollector) Describe(ch chan<- *prometheus.Desc) { ch <- d.desc }

func (d *depthCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for state, name := range d.streams {
		s, err := d.js.Stream(ctx, name)
		if err != nil {
			continue
		}
		info, err := s.Info(ctx)
		if err != nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(d.desc, prometheus.GaugeValue, float64(info.State.Msgs), state)
	}
}
