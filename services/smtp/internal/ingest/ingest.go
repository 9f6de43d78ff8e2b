// Package ingest turns a received SMTP message into durable state: it
// streams the message into blob storage with a Received: trace field
// (RFC 5321 §4.4) prepended and, for inbound mail, an Authentication-Results
// field (RFC 8601), hashing it on the way, then publishes the queue entry
// (proto petrel.queue.v1.QueueEntry) to JetStream with the queue id as
// message id. Submitted mail gets Message-ID and Date when it lacks them
// (RFC 6409 §8).
//
// Durability contract (ARCHITECTURE.md, "The life of a message"): Accept
// returns nil only after the blob store has the object and the stream has
// acknowledged the entry; the caller answers 250 then and only then. Any
// other outcome is an error whose class decides the reply: a refused
// message (bare line ending, too big, sender authentication policy) is 5xx,
// a failure of ours is 4xx.
//
// Cleaning up after a failure: the object is deleted when the entry was
// certainly not stored (not connected to NATS, no stream answered, the
// stream refused it). When the publish timed out, the entry may have been
// stored without our seeing the acknowledgement; the publish is retried
// with the same message id (the stream de-duplicates it, and a duplicate
// acknowledgement means it was stored). If it still cannot be confirmed,
// the object is kept, so that an entry that did get stored never points at
// nothing; such an object is an orphan for the store's collector.
package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/mail"
	"net/netip"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/petrel-mail/petrel/platform/blob"
	"github.com/petrel-mail/petrel/platform/natsx"
	queuev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/queue/v1"
	"github.com/petrel-mail/petrel/services/smtp/internal/authcheck"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Errors returned (wrapped) by Accept besides ErrBareLineEnding and
// ErrTooBig.
var (
	// ErrStorage: the blob store failed. Temporary.
	ErrStorage = errors.New("ingest: blob storage failed")
	// ErrQueue: the queue entry could not be published. Temporary.
	ErrQueue = errors.New("ingest: queue publish failed")
	// ErrCheck: sender authentication could not run. Temporary.
	ErrCheck = errors.New("ingest: sender authentication failed to run")
	// ErrTooManyHops: the message has Options.MaxHops Received: fields or
	// more — it is looping (RFC 5321 §6.3). Permanent.
	ErrTooManyHops = errors.New("ingest: too many Received: fields (mail loop)")
	// ErrSource: reading the message from the client failed (connection
	// lost, transfer aborted with RSET). No reply may even reach the
	// client.
	ErrSource = errors.New("ingest: reading the message failed")
)

// RejectedError is a message refused by the sender authentication policy.
type RejectedError struct{ Reason string }

func (e *RejectedError) Error() string { return "ingest: rejected by policy: " + e.Reason }

// FromError is returned by an Envelope.CheckFrom to refuse a message
// whose From: the sender may not use.
type FromError struct{ Reason string }

func (e *FromError) Error() string { return "ingest: From: refused: " + e.Reason }

// fromAddresses parses the From: fields; any that fails to parse, or one
// that was too long, yields no addresses, which a check refuses.
func fromAddresses(seen fieldSet) []string {
	if seen.fromTooLong {
		return nil
	}
	var out []string
	for _, v := range seen.from {
		list, err := mail.ParseAddressList(v)
		if err != nil {
			return nil
		}
		for _, a := range list {
			out = append(out, a.Address)
		}
	}
	return out
}

// Recipient is one accepted RCPT TO.
type Recipient struct {
	Address   string
	Notify    []queuev1.DSNNotify
	ORCPTType string
	ORCPT     string
	Local     bool
	// TenantID and AccountIDs: the store's resolution of a local address
	// at RCPT time, passed to delivery in the queue entry.
	TenantID   string
	AccountIDs []string
}

// Envelope is everything about a message except its content.
type Envelope struct {
	TenantID   string
	MailFrom   string
	Recipients []Recipient
	DSNReturn  queuev1.DSNReturn
	EnvID      string
	Body       queuev1.Body
	SMTPUTF8   bool

	ClientIP    netip.Addr
	HELO        string
	ESMTP       bool // EHLO rather than HELO
	AuthAccount string
	Listener    string // "mx", "submission", "submissions"
	TLS         bool

	// AddMissingHeaders adds Message-ID and Date (submission).
	AddMissingHeaders bool
	// CheckSender runs the Authenticator (inbound mail).
	CheckSender bool
	// CheckFrom, if set, is given the addresses of the From: field(s)
	// once the header has been read (submission: may the account send as
	// them?). Its error refuses the message and is returned by Accept.
	// A missing or unparsable From: is given as no addresses.
	CheckFrom func(ctx context.Context, addrs []string) error
}

