package server

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the SMTP server's Prometheus metrics, shared by all
// listeners.
type Metrics struct {
	connections *prometheus.CounterVec
	accepted    *prometheus.CounterVec
	rejected    *prometheus.CounterVec
	tempfails   *prometheus.CounterVec
	auth        *prometheus.CounterVec
	panics      prometheus.Counter
	panicCount  atomic.Int64
}

// NewMetrics creates the metrics and registers them with reg (nil: not
// registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "petrel_smtp_connections_total", Help: "Connections accepted, by listener.",
		}, []string{"listener"}),
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "petrel_smtp_messages_accepted_total", Help: "Messages answered 250 (stored and queued), by listener.",
		}, []string{"listener"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "petrel_smtp_rejections_total", Help: "Permanent (5xx) refusals, by listener and reason.",
		}, []string{"listener", "reason"}),
		tempfails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "petrel_smtp_temporary_failures_total", Help: "Temporary (4xx) failures, by listener and cause.",
		}, []string{"listener", "cause"}),
		auth: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "petrel_smtp_auth_total", Help: "AUTH attempts, by listener and result.",
		}, []string{"listener", "result"}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "petrel_smtp_session_panics_total", Help: "Panics recovered in SMTP sessions (bugs).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.connections, m.accepted, m.rejected, m.tempfails, m.auth, m.panics)
	}
	return m
}

func (m *Metrics) reject(k Kind, reason string) { m.rejected.WithLabelValues(k.String(), reason).Inc() }
func (m *Metrics) tempfail(k Kind, cause string) {
	m.tempfails.WithLabelValues(k.String(), cause).Inc()
}

// Panics returns the number of recovered session panics.
func (m *Metrics) Panics() int64 { return m.panicCount.Load() }

func (m *Metrics) panicked() {
	m.panics.Inc()
	m.panicCount.Add(1)
}
