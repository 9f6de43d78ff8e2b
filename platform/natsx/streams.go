package natsx

// This file is the one place where Petrel's NATS names are declared. Every
// stream, consumer and subject that any service uses is defined here, with
// what travels on it, who publishes and who consumes.

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
)

const (
	// QueueStreamName is the JetStream stream holding the mail queue. Its
	// messages are queue entries (protobuf: queue id, blob key, envelope,
	// client info; the message body is in S3). Retention is work queue: an
	// entry is gone once the delivery consumer acknowledges it.
	QueueStreamName = "PETREL_QUEUE"

	// QueueSubjects are the subjects the queue stream captures.
	QueueSubjects = "petrel.queue.>"

	// QueueInboundSubject carries queue entries published by smtp for every
	// accepted message (MX and submission alike), with the queue id as
	// Nats-Msg-Id so that a retried publish is dropped as a duplicate.
	QueueInboundSubject = "petrel.queue.inbound"

	// DeliveryConsumerName is the durable pull consumer on the queue stream
	// shared by all delivery replicas. It is the stream's only consumer: a
	// work-queue stream refuses a second consumer whose subjects overlap.
	DeliveryConsumerName = "delivery"

	// EventsSubjectRoot prefixes mailbox change events, on core NATS (not a
	// stream: a session that misses an event resynchronises from store).
	// Subject: petrel.events.<tenant>.<account>, published by store after
	// every committed change to a mailbox of that account, consumed by imap
	// and pop3 sessions of that account (IDLE, NOTIFY). Build it with
	// Options.EventSubject.
	EventsSubjectRoot = "petrel.events"

	// DestinationSlotsBucket is the key-value bucket (stream
	// KV_PETREL_DESTINATION_SLOTS) through which delivery replicas share
	// the limit of concurrent SMTP sessions per destination. A key is
	// d.<hash of the destination>.<slot>, its value the holder; a holder
	// deletes its key when the session ends and refreshes it while it
	// runs, and a key that was not refreshed for the bucket's TTL (a
	// crashed holder) expires. Written and read by delivery only.
	DestinationSlotsBucket = "PETREL_DESTINATION_SLOTS"

	// DeadDestinationsBucket is the key-value bucket (stream
	// KV_PETREL_DEAD_DESTINATIONS) through which delivery replicas share
	// the destinations none of whose hosts answered: while one is
	// suspended, its mail is deferred without connecting (Postfix's dead
	// destinations). A key is d.<hash of the destination>, its value the
	// suspension (JSON: destination, reason, until). Values carry their
	// own end; the bucket's TTL (DeadDestinationsMaxTTL) only clears old
	// keys. Written and read by delivery only.
	DeadDestinationsBucket = "PETREL_DEAD_DESTINATIONS"

	// DeadDestinationsMaxTTL is the TTL of DeadDestinationsBucket, and so
	// the longest a destination can be suspended.
	DeadDestinationsMaxTTL = time.Hour
)

// Defaults of Options.
const (
	// DefaultQueueMaxMsgSize bounds a queue entry. Entries are small
	// protobufs, but carry every recipient: 1000 recipients (Postfix's
	// default limit) of up to 256 octets fit comfortably, and it equals the
	// NATS default max_payload, which a stream limit may not exceed.
	DefaultQueueMaxMsgSize = 1 << 20
	// DefaultQueueDuplicates is how long a queue id is remembered for
	// de-duplication: longer than smtp's publish retries.
	DefaultQueueDuplicates = 2 * time.Minute
	// DefaultDeliveryAckWait is how long a delivery worker may hold an entry
	// without acknowledging it or sending an in-progress ack before it is
	// redelivered to another worker. Workers send in-progress acks every
	// third of it while an attempt runs (a remote MX may take 10 minutes
	// after the final dot), so it only bounds how long the entries of a
	// crashed worker wait before another one takes them.
	DefaultDeliveryAckWait = 30 * time.Second
	// DefaultDeliveryMaxAckPending bounds entries in flight across all
	// delivery workers, so that one slow destination cannot pull the whole
	// queue into memory.
	DefaultDeliveryMaxAckPending = 1000
)

