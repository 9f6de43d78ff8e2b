package auth

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Login results, the values of the "result" label.
const (
	resultSuccess   = "success"
	resultFailure   = "failure"
	resultDisabled  = "disabled"
	resultThrottled = "throttled"
	resultError     = "error"
)

// Metrics are the Prometheus counters of logins. A nil *Metrics counts
// nothing, which keeps tests and tools that do not care free of registries.
type Metrics struct {
	attemptsTotal  *prometheus.CounterVec
	throttledTotal *prometheus.CounterVec
}

// NewMetrics creates the counters and registers them in reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		attemptsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "petrel_store_auth_attempts_total",
			Help: "Login attempts by result: success, failure (wrong name or password), disabled, throttled, error (internal).",
		}, []string{"result"}),
		throttledTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "petrel_store_auth_throttled_total",
			Help: "Login attempts refused because of too many recent failures, by the key that was over its limit (user or ip).",
		}, []string{"scope"}),
	}
	for _, r := range []string{resultSuccess, resultFailure, resultDisabled, resultThrottled, resultError} {
		m.attemptsTotal.WithLabelValues(r)
	}
	for _, s := range []string{"user", "ip"} {
		m.throttledTotal.WithLabelValues(s)
	}
	for _, c := range []prometheus.Collector{m.attemptsTotal, m.throttledTotal} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("auth: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *Metrics) attempt(result string) {
	if m != nil {
		m.attemptsTotal.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) throttled(scope string) {
	if m != nil {
		m.throttledTotal.WithLabelValues(scope).Inc()
	}
}
