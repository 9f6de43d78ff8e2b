package queue

// The delivery service's own JetStream names, next to the code that uses
// them (the shared ones are in platform/natsx/streams.go). Every name takes
// natsx.Options.Prefix the way natsx's do.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/petrel-mail/petrel/platform/natsx"
)

const (
	// DeferredStreamName holds QueueItems (proto petrel.delivery.v1) waiting
	// for their next attempt. Work-queue retention: an item is gone once a
	// worker acknowledges it (delivered, bounced, or rescheduled as a new
	// item).
	DeferredStreamName = "PETREL_DELIVERY_DEFERRED"
	// DeferredSubject is the subject of deferred items, published by
	// delivery workers, consumed by DeferredConsumerName.
	DeferredSubject = "petrel.delivery.deferred"
	// DeferredConsumerName is the durable pull consumer on the deferred
	// stream shared by all delivery replicas.
	DeferredConsumerName = "delivery-deferred"
	// DeferredDuplicates is the deferred stream's duplicate window: longer
	// than the ack wait, so that a worker that republishes an item after
	// its predecessor died between publish and ack is deduplicated.
	DeferredDuplicates = 20 * time.Minute
)

func prefixed(o natsx.Options, sep, n string) string {
	if o.Prefix == "" {
		return n
	}
	return o.Prefix + sep + n
}

// DeferredStream is the deferred stream's name under o's prefix.
func DeferredStream(o natsx.Options) string { return prefixed(o, "_", DeferredStreamName) }

// DeferredSubjectOf is the deferred subject under o's prefix.
func DeferredSubjectOf(o natsx.Options) string { return prefixed(o, ".", DeferredSubject) }

// DeferredConsumer is the deferred consumer's name under o's prefix.
func DeferredConsumer(o natsx.Options) string { return prefixed(o, "_", DeferredConsumerName) }

// DeferredStreamConfig declares the deferred stream.
func DeferredStreamConfig(o natsx.Options) jetstream.StreamConfig {
	replicas := o.Replicas
	if replicas == 0 {
		replicas = 1
	}
	maxMsg := o.QueueMaxMsgSize
	if maxMsg == 0 {
		// An item is the entry plus a short state per recipient.
		maxMsg = 2 * natsx.DefaultQueueMaxMsgSize
	}
	return jetstream.StreamConfig{
		Name:        DeferredStream(o),
		Description: "Petrel delivery: queue entries waiting for their next attempt",
		Subjects:    []string{DeferredSubjectOf(o)},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		Duplicates:  DeferredDuplicates,
		MaxMsgSize:  maxMsg,
		MaxMsgs:     -1,
		MaxBytes:    -1,
		MaxAge:      0, // never dropped: expiry is a bounce, decided by delivery
		Discard:     jetstream.DiscardNew,
	}
}

// DeferredConsumerConfig declares the deferred consumer. Items wait
// unacknowledged (NakWithDelay) until due, so MaxAckPending is unlimited.
func DeferredConsumerConfig(o natsx.Options) jetstream.ConsumerConfig {
	ackWait := o.DeliveryAckWait
	if ackWait == 0 {
		ackWait = natsx.DefaultDeliveryAckWait
	}
	return jetstream.ConsumerConfig{
		Durable:       DeferredConsumer(o),
		Description:   "Petrel delivery workers (deferred entries)",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxDeliver:    -1,
		MaxAckPending: -1,
		ReplayPolicy:  jetstream.ReplayInstantPolicy,
	}
}

// EnsureDeferred creates or updates the deferred stream and its consumer.
// Idempotent; safe when several replicas run it together.
func EnsureDeferred(ctx context.Context, js jetstream.JetStream, o natsx.Options) error {
	if err := o.Validate(); err != nil {
		return err
	}
	scfg := DeferredStreamConfig(o)
	for attempt := 0; ; attempt++ {
		_, err := js.UpdateStream(ctx, scfg)
		if err == nil {
			break
		}
		if !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("queue: update stream %s: %w", scfg.Name, err)
		}
		if _, err = js.CreateStream(ctx, scfg); err == nil {
			break
		}
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) || attempt >= 3 {
			return fmt.Errorf("queue: create stream %s: %w", scfg.Name, err)
		}
	}
	ccfg := DeferredConsumerConfig(o)
	if _, err := js.CreateOrUpdateConsumer(ctx, scfg.Name, ccfg); err != nil {
		return fmt.Errorf("queue: ensure consumer %s on %s: %w", ccfg.Durable, scfg.Name, err)
	}
	return nil
}

// DeleteDeferred removes the deferred stream (tests, development resets).
func DeleteDeferred(ctx context.Context, js jetstream.JetStream, o natsx.Options) error {
	err := js.DeleteStream(ctx, DeferredStream(o))
	if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("queue: delete stream %s: %w", DeferredStream(o), err)
	}
	return nil
}