// Options parametrise the declarations. The zero value is the production
// single-node setup.
type Options struct {
	// Prefix, when set, is prepended to every name: "<Prefix>_" to stream
	// and consumer names, "<Prefix>." to subjects. Tests on a shared server
	// use testenv.Prefix() so that runs never collide. It must be a valid
	// subject token made of letters, digits, '-' and '_'.
	Prefix string
	// Replicas of the queue stream: 1 (default) on a single server, 3 in a
	// cluster so that a queued message survives the loss of a NATS node.
	Replicas int
	// QueueMaxMsgSize bounds one queue entry. Default DefaultQueueMaxMsgSize.
	QueueMaxMsgSize int32
	// QueueMaxBytes bounds the whole queue; default unlimited (disk). When
	// full, publishes are refused (never are old entries dropped), so smtp
	// answers 4xx.
	QueueMaxBytes int64
	// DeliveryAckWait and DeliveryMaxAckPending override the defaults above.
	DeliveryAckWait       time.Duration
	DeliveryMaxAckPending int
}

func (o Options) withDefaults() Options {
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.QueueMaxMsgSize == 0 {
		o.QueueMaxMsgSize = DefaultQueueMaxMsgSize
	}
	if o.QueueMaxBytes == 0 {
		o.QueueMaxBytes = -1
	}
	if o.DeliveryAckWait == 0 {
		o.DeliveryAckWait = DefaultDeliveryAckWait
	}
	if o.DeliveryMaxAckPending == 0 {
		o.DeliveryMaxAckPending = DefaultDeliveryMaxAckPending
	}
	return o
}

// Validate reports every problem in o at once.
func (o Options) Validate() error {
	var errs []error
	if o.Prefix != "" {
		for _, r := range o.Prefix {
			if !(r == '-' || r == '_' || r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r))) {
				errs = append(errs, fmt.Errorf("natsx: prefix %q: only ASCII letters, digits, '-' and '_' are allowed", o.Prefix))
				break
			}
		}
	}
	if o.Replicas < 0 || o.Replicas > 5 {
		errs = append(errs, fmt.Errorf("natsx: replicas %d: JetStream allows 1 to 5", o.Replicas))
	}
	if o.QueueMaxMsgSize < 0 {
		errs = append(errs, fmt.Errorf("natsx: negative QueueMaxMsgSize %d", o.QueueMaxMsgSize))
	}
	if o.QueueMaxBytes < -1 {
		errs = append(errs, fmt.Errorf("natsx: bad QueueMaxBytes %d", o.QueueMaxBytes))
	}
	if o.DeliveryAckWait < 0 {
		errs = append(errs, fmt.Errorf("natsx: negative DeliveryAckWait %s", o.DeliveryAckWait))
	}
	if o.DeliveryMaxAckPending < 0 {
		errs = append(errs, fmt.Errorf("natsx: negative DeliveryMaxAckPending %d", o.DeliveryMaxAckPending))
	}
	return errors.Join(errs...)
}

func (o Options) name(n string) string {
	if o.Prefix == "" {
		return n
	}
	return o.Prefix + "_" + n
}

func (o Options) subject(s string) string {
	if o.Prefix == "" {
		return s
	}
	return o.Prefix + "." + s
}

// DestinationSlots is the name of the destination slot bucket.
func (o Options) DestinationSlots() string { return o.name(DestinationSlotsBucket) }

// DestinationSlotsConfig declares the destination slot bucket: keys
// expiring after ttl, with the queue's replicas. On disk, although slots
// are leases: a memory bucket vanishes when a single server restarts, and
// the replicas would have to declare it again; a file one is still there
// when they reconnect (EnsureKeyValue replaces a memory one).
func (o Options) DestinationSlotsConfig(ttl time.Duration) jetstream.KeyValueConfig {
	o = o.withDefaults()
	return jetstream.KeyValueConfig{
		Bucket:      o.DestinationSlots(),
		Description: "Petrel: concurrent SMTP sessions per destination, shared by delivery replicas",
		History:     1,
		TTL:         ttl,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
	}
}