// Accepted describes a message that is durable.
type Accepted struct {
	QueueID string
	BlobKey string
	Size    int64
	SHA256  string
}

// Options configure an Ingester.
type Options struct {
	Blob blob.Store
	// JetStream and Conn: publishing needs the first; the second tells
	// whether a failed publish can have reached the server.
	JetStream jetstream.JetStream
	Conn      *nats.Conn
	// Subject is natsx.Options.QueueInboundSubject().
	Subject string
	// Hostname names this server in Received: and generated Message-IDs.
	Hostname string
	// MaxMessageBytes bounds the message as received; 0 means no limit.
	MaxMessageBytes int64
	// MaxHops refuses a message with this many Received: fields or more
	// (ErrTooManyHops): a mail loop (RFC 5321 §6.3). Default
	// DefaultMaxHops; negative: no limit.
	MaxHops int
	// Authenticator evaluates inbound mail (Envelope.CheckSender). Nil
	// skips it and streams inbound mail straight to storage.
	Authenticator authcheck.Authenticator
	// SpoolMemory is how much of a message is held in memory while the
	// Authenticator reads it before moving to a file in SpoolDir ("" is
	// the system temporary directory). Default 1 MiB.
	SpoolMemory int
	SpoolDir    string
	// PublishTimeout bounds each publish attempt; PublishAttempts is how
	// many attempts are made when the outcome is unknown. Defaults 5s, 3.
	PublishTimeout  time.Duration
	PublishAttempts int
	// CleanupTimeout bounds the delete of a failed message's object.
	// Default 10s.
	CleanupTimeout time.Duration
	Now            func() time.Time
	Logger         *slog.Logger
}

// DefaultMaxHops is Options.MaxHops's default: Postfix's hopcount_limit.
const DefaultMaxHops = 50

// Ingester accepts messages. It is safe for concurrent use; it copies its
// Options and never changes them.
type Ingester struct {
	o Options
}

