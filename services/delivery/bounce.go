package delivery

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	deliveryv1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/delivery/v1"
	queuev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/queue/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/petrel-mail/petrel/platform/blob"
	"github.com/petrel-mail/petrel/platform/natsx"
	"github.com/petrel-mail/petrel/services/delivery/internal/dsn"
	"github.com/petrel-mail/petrel/services/delivery/internal/queue"
)

// DSNQueuer is the queue.Bouncer of the service: it builds the DSN
// (package dsn) and queues it like smtp queues a message, so that it is
// delivered (locally or remotely) and retried like any other mail. The DSN
// is written to blob storage under smtp's key scheme
// ("msg/<tenant>/<yyyy>/<mm>/<dd>/<queue id>") and published to the queue
// with the null sender (RFC 5321 §4.5.5), which is what keeps bounces from
// looping: the consumer never reports on a null-sender entry.
//
// The DSN's queue id is derived from the original's, the kind and the
// attempt number ("<id>-b<attempt>", "<id>-d<attempt>") and is the
// JetStream message id: an attempt repeated after a crash between the
// publish and the ack queues the DSN once (the queue stream's duplicate
// window).
type DSNQueuer struct {
	JS    jetstream.JetStream
	NATS  natsx.Options
	Blobs blob.Store
	// ReportingMTA is our host name (Reporting-MTA, MAILER-DAEMON@).
	ReportingMTA string
	// Now is the clock (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
}

var _ queue.Bouncer = (*DSNQueuer)(nil)

// Bounce implements queue.Bouncer.
func (q *DSNQueuer) Bounce(ctx context.Context, item *deliveryv1.QueueItem, failed []int) error {
	return q.queue(ctx, item, failed, dsn.Failed, time.Time{}, "b")
}

// Delay implements queue.Bouncer.
func (q *DSNQueuer) Delay(ctx context.Context, item *deliveryv1.QueueItem, delayed []int, until time.Time) error {
	return q.queue(ctx, item, delayed, dsn.Delayed, until, "d")
}

func (q *DSNQueuer) now() time.Time {
	if q.Now != nil {
		return q.Now()
	}
	return time.Now()
}

func (q *DSNQueuer) queue(ctx context.Context, item *deliveryv1.QueueItem, idx []int, action dsn.Action, until time.Time, kind string) error {
	entry := item.GetEntry()
	now := q.now()
	var statuses []dsn.RecipientStatus
	for _, i := range idx {
		st := item.GetRecipients()[i]
		rs := dsn.RecipientStatus{
			Recipient:      st.GetRecipient(),
			Action:         action,
			Status:         statusOf(st.GetLastReply(), action),
			RemoteMTA:      st.GetRemoteMta(),
			WillRetryUntil: until,
		}
		if t := st.GetLastAttemptAt(); t != nil {
			rs.LastAttempt = t.AsTime()
		}
		if rs.RemoteMTA != "" {
			rs.Diagnostic = st.GetLastReply()
		} else {
			rs.Detail = st.GetLastReply()
		}
		statuses = append(statuses, rs)
	}
	n, err := dsn.Build(dsn.Report{
		ReportingMTA: q.ReportingMTA,
		Entry:        entry,
		Recipients:   statuses,
		Date:         now,
		Original: func() (io.ReadCloser, error) {
			rc, _, err := q.Blobs.Get(ctx, entry.GetBlobKey())
			return rc, err
		},
	})
	if errors.Is(err, dsn.ErrNullSender) || errors.Is(err, dsn.ErrNothingToReport) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("build DSN: %w", err)
	}

	qid := entry.GetQueueId() + "-" + kind + strconv.Itoa(int(item.GetAttempts()))
	key := fmt.Sprintf("msg/%s/%04d/%02d/%02d/%s", entry.GetTenantId(), now.Year(), int(now.Month()), now.Day(), qid)
	pr, pw := io.Pipe()
	h := sha256.New()
	go func() {
		_, err := n.WriteTo(io.MultiWriter(pw, h))
		pw.CloseWithError(err)
	}()
	info, err := q.Blobs.Put(ctx, key, pr)
	pr.CloseWithError(errors.New("put ended"))
	if err != nil {
		return fmt.Errorf("store DSN %s: %w", key, err)
	}
	dsnEntry := &queuev1.QueueEntry{
		QueueId:    qid,
		TenantId:   entry.GetTenantId(),
		BlobKey:    key,
		Size:       info.Size,
		Sha256:     hex.EncodeToString(h.Sum(nil)),
		MailFrom:   "", // RFC 5321 §4.5.5: DSNs from the null sender
		Recipients: []*queuev1.Recipient{{Address: n.To}},
		Client:     &queuev1.Client{Helo: q.ReportingMTA, Listener: "dsn"},
		ReceivedAt: timestamppb.New(now),
		Smtputf8:   n.UTF8,
	}
	if n.EightBit {
		dsnEntry.Body = queuev1.Body_BODY_8BITMIME
	}
	data, err := proto.Marshal(dsnEntry)
	if err != nil {
		return fmt.Errorf("encode DSN entry: %w", err)
	}
	if _, err := natsx.PublishDedup(ctx, q.JS, q.NATS.QueueInboundSubject(), qid, data); err != nil {
		if delErr := q.Blobs.Delete(context.WithoutCancel(ctx), key); delErr != nil && q.Logger != nil {
			q.Logger.Warn("delete the object of an unqueued DSN", "key", key, "error", delErr)
		}
		return fmt.Errorf("queue DSN: %w", err)
	}
	if q.Logger != nil {
		q.Logger.Info("DSN queued", "queue_id", entry.GetQueueId(), "dsn_queue_id", qid, "action", string(action), "to", n.To, "recipients", len(n.Recipients))
	}
	return nil
}

// statusOf is the RFC 3463 code in a recorded reply ("550 5.1.1 ...").
// An expired entry (the consumer's "giving up" reply) is X.4.7, delivery
// time expired; a reply without a code gets the class's X.0.0.
func statusOf(reply string, action dsn.Action) string {
	if strings.HasPrefix(reply, "giving up") {
		if action == dsn.Failed {
			return "5.4.7"
		}
		return "4.4.7"
	}
	f := strings.Fields(reply)
	if len(f) >= 2 && len(f[1]) >= 5 && (f[1][0] == '2' || f[1][0] == '4' || f[1][0] == '5') && f[1][1] == '.' {
		return f[1]
	}
	if len(f) >= 1 && len(f[0]) == 3 && (f[0][0] == '4' || f[0][0] == '5') {
		return f[0][:1] + ".0.0"
	}
	if action == dsn.Delayed {
		return "4.0.0"
	}
	return "5.0.0"
}