// DeadDestinations is the name of the dead destination bucket.
func (o Options) DeadDestinations() string { return o.name(DeadDestinationsBucket) }

// DeadDestinationsConfig declares the dead destination bucket, with the
// queue's replicas; on disk for the reason DestinationSlotsConfig gives.
func (o Options) DeadDestinationsConfig() jetstream.KeyValueConfig {
	o = o.withDefaults()
	return jetstream.KeyValueConfig{
		Bucket:      o.DeadDestinations(),
		Description: "Petrel: destinations whose mail is deferred without connecting, shared by delivery replicas",
		History:     1,
		TTL:         DeadDestinationsMaxTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
	}
}

// EnsureKeyValue creates or updates a key-value bucket declared here. A
// bucket whose storage differs (the memory buckets of earlier versions)
// cannot be updated: it is deleted and created again, which these buckets,
// holding leases and hints, can afford.
func EnsureKeyValue(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, cfg)
	if err == nil {
		return kv, nil
	}
	old, gerr := js.KeyValue(ctx, cfg.Bucket)
	if gerr != nil {
		return nil, err
	}
	st, serr := old.Status(ctx)
	if serr != nil {
		return nil, err
	}
	info, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok || info.StreamInfo().Config.Storage == cfg.Storage {
		return nil, err
	}
	if derr := js.DeleteKeyValue(ctx, cfg.Bucket); derr != nil && !errors.Is(derr, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("natsx: replace bucket %s: %w", cfg.Bucket, derr)
	}
	return js.CreateOrUpdateKeyValue(ctx, cfg)
}

// QueueStream is the name of the mail queue stream.
func (o Options) QueueStream() string { return o.name(QueueStreamName) }

// QueueSubjects is the wildcard the mail queue stream captures.
func (o Options) QueueSubjects() string { return o.subject(QueueSubjects) }

// QueueInboundSubject is where smtp publishes queue entries.
func (o Options) QueueInboundSubject() string { return o.subject(QueueInboundSubject) }

// DeliveryConsumer is the name of the delivery consumer on the queue stream.
func (o Options) DeliveryConsumer() string { return o.name(DeliveryConsumerName) }

// EventSubject is the subject of mailbox change events of one account:
// petrel.events.<tenant>.<account>. Ids are used as subject tokens, so each
// must pass ValidateToken: a '.' would shift the tokens and a wildcard would
// let a subscriber see other accounts' events.
func (o Options) EventSubject(tenant, account string) (string, error) {
	if err := ValidateToken(tenant); err != nil {
		return "", fmt.Errorf("natsx: event subject: tenant: %w", err)
	}
	if err := ValidateToken(account); err != nil {
		return "", fmt.Errorf("natsx: event subject: account: %w", err)
	}
	return o.subject(EventsSubjectRoot + "." + tenant + "." + account), nil
}

// ErrBadToken is returned for a value that cannot be a subject token.
var ErrBadToken = errors.New("invalid subject token")

// ValidateToken checks that s can be one token of a NATS subject: not
// empty, and no '.', '*', '>', whitespace or control character.
func ValidateToken(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty", ErrBadToken)
	}
	for _, r := range s {
		if r == '.' || r == '*' || r == '>' || unicode.IsSpace(r) || unicode.IsControl(r) || r == utf8.RuneError {
			return fmt.Errorf("%w: %q contains %q", ErrBadToken, s, r)
		}
	}
	return nil
}

// QueueStreamConfig is the declaration of the mail queue stream.
func (o Options) QueueStreamConfig() jetstream.StreamConfig {
	o = o.withDefaults()
	return jetstream.StreamConfig{
		Name:        o.QueueStream(),
		Description: "Petrel mail queue: entries published by smtp, consumed by delivery",
		Subjects:    []string{o.QueueSubjects()},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		Duplicates:  DefaultQueueDuplicates,
		MaxMsgSize:  o.QueueMaxMsgSize,
		MaxBytes:    o.QueueMaxBytes,
		MaxMsgs:     -1,
		MaxAge:      0, // queued mail never silently expires; delivery bounces it
		// A full queue must refuse new mail (smtp answers 4xx), never drop
		// queued mail that was already acknowledged with 250.
		Discard: jetstream.DiscardNew,
	}
}