// New returns an Ingester.
func New(o Options) (*Ingester, error) {
	if o.Blob == nil || o.JetStream == nil || o.Subject == "" {
		return nil, errors.New("ingest: Blob, JetStream and Subject are required")
	}
	if o.Hostname == "" {
		o.Hostname = "localhost"
	}
	if o.SpoolMemory <= 0 {
		o.SpoolMemory = 1 << 20
	}
	switch {
	case o.MaxHops == 0:
		o.MaxHops = DefaultMaxHops
	case o.MaxHops < 0:
		o.MaxHops = 0 // headerFixer: any
	}
	if o.PublishTimeout <= 0 {
		o.PublishTimeout = 5 * time.Second
	}
	if o.PublishAttempts <= 0 {
		o.PublishAttempts = 3
	}
	if o.CleanupTimeout <= 0 {
		o.CleanupTimeout = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Ingester{o: o}, nil
}

// BlobKey is where a message is stored: msg/<tenant>/<yyyy>/<mm>/<dd>/<id>.
// Every key has the same depth, so no key is ever the "directory" of
// another (package blob's contract); the date spreads listings.
func BlobKey(tenantID, queueID string, t time.Time) (string, error) {
	t = t.UTC()
	key := fmt.Sprintf("msg/%s/%04d/%02d/%02d/%s", tenantID, t.Year(), int(t.Month()), t.Day(), queueID)
	if strings.Contains(tenantID, "/") {
		return "", fmt.Errorf("ingest: tenant id %q: %w", tenantID, blob.ErrInvalidKey)
	}
	if err := blob.ValidKey(key); err != nil {
		return "", fmt.Errorf("ingest: tenant id %q: %w", tenantID, err)
	}
	return key, nil
}

// MaxInlineContent is the largest message whose bytes the queue entry
// carries besides the object (queuev1.QueueEntry.content): nearly every
// e-mail, and well under JetStream's default 1 MB message limit.
const MaxInlineContent = 64 << 10

// maxEntryWithContent: an entry bigger than this with the copy goes
// without it.
const maxEntryWithContent = 512 << 10

// counter hashes and counts what goes to storage, keeping a copy of it
// while it is at most MaxInlineContent long.
type counter struct {
	r    io.Reader
	h    hash.Hash
	n    int64
	keep []byte
}

func (c *counter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	if c.n <= MaxInlineContent {
		c.keep = append(c.keep, p[:n]...)
	} else {
		c.keep = nil
	}
	return n, err
}

// Accept stores and queues the message read from body. It reads body to
// its end unless it fails earlier; callers drain the rest (go-smtp does).
func (in *Ingester) Accept(ctx context.Context, env *Envelope, body io.Reader) (Accepted, error) {
	now := in.o.Now()
	qid := NewQueueID(now)
	key, err := BlobKey(env.TenantID, qid, now)
	if err != nil {
		return Accepted{}, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	log := in.o.Logger.With("queue_id", qid)

	g := newGuard(body, in.o.MaxMessageBytes)
	var msg io.Reader = g
	// Every message goes through the header fixer: it counts the hops.
	var missing func(seen fieldSet) []byte
	if env.AddMissingHeaders {
		missing = func(seen fieldSet) []byte { return in.missingFields(seen, qid, now) }
	}
	var check func(fieldSet) error
	if env.CheckFrom != nil {
		check = func(seen fieldSet) error { return env.CheckFrom(ctx, fromAddresses(seen)) }
	}
	fixer := newHeaderFixer(msg, in.o.MaxHops, missing, check)
	msg = fixer
	// srcErr is the first failure on the client's side of the pipeline:
	// it decides the reply when the store gives up on the reader.
	srcErr := func() error {
		if g.err != nil {
			return g.err
		}
		return fixer.err
	}
	prefix := receivedField(env, in.o.Hostname, qid, now)

	if env.CheckSender && in.o.Authenticator != nil {
		sp := newSpool(in.o.SpoolMemory, in.o.SpoolDir)
		defer sp.Close()
		if _, err := sp.ReadFrom(msg); err != nil {
			if e := srcErr(); e != nil {
				err = e
			}
			return Accepted{}, in.sourceError(err)
		}
		res, err := in.o.Authenticator.Check(ctx, authcheck.CheckInput{
			ClientIP: env.ClientIP, HELO: Clean(env.HELO, 255), MailFrom: env.MailFrom, Message: sp.Reader(),
		})
		if err != nil {
			return Accepted{}, fmt.Errorf("%w: %w", ErrCheck, err)
		}
		if res.Reject {
			return Accepted{}, &RejectedError{Reason: res.RejectReason}
		}
		prefix += res.Header
		msg = sp.Reader()
		if f, ok := in.o.Authenticator.(authcheck.Filter); ok {
			msg = f.Stored(msg)
		}
	}

	c := &counter{r: io.MultiReader(strings.NewReader(prefix), msg), h: sha256.New()}
	_, putErr := in.o.Blob.Put(ctx, key, c)
	if putErr != nil || srcErr() != nil {
		// The object must not stay. A failed Put leaves none by contract;
		// a Put that succeeded although our reader failed cannot happen
		// with a conforming store, but costs one delete to rule out.
		in.deleteObject(log, key, "store failed")
		if e := srcErr(); e != nil {
			return Accepted{}, in.sourceError(e)
		}
		return Accepted{}, fmt.Errorf("%w: put %s: %w", ErrStorage, key, putErr)
	}

	acc := Accepted{QueueID: qid, BlobKey: key, Size: c.n, SHA256: hex.EncodeToString(c.h.Sum(nil))}
	entry := in.entry(env, acc, now)
	if c.keep != nil && int64(len(c.keep)) == c.n {
		entry.Content = c.keep
		if proto.Size(entry) > maxEntryWithContent {
			// Thousands of recipients: the copy must not bring the
			// entry near the stream's message limit (1 MiB).
			entry.Content = nil
		}
	}
	data, err := proto.Marshal(entry)
	if err != nil {
		in.deleteObject(log, key, "marshal failed")
		return Accepted{}, fmt.Errorf("%w: marshal: %w", ErrQueue, err)
	}
	if err := in.publish(ctx, log, key, qid, data); err != nil {
		return Accepted{}, err
	}
	return acc, nil
}

// sourceError classifies a failure to read the message from the client.
func (in *Ingester) sourceError(err error) error {
	var fromErr *FromError
	if errors.Is(err, ErrBareLineEnding) || errors.Is(err, ErrTooBig) || errors.Is(err, ErrTooManyHops) || errors.As(err, &fromErr) {
		return err
	}
	var sizeErr interface{ Temporary() bool }
	if errors.As(err, &sizeErr) {
		// go-smtp's own errors (its size limit) are SMTP replies: keep
		// them so the server sends them as they are.
		return err
	}
	return fmt.Errorf("%w: %w", ErrSource, err)
}

func (in *Ingester) missingFields(seen fieldSet, qid string, now time.Time) []byte {
	var b strings.Builder
	if !seen.messageID {
		// RFC 5322 §3.6.4: unique left part, our host as right part.
		fmt.Fprintf(&b, "Message-ID: <%s@%s>\r\n", qid, Clean(in.o.Hostname, 255))
	}
	if !seen.date {
		fmt.Fprintf(&b, "Date: %s\r\n", now.Format(time.RFC1123Z))
	}
	return []byte(b.String())
}

func (in *Ingester) entry(env *Envelope, acc Accepted, now time.Time) *queuev1.QueueEntry {
	e := &queuev1.QueueEntry{
		QueueId:    acc.QueueID,
		TenantId:   env.TenantID,
		BlobKey:    acc.BlobKey,
		Size:       acc.Size,
		Sha256:     acc.SHA256,
		MailFrom:   env.MailFrom,
		ReceivedAt: timestamppb.New(now),
		DsnRet:     env.DSNReturn,
		DsnEnvid:   env.EnvID,
		Body:       env.Body,
		Smtputf8:   env.SMTPUTF8,
		Client: &queuev1.Client{
			Helo:        Clean(env.HELO, 255),
			AuthAccount: env.AuthAccount,
			Listener:    env.Listener,
			Tls:         env.TLS,
		},
	}
	if env.ClientIP.IsValid() {
		e.Client.Ip = env.ClientIP.Unmap().String()
	}
	for _, r := range env.Recipients {
		e.Recipients = append(e.Recipients, &queuev1.Recipient{
			Address: r.Address, Notify: r.Notify, OrcptType: r.ORCPTType, Orcpt: r.ORCPT, Local: r.Local,
			TenantId: r.TenantID, AccountIds: r.AccountIDs,
		})
	}
	return e
}

// publish sends the entry, retrying with the same id while the outcome is
// unknown; see the package comment for when the object is deleted.
func (in *Ingester) publish(ctx context.Context, log *slog.Logger, key, qid string, data []byte) error {
	var lastErr error
	for attempt := 0; attempt < in.o.PublishAttempts; attempt++ {
		if in.o.Conn != nil && !in.o.Conn.IsConnected() {
			// Checked before each attempt: a publish made while
			// disconnected would wait in the client's reconnect buffer
			// and could reach the stream after we gave up.
			if attempt == 0 || lastErr == nil || certainlyNotStored(lastErr) {
				in.deleteObject(log, key, "nats not connected")
			} else {
				log.Warn("queue entry state unknown; keeping its object", "blob_key", key, "err", lastErr)
			}
			return fmt.Errorf("%w: not connected to NATS (%s)", ErrQueue, in.o.Conn.Status())
		}
		pctx, cancel := context.WithTimeout(ctx, in.o.PublishTimeout)
		_, err := natsx.PublishDedup(pctx, in.o.JetStream, in.o.Subject, qid, data)
		cancel()
		if err == nil {
			return nil
		}
		lastErr = err
		if certainlyNotStored(err) {
			in.deleteObject(log, key, "queue refused the entry")
			return fmt.Errorf("%w: %w", ErrQueue, err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	log.Warn("queue entry state unknown after retries; keeping its object for the collector", "blob_key", key, "err", lastErr)
	return fmt.Errorf("%w: %w", ErrQueue, lastErr)
}

// certainlyNotStored reports whether a publish error proves the stream did
// not store the entry: nobody was listening on the subject, or the stream
// answered with an error.
func certainlyNotStored(err error) bool {
	if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr)
}

func (in *Ingester) deleteObject(log *slog.Logger, key, why string) {
	// A fresh context: the session's may be what just ended.
	ctx, cancel := context.WithTimeout(context.Background(), in.o.CleanupTimeout)
	defer cancel()
	if err := in.o.Blob.Delete(ctx, key); err != nil {
		log.Warn("could not delete the object of a refused message", "blob_key", key, "why", why, "err", err)
	}
}
