package server

import (
	"context"
	"log/slog"

	"github.com/nats-io/nats.go"
	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/petrel-mail/petrel/platform/natsx"
)

// Events publishes storev1.MailboxEvent messages on core NATS, subject
// natsx.Options.EventSubject(tenant, account), after a change has
// committed. Publishing is fire-and-forget: events are hints (a session
// that misses one catches up with ChangesSince), so a NATS outage is
// logged and counted but never fails the call that made the change.
type Events struct {
	nc     *nats.Conn
	names  natsx.Options
	log    *slog.Logger
	sent   prometheus.Counter
	failed prometheus.Counter
}

// NewEvents returns a publisher on nc. names carries the subject prefix
// (tests); reg receives petrel_store_events_published_total and
// petrel_store_events_failed_total and may be nil.
func NewEvents(nc *nats.Conn, names natsx.Options, log *slog.Logger, reg prometheus.Registerer) (*Events, error) {
	if log == nil {
		log = slog.Default()
	}
	e := &Events{
		nc: nc, names: names, log: log,
		sent:   prometheus.NewCounter(prometheus.CounterOpts{Name: "petrel_store_events_published_total", Help: "Mailbox change events handed to NATS."}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{Name: "petrel_store_events_failed_total", Help: "Mailbox change events that could not be published (NATS down or closed)."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{e.sent, e.failed} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return e, nil
}

// Failed returns how many events could not be published.
func (e *Events) Failed() float64 { return counterValue(e.failed) }

// Publish sends ev for the account of ev. It never blocks on the network:
// while the client reconnects, nats.go buffers the message.
func (e *Events) Publish(ctx context.Context, ev *storev1.MailboxEvent) {
	subject, err := e.names.EventSubject(ev.GetTenantId(), ev.GetAccountId())
	if err == nil {
		var data []byte
		if data, err = proto.Marshal(ev); err == nil {
			err = e.nc.Publish(subject, data)
		}
	}
	if err != nil {
		e.failed.Inc()
		e.log.WarnContext(ctx, "mailbox event not published", "kind", ev.GetKind().String(), "tenant_id", ev.GetTenantId(), "account_id", ev.GetAccountId(), "err", err)
		return
	}
	e.sent.Inc()
}
