package natsx

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// PublishDedup publishes data to a JetStream subject with msgID as its
// Nats-Msg-Id and waits for the stream's acknowledgement. Within the stream's
// duplicate window a second publish with the same id stores nothing and is
// acknowledged with PubAck.Duplicate set, so a caller that retries after a
// lost acknowledgement (smtp publishing a queue entry under its queue id)
// never queues the message twice. Only a returned PubAck means the message
// is stored; without a deadline in ctx the jetstream default timeout (5s)
// applies.
func PublishDedup(ctx context.Context, js jetstream.JetStream, subject, msgID string, data []byte) (*jetstream.PubAck, error) {
	if msgID == "" {
		return nil, fmt.Errorf("natsx: publish to %s: %w", subject, errors.New("empty message id"))
	}
	ack, err := js.Publish(ctx, subject, data, jetstream.WithMsgID(msgID))
	if err != nil {
		return nil, fmt.Errorf("natsx: publish to %s (msg id %s): %w", subject, msgID, err)
	}
	return ack, nil
}