// DeliveryConsumerConfig is the declaration of the delivery consumer.
func (o Options) DeliveryConsumerConfig() jetstream.ConsumerConfig {
	o = o.withDefaults()
	return jetstream.ConsumerConfig{
		Durable:       o.DeliveryConsumer(),
		Description:   "Petrel delivery workers",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		// Long enough for a slow remote MX; workers extend it with
		// in-progress acks while a delivery is still running.
		AckWait: o.DeliveryAckWait,
		// Unlimited: giving up is delivery's decision (expiry and a DSN),
		// never JetStream's, which would drop the entry silently.
		MaxDeliver:    -1,
		MaxAckPending: o.DeliveryMaxAckPending,
		ReplayPolicy:  jetstream.ReplayInstantPolicy,
	}
}

// EnsureStreams creates the streams and consumers declared here, or updates
// them to these declarations. It is idempotent and safe when several replicas
// of a service run it at the same time.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, o Options) error {
	if err := o.Validate(); err != nil {
		return err
	}
	scfg := o.QueueStreamConfig()
	if err := ensureStream(ctx, js, scfg); err != nil {
		return fmt.Errorf("natsx: ensure stream %s: %w", scfg.Name, err)
	}
	ccfg := o.DeliveryConsumerConfig()
	// The server applies create-or-update atomically, so concurrent callers
	// with the same declaration all succeed.
	if _, err := js.CreateOrUpdateConsumer(ctx, scfg.Name, ccfg); err != nil {
		return fmt.Errorf("natsx: ensure consumer %s on %s: %w", ccfg.Durable, scfg.Name, err)
	}
	return nil
}

// ensureStream updates the stream or creates it when missing. Between the
// update's "not found" and the create, another replica may have created it
// (with the same or an older declaration): the create then fails with "name
// in use" — or, from servers that check subjects before names (2.9), with
// "subjects overlap" — and we update again. A stream of another name that
// really overlaps fails the same way every time, and so fails after the
// retries.
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) error {
	for attempt := 0; ; attempt++ {
		_, err := js.UpdateStream(ctx, cfg)
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("update: %w", err)
		}
		_, err = js.CreateStream(ctx, cfg)
		if err == nil {
			return nil
		}
		var apiErr *jetstream.APIError
		raced := errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) ||
			errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeStreamSubjectsOverlap
		if !raced || attempt >= 3 {
			return fmt.Errorf("create: %w", err)
		}
	}
}

// errCodeStreamSubjectsOverlap is JetStream's "subjects overlap with an
// existing stream" (nats.go names no constant for it).
const errCodeStreamSubjectsOverlap jetstream.ErrorCode = 10065

// OpenDeliveryConsumer returns a handle on the delivery consumer, which
// EnsureStreams must have declared.
func OpenDeliveryConsumer(ctx context.Context, js jetstream.JetStream, o Options) (jetstream.Consumer, error) {
	c, err := js.Consumer(ctx, o.QueueStream(), o.DeliveryConsumer())
	if err != nil {
		return nil, fmt.Errorf("natsx: consumer %s on %s: %w", o.DeliveryConsumer(), o.QueueStream(), err)
	}
	return c, nil
}

// DeleteStreams removes the streams declared here (and so their consumers
// and messages). For tests on a shared server and for operators resetting a
// development setup; a missing stream is not an error.
func DeleteStreams(ctx context.Context, js jetstream.JetStream, o Options) error {
	err := js.DeleteStream(ctx, o.QueueStream())
	if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("natsx: delete stream %s: %w", o.QueueStream(), err)
	}
	for _, b := range []string{o.DestinationSlots(), o.DeadDestinations()} {
		err = js.DeleteKeyValue(ctx, b)
		if err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
			return fmt.Errorf("natsx: delete bucket %s: %w", b, err)
		}
	}
	return nil
}
