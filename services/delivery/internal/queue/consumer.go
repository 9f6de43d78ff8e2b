package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	deliveryv1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/delivery/v1"
	queuev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/queue/v1"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/petrel-mail/petrel/platform/blob"
	"github.com/petrel-mail/petrel/platform/natsx"
	"github.com/petrel-mail/petrel/services/delivery/internal/retry"
)

// Outcome is what one attempt did for one recipient.
type Outcome int

// Outcomes of an attempt.
const (
	// Delivered: stored in the mailbox, or accepted by the remote MX.
	Delivered Outcome = iota + 1
	// Temporary: try again later (4xx, over quota, destination down).
	Temporary
	// Permanent: never deliverable (5xx, no such user); bounce.
	Permanent
)

func (o Outcome) String() string {
	switch o {
	case Delivered:
		return "delivered"
	case Temporary:
		return "deferred"
	case Permanent:
		return "bounced"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Result is one recipient's outcome in an attempt.
type Result struct {
	// Index of the recipient in QueueEntry.Recipients.
	Index   int
	Outcome Outcome
	// Reply as SMTP would put it, with an enhanced status code (RFC 3463):
	// "250 2.0.0 delivered", "452 4.2.2 mailbox full".
	Reply string
	// RemoteMTA is the host that gave Reply, "" when the reply is ours
	// (the DSN's Remote-MTA).
	RemoteMTA string
}

// Attempt is the result of one delivery attempt.
type Attempt struct {
	// One per recipient the attempt was asked for.
	Results []Result
	// A store Deliver call was made that may have made the store reference
	// the message object (it delivered, or its outcome is unknown).
	StoreMayReference bool
}

// Attempter makes one delivery attempt for some recipients of an entry.
// It returns an error only when no outcome at all must be recorded and
// repeating the whole attempt later is safe (the store is unavailable): the
// entry is then retried after a short backoff without counting an attempt.
type Attempter interface {
	Attempt(ctx context.Context, entry *queuev1.QueueEntry, pending []int) (Attempt, error)
}

// Bouncer sends DSNs (RFC 3464) to an entry's envelope sender. The
// consumer never calls it for the null sender (SMTP-LESSONS 14); honouring
// NOTIFY and RET is the Bouncer's part.
type Bouncer interface {
	// Bounce reports the recipients at indexes failed as failed; the DSN
	// must be durably queued when it returns nil.
	Bounce(ctx context.Context, item *deliveryv1.QueueItem, failed []int) error
	// Delay warns that the recipients at delayed are still being tried,
	// until the given time.
	Delay(ctx context.Context, item *deliveryv1.QueueItem, delayed []int, until time.Time) error
}

// Holder holds an entry's message object in the store
// (local.Holds: MessageService.HoldObject and ReleaseObject).
type Holder interface {
	Hold(ctx context.Context, blobKey, queueID string) error
	Release(ctx context.Context, blobKey, queueID string) error
}

// Options configure a Consumer. JS, NATS and Attempter are required.
type Options struct {
	JS   jetstream.JetStream
	NATS natsx.Options
	// Attempter delivers.
	Attempter Attempter
	// Bouncer sends DSNs; nil logs bounces and delay warnings without
	// sending any.
	Bouncer Bouncer
	// Blobs, when set, is used to delete the message object of a finished
	// entry that the store cannot reference.
	Blobs blob.Store
	// Holds, when set, keeps the object of an entry that waits for a retry
	// from the store's collector once the store may reference it.
	Holds Holder
	// Schedule of retries after temporary failures; zero: retry.Default().
	Schedule retry.Schedule
	// Concurrency bounds the entries in work at once (default 16).
	Concurrency int
	// InProgressEvery is how often a worker tells JetStream it is still
	// working on a message (default a third of the ack wait).
	InProgressEvery time.Duration
	// UnavailableBackoff and UnavailableBackoffMax bound the wait before an
	// entry whose attempt could not be made is tried again: it doubles with
	// every redelivery (defaults 1s and 1m).
	UnavailableBackoff    time.Duration
	UnavailableBackoffMax time.Duration
	// Now is the clock (default time.Now); Rand the jitter source.
	Now  func() time.Time
	Rand retry.Rand
	// Logger and Registry may be nil.
	Logger   *slog.Logger
	Registry prometheus.Registerer
}

// Consumer runs the delivery workers of one replica.
type Consumer struct {
	o       Options
	log     *slog.Logger
	sem     chan struct{}
	metrics *metrics
}

// New checks the options and returns a Consumer; Run starts it.
func New(o Options) (*Consumer, error) {
	var errs []error
	if o.JS == nil {
		errs = append(errs, errors.New("queue: JS is required"))
	}
	if o.Attempter == nil {
		errs = append(errs, errors.New("queue: Attempter is required"))
	}
	if o.Schedule == (retry.Schedule{}) {
		o.Schedule = retry.Default()
	}
	if err := o.Schedule.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("queue: %w", err))
	}
	if err := o.NATS.Validate(); err != nil {
		errs = append(errs, err)
	}
	if o.Concurrency < 0 || o.InProgressEvery < 0 || o.UnavailableBackoff < 0 || o.UnavailableBackoffMax < 0 {
		errs = append(errs, errors.New("queue: negative Concurrency or duration"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if o.Concurrency == 0 {
		o.Concurrency = 16
	}
	if o.InProgressEvery == 0 {
		ackWait := o.NATS.DeliveryAckWait
		if ackWait == 0 {
			ackWait = natsx.DefaultDeliveryAckWait
		}
		o.InProgressEvery = ackWait / 3
	}
	if o.UnavailableBackoff == 0 {
		o.UnavailableBackoff = time.Second
	}
	if o.UnavailableBackoffMax == 0 {
		o.UnavailableBackoffMax = time.Minute
	}
	o.UnavailableBackoffMax = max(o.UnavailableBackoffMax, o.UnavailableBackoff)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = &lockedRand{r: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	m := newMetrics()
	if o.Registry != nil {
		for _, c := range append(m.collectors(), newDepthCollector(o.JS, o.NATS)) {
			if err := o.Registry.Register(c); err != nil {
				return nil, fmt.Errorf("queue: register metrics: %w", err)
			}
		}
	}
	return &Consumer{o: o, log: o.Logger.With("component", "queue"), sem: make(chan struct{}, o.Concurrency), metrics: m}, nil
}

type lockedRand struct {
	mu sync.Mutex
	r  *rand.Rand
}

func (l *lockedRand) Float64() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Float64()
}

// Run consumes both streams until ctx is done, then waits for the entries
// in work: each either finishes its acknowledgement or is left
// unacknowledged for redelivery. The streams and consumers must exist
// (natsx.EnsureStreams, EnsureDeferred).
func (c *Consumer) Run(ctx context.Context) error {
	return c.RunDrain(ctx, ctx.Done())
}

// RunDrain is Run with a graceful stop: when stop is closed the consumer
// takes no more messages and returns once the entries in work are done;
// ending ctx also abandons those (unacknowledged, so they come back).
func (c *Consumer) RunDrain(ctx context.Context, stop <-chan struct{}) error {
	active, err := natsx.OpenDeliveryConsumer(ctx, c.o.JS, c.o.NATS)
	if err != nil {
		return err
	}
	deferred, err := c.o.JS.Consumer(ctx, DeferredStream(c.o.NATS), DeferredConsumer(c.o.NATS))
	if err != nil {
		return fmt.Errorf("queue: consumer %s: %w", DeferredConsumer(c.o.NATS), err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, l := range []struct {
		cons jetstream.Consumer
		kind kind
	}{{active, kindActive}, {deferred, kindDeferred}} {
		wg.Go(func() { errs <- c.loop(ctx, stop, l.cons, l.kind) })
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

type kind int

const (
	kindActive kind = iota
	kindDeferred
)

func (c *Consumer) loop(ctx context.Context, stopCh <-chan struct{}, cons jetstream.Consumer, k kind) error {
	// Buffer a little more than we work on so that a worker that finishes
	// finds the next message ready; buffered messages are not yet in work,
	// and their ack wait (minutes) leaves ample time.
	it, err := cons.Messages(jetstream.PullMaxMessages(2 * c.o.Concurrency))
	if err != nil {
		return fmt.Errorf("queue: consume: %w", err)
	}
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-stopCh:
		case <-ctx.Done():
		case <-stopped:
		}
		it.Stop()
	}()
	var workers sync.WaitGroup
	defer workers.Wait()
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil || isClosed(stopCh) {
				return nil
			}
			// The iterator recovers from missed heartbeats and reconnects
			// by itself; other errors are reported and the loop goes on.
			c.log.Warn("queue consumer", "error", err)
			continue
		}
		select {
		case c.sem <- struct{}{}:
		case <-stopCh:
			// Not started: let it come back at once to another worker.
			_ = msg.Nak()
			return nil
		}
		workers.Go(func() {
			defer func() { <-c.sem }()
			c.handle(ctx, msg, k)
		})
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func (c *Consumer) handle(ctx context.Context, msg jetstream.Msg, k kind) {
	item, err := decode(msg.Data(), k)
	if err != nil {
		// It can never be processed: keep the stream moving. smtp writes
		// entries with the same proto, so this is a bug, not mail.
		c.log.Error("undecodable queue message dropped", "subject", msg.Subject(), "error", err)
		_ = msg.Term()
		return
	}
	log := c.log.With("queue_id", item.GetEntry().GetQueueId())
	now := c.o.Now()
	if next := item.GetNextAttemptAt(); next != nil && next.AsTime().After(now) {
		// Not due: JetStream redelivers it when it is.
		if err := msg.NakWithDelay(next.AsTime().Sub(now)); err != nil {
			log.Warn("delay a deferred entry", "error", err)
		}
		return
	}
	stop := c.keepAlive(msg, log)
	defer stop()
	c.process(ctx, msg, item, log)
}

func decode(data []byte, k kind) (*deliveryv1.QueueItem, error) {
	if k == kindDeferred {
		item := &deliveryv1.QueueItem{}
		if err := proto.Unmarshal(data, item); err != nil {
			return nil, fmt.Errorf("decode queue item: %w", err)
		}
		if item.GetEntry() == nil || len(item.GetRecipients()) != len(item.GetEntry().GetRecipients()) {
			return nil, errors.New("decode queue item: recipients do not match the entry")
		}
		return item, nil
	}
	entry := &queuev1.QueueEntry{}
	if err := proto.Unmarshal(data, entry); err != nil {
		return nil, fmt.Errorf("decode queue entry: %w", err)
	}
	if entry.GetQueueId() == "" {
		return nil, errors.New("decode queue entry: no queue id")
	}
	return NewItem(entry), nil
}

// NewItem is the state of an entry before its first attempt.
func NewItem(entry *queuev1.QueueEntry) *deliveryv1.QueueItem {
	item := &deliveryv1.QueueItem{State: deliveryv1.QueueState_QUEUE_STATE_ACTIVE, Entry: entry}
	for _, r := range entry.GetRecipients() {
		item.Recipients = append(item.Recipients, &deliveryv1.RecipientState{
			Recipient: r, Outcome: deliveryv1.RecipientOutcome_RECIPIENT_OUTCOME_PENDING,
		})
	}
	return item
}

// keepAlive sends in-progress acks until the returned func is called.
func (c *Consumer) keepAlive(msg jetstream.Msg, log *slog.Logger) func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(c.o.InProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if err := msg.InProgress(); err != nil {
					log.Warn("in-progress ack", "error", err)
				}
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

func (c *Consumer) process(ctx context.Context, msg jetstream.Msg, item *deliveryv1.QueueItem, log *slog.Logger) {
	entry := item.GetEntry()
	var pending []int
	for i, st := range item.GetRecipients() {
		switch st.GetOutcome() {
		case deliveryv1.RecipientOutcome_RECIPIENT_OUTCOME_DELIVERED, deliveryv1.RecipientOutcome_RECIPIENT_OUTCOME_BOUNCED:
		default:
			pending = append(pending, i)
		}
	}
	var att Attempt
	if len(pending) > 0 {
		var err error
		att, err = c.o.Attempter.Attempt(ctx, entry, pending)
		if ctx.Err() != nil {
			// Shutting down: record nothing; the message comes back (to
			// another replica) and the attempt is repeated, idempotently
			// for local recipients.
			return
		}
		if err != nil {
			c.retryLater(msg, log, "delivery attempt could not be made", err)
			return
		}
	}
	now := c.o.Now()
	item.Attempts++
	item.StoreMayReference = item.GetStoreMayReference() || att.StoreMayReference
	arrival := arrivalOf(entry, now)
	answered := make(map[int]bool, len(att.Results))
	var bounced, deferred []int
	for _, r := range att.Results {
		if r.Index < 0 || r.Index >= len(item.Recipients) || answered[r.Index] {
			continue
		}
		answered[r.Index] = true
		st := item.Recipients[r.Index]
		st.Attempts++
		st.LastReply = r.Reply
		st.RemoteMta = r.RemoteMTA
		st.LastAttemptAt = timestamppb.New(now)
		c.metrics.recipients.WithLabelValues(r.Outcome.String()).Inc()
		if r.Outcome == Delivered || r.Outcome == Permanent {
			c.metrics.delay.WithLabelValues(r.Outcome.String()).Observe(now.Sub(arrival).Seconds())
		}
		switch r.Outcome {
		case Delivered:
			st.Outcome = deliveryv1.RecipientOutcome_RECIPIENT_OUTCOME_DELIVERED
			log.Info("delivered", "to", st.GetRecipient().GetAddress(), "reply", r.Reply)
		case Permanent:
			bounced = append(bounced, r.Index)
			log.Info("delivery failed", "to", st.GetRecipient().GetAddress(), "reply", r.Reply)
		default:
			deferred = append(deferred, r.Index)
			log.Info("delivery deferred", "to", st.GetRecipient().GetAddress(), "reply", r.Reply)
		}
	}
	for _, i := range pending {
		if !answered[i] {
			// An Attempter bug must not lose the recipient.
			st := item.Recipients[i]
			st.LastReply = "451 4.3.0 no delivery result"
			deferred = append(deferred, i)
			log.Error("attempter returned no result", "to", st.GetRecipient().GetAddress())
		}
	}

	var next time.Time
	if len(deferred) > 0 {
		var expired bool
		next, expired = c.o.Schedule.Next(int(item.Attempts), arrival, now, c.o.Rand)
		if expired {
			// RFC 5321 §4.5.4.1: give up after the queue lifetime.
			for _, i := range deferred {
				st := item.Recipients[i]
				st.LastReply = "giving up after " + c.o.Schedule.Lifetime.String() + " in the queue; last reply: " + st.GetLastReply()
				c.metrics.delay.WithLabelValues(Permanent.String()).Observe(now.Sub(arrival).Seconds())
			}
			bounced, deferred = append(bounced, deferred...), nil
		}
	}
	for _, i := range bounced {
		item.Recipients[i].Outcome = deliveryv1.RecipientOutcome_RECIPIENT_OUTCOME_BOUNCED
	}
	for _, i := range deferred {
		item.Recipients[i].Outcome = deliveryv1.RecipientOutcome_RECIPIENT_OUTCOME_DEFERRED
	}
	if len(deferred) > 0 {
		c.hold(ctx, item, log)
	}
	if len(bounced) > 0 {
		if err := c.bounce(ctx, item, bounced, log); err != nil {
			c.retryLater(msg, log, "bounce could not be queued", err)
			return
		}
	}
	if len(deferred) > 0 {
		if c.o.Schedule.WarnDelay(arrival, now, item.GetDelayWarned()) {
			c.warnDelay(ctx, item, deferred, log)
		}
		item.State = deliveryv1.QueueState_QUEUE_STATE_DEFERRED
		item.NextAttemptAt = timestamppb.New(next)
		if err := c.publishDeferred(ctx, item, fmt.Sprintf("%s.%d", entry.GetQueueId(), item.GetAttempts())); err != nil {
			c.retryLater(msg, log, "deferred entry could not be stored", err)
			return
		}
		log.Info("entry deferred", "attempts", item.GetAttempts(), "next_attempt", next, "recipients", len(deferred))
	}
	if len(deferred) == 0 && !c.finishes(item) {
		// Nothing follows the ack: an ack lost on the way only means a
		// redelivery, which finds every recipient done (idempotent
		// local delivery), so the server's confirmation is not awaited.
		if err := msg.Ack(); err != nil {
			log.Warn("ack", "error", err)
		}
		return
	}
	if err := msg.DoubleAck(ctx); err != nil {
		// Redelivered later; the attempt is repeated (idempotently for
		// local recipients), and the object must stay for it.
		log.Warn("ack", "error", err)
		return
	}
	if len(deferred) == 0 {
		c.finished(ctx, item, log)
	}
}

// finishes reports whether finished has anything to do for item: a hold
// to release or an object to delete, which must wait until the server
// has confirmed the ack.
func (c *Consumer) finishes(item *deliveryv1.QueueItem) bool {
	key := item.GetEntry().GetBlobKey()
	return item.GetStoreHold() && c.o.Holds != nil || !item.GetStoreMayReference() && c.o.Blobs != nil && key != ""
}

func (c *Consumer) bounce(ctx context.Context, item *deliveryv1.QueueItem, failed []int, log *slog.Logger) error {
	if item.GetEntry().GetMailFrom() == "" {
		// RFC 5321 §6.1 / RFC 3464: never a DSN about a DSN (or any
		// null-sender message); the failure is only logged.
		log.Info("no bounce for the null sender", "recipients", len(failed))
		return nil
	}
	if c.o.Bouncer == nil {
		log.Warn("bounce not sent: no DSN generator configured", "sender", item.GetEntry().GetMailFrom(), "recipients", len(failed))
		return nil
	}
	return c.o.Bouncer.Bounce(ctx, item, failed)
}

func (c *Consumer) warnDelay(ctx context.Context, item *deliveryv1.QueueItem, delayed []int, log *slog.Logger) {
	if item.GetEntry().GetMailFrom() == "" {
		item.DelayWarned = true
		return
	}
	if c.o.Bouncer == nil {
		log.Warn("delay warning not sent: no DSN generator configured", "sender", item.GetEntry().GetMailFrom())
		item.DelayWarned = true
		return
	}
	arrival := item.GetEntry().GetReceivedAt().AsTime()
	// A warning that fails is tried again at the next attempt: it is a
	// courtesy, and must not hold up the entry.
	if err := c.o.Bouncer.Delay(ctx, item, delayed, c.o.Schedule.Expiry(arrival)); err != nil {
		log.Warn("delay warning", "error", err)
		return
	}
	item.DelayWarned = true
}

func (c *Consumer) publishDeferred(ctx context.Context, item *deliveryv1.QueueItem, msgID string) error {
	// Retries read the object; the entry's copy of it would only make
	// every deferred item bigger.
	item.GetEntry().Content = nil
	data, err := proto.Marshal(item)
	if err != nil {
		return fmt.Errorf("encode queue item: %w", err)
	}
	_, err = natsx.PublishDedup(ctx, c.o.JS, DeferredSubjectOf(c.o.NATS), msgID, data)
	return err
}

// hold makes the store keep the object of an entry that will be retried,
// once the store may reference it (before that, the object is not the
// collector's: it is not recorded). A failure is logged and the hold tried
// again at the next attempt: the store's grace period (an hour by
// default) leaves time, and failing the attempt for it would repeat its
// remote deliveries.
func (c *Consumer) hold(ctx context.Context, item *deliveryv1.QueueItem, log *slog.Logger) {
	entry := item.GetEntry()
	if c.o.Holds == nil || !item.GetStoreMayReference() || item.GetStoreHold() || entry.GetBlobKey() == "" {
		return
	}
	if err := c.o.Holds.Hold(ctx, entry.GetBlobKey(), entry.GetQueueId()); err != nil {
		log.Warn("hold the message object for the retry; trying again at the next attempt", "key", entry.GetBlobKey(), "error", err)
		return
	}
	item.StoreHold = true
}

// finished releases what the entry held: its message object, unless the
// store may reference it (then the store's collector owns it, and the
// entry's hold on it ends).
func (c *Consumer) finished(ctx context.Context, item *deliveryv1.QueueItem, log *slog.Logger) {
	key := item.GetEntry().GetBlobKey()
	if item.GetStoreHold() && c.o.Holds != nil {
		if err := c.o.Holds.Release(ctx, key, item.GetEntry().GetQueueId()); err != nil {
			// A hold left behind keeps the object (space); releasing
			// early could lose mail. The finished entry goes back to the
			// deferred stream, with nothing left to deliver, and its next
			// pass tries the release again.
			log.Warn("release the message object of a finished entry; trying again later", "key", key, "error", err)
			c.releaseLater(ctx, item, log)
		}
	}
	if item.GetStoreMayReference() || c.o.Blobs == nil || key == "" {
		return
	}
	if err := c.o.Blobs.Delete(ctx, key); err != nil {
		// A leaked object costs space; deleting one in use would lose mail.
		log.Warn("delete the message object of a finished entry", "key", key, "error", err)
	}
}

// arrivalOf is when entry arrived (its 250); now for an entry that does
// not say.
func arrivalOf(entry *queuev1.QueueEntry, now time.Time) time.Time {
	if at := entry.GetReceivedAt(); at != nil {
		return at.AsTime()
	}
	return now
}

// releaseLater queues a finished entry whose hold could not be released:
// when it is due, process finds no recipient to attempt and only finishes
// it again. The passes follow the retry schedule and end with the queue
// lifetime (a release that keeps failing, for whatever reason, is not
// tried forever); then, or if the entry cannot be queued, the hold's own
// expiry (the store's) is what is left.
func (c *Consumer) releaseLater(ctx context.Context, item *deliveryv1.QueueItem, log *slog.Logger) {
	now := c.o.Now()
	next, expired := c.o.Schedule.Next(int(item.GetAttempts()), arrivalOf(item.GetEntry(), now), now, c.o.Rand)
	if expired {
		log.Warn("finished entry's hold still not released after the queue lifetime; the store's hold expires by itself")
		return
	}
	item.State = deliveryv1.QueueState_QUEUE_STATE_DEFERRED
	item.NextAttemptAt = timestamppb.New(next)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	id := fmt.Sprintf("%s.%d.release", item.GetEntry().GetQueueId(), item.GetAttempts())
	if err := c.publishDeferred(ctx, item, id); err != nil {
		log.Warn("finished entry not queued for its release; the store's hold expires by itself", "error", err)
	}
}

func (c *Consumer) retryLater(msg jetstream.Msg, log *slog.Logger, what string, err error) {
	c.metrics.retries.Inc()
	n := uint64(1)
	if md, mdErr := msg.Metadata(); mdErr == nil {
		n = md.NumDelivered
	}
	d := c.o.UnavailableBackoff
	for i := uint64(1); i < n && d < c.o.UnavailableBackoffMax; i++ {
		d *= 2
	}
	d = min(d, c.o.UnavailableBackoffMax)
	log.Warn(what+"; trying again", "in", d, "deliveries", n, "error", err)
	if nakErr := msg.NakWithDelay(d); nakErr != nil {
		log.Warn("nak", "error", nakErr)
	}
}
