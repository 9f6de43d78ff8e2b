// Package admin serves the queue administration API
// (petrel.delivery.v1.QueueAdminService) over the JetStream streams that
// hold the queue (see package queue): ACTIVE entries in PETREL_QUEUE,
// DEFERRED items in PETREL_DELIVERY_DEFERRED. Listing walks the streams
// with message gets by sequence (no consumer: a work-queue stream allows
// only the delivery consumer), so it costs one request per queued entry;
// that suits an operator's command, not a dashboard polling every second
// (use CountQueueEntries, which reads the stream counters).
//
// Every call needs an operator token, checked by a Verifier (the store,
// which signs tokens; see StoreVerifier).
//
// The commands follow Postfix's: retry now is `postqueue -i`, delete is
// `postsuper -d` (no bounce). Deleting an entry also deletes its message
// object when the store cannot reference it (a DEFERRED item that no local
// delivery touched); for an ACTIVE entry the object is left to the store's
// collector or, if the store never saw it, leaked, because an attempt that
// was interrupted may have delivered it locally.
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	deliveryv1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/delivery/v1"
	queuev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/queue/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/petrel-mail/petrel/platform/blob"
	"github.com/petrel-mail/petrel/platform/natsx"
	"github.com/petrel-mail/petrel/services/delivery/internal/queue"
)

// Options configure a Server. JS and Verifier are required.
type Options struct {
	JS       jetstream.JetStream
	NATS     natsx.Options
	Blobs    blob.Store
	Verifier Verifier
	// Holds releases the store's hold on a deleted entry's object.
	Holds interface {
		Release(ctx context.Context, blobKey, queueID string) error
	}
	// Resume, if set, ends the suspension of the destinations of a
	// retried entry's unfinished recipients (their domains), so that the
	// retry tries them.
	Resume func(ctx context.Context, domains []string)
	Logger *slog.Logger
}

// Server implements QueueAdminService.
type Server struct {
	deliveryv1.UnimplementedQueueAdminServiceServer
	o   Options
	log *slog.Logger
}

var _ deliveryv1.QueueAdminServiceServer = (*Server)(nil)

// New returns a Server.
func New(o Options) (*Server, error) {
	if o.JS == nil || o.Verifier == nil {
		return nil, errors.New("admin: JS and Verifier are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{o: o, log: o.Logger.With("component", "queue-admin")}, nil
}

func (s *Server) authorize(ctx context.Context) error {
	tok, ok := bearer(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "an operator token is required")
	}
	return s.o.Verifier.VerifyOperator(ctx, tok)
}

// found is one queued entry and where it is.
type found struct {
	state deliveryv1.QueueState
	seq   uint64
	item  *deliveryv1.QueueItem
}

func (s *Server) streamOf(state deliveryv1.QueueState) (name, subject string) {
	if state == deliveryv1.QueueState_QUEUE_STATE_DEFERRED {
		return queue.DeferredStream(s.o.NATS), queue.DeferredSubjectOf(s.o.NATS)
	}
	return s.o.NATS.QueueStream(), s.o.NATS.QueueSubjects()
}

// scan calls fn for each message of the state's stream from sequence from
// on, until fn returns false or the stream ends.
func (s *Server) scan(ctx context.Context, state deliveryv1.QueueState, from uint64, fn func(found) bool) error {
	name, subject := s.streamOf(state)
	st, err := s.o.JS.Stream(ctx, name)
	if err != nil {
		return unavailable(s.log, "open stream", err)
	}
	seq := max(from, 1)
	for {
		m, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return unavailable(s.log, "read stream", err)
		}
		seq = m.Sequence + 1
		item, err := decodeItem(m.Data, state)
		if err != nil {
			s.log.Warn("undecodable queue message", "stream", name, "seq", m.Sequence, "error", err)
			continue
		}
		if !fn(found{state: state, seq: m.Sequence, item: item}) {
			return nil
		}
	}
}

func decodeItem(data []byte, state deliveryv1.QueueState) (*deliveryv1.QueueItem, error) {
	if state == deliveryv1.QueueState_QUEUE_STATE_DEFERRED {
		item := &deliveryv1.QueueItem{}
		if err := proto.Unmarshal(data, item); err != nil {
			return nil, err
		}
		item.State = state
		return item, nil
	}
	entry := &queuev1.QueueEntry{}
	if err := proto.Unmarshal(data, entry); err != nil {
		return nil, err
	}
	return queue.NewItem(entry), nil
}

func unavailable(log *slog.Logger, what string, err error) error {
	log.Warn("queue admin: "+what, "error", err)
	return status.Error(codes.Unavailable, "queue unavailable")
}

var states = []deliveryv1.QueueState{deliveryv1.QueueState_QUEUE_STATE_ACTIVE, deliveryv1.QueueState_QUEUE_STATE_DEFERRED}

// find returns every stored copy of the entry (normally one).
func (s *Server) find(ctx context.Context, queueID string) ([]found, error) {
	if queueID == "" {
		return nil, status.Error(codes.InvalidArgument, "queue_id is required")
	}
	var all []found
	for _, st := range states {
		err := s.scan(ctx, st, 1, func(f found) bool {
			if f.item.GetEntry().GetQueueId() == queueID {
				all = append(all, f)
			}
			return true
		})
		if err != nil {
			return nil, err
		}
	}
	if len(all) == 0 {
		return nil, status.Error(codes.NotFound, "no such queue entry")
	}
	return all, nil
}

func matches(req *deliveryv1.ListQueueEntriesRequest, item *deliveryv1.QueueItem) bool {
	e := item.GetEntry()
	if snd := req.GetSender(); snd != "" {
		if snd == "<>" {
			if e.GetMailFrom() != "" {
				return false
			}
		} else if !strings.EqualFold(strings.Trim(snd, "<>"), e.GetMailFrom()) {
			return false
		}
	}
	if dom := strings.TrimPrefix(req.GetRecipientDomain(), "@"); dom != "" {
		for _, r := range e.GetRecipients() {
			if d, ok := domainOf(r.GetAddress()); ok && strings.EqualFold(d, dom) {
				return true
			}
		}
		return false
	}
	return true
}

// Page tokens are "<a|d><sequence>": where to go on.
func parsePageToken(tok string) (deliveryv1.QueueState, uint64, error) {
	if tok == "" {
		return deliveryv1.QueueState_QUEUE_STATE_ACTIVE, 1, nil
	}
	seq, err := strconv.ParseUint(tok[1:], 10, 64)
	if err != nil || seq == 0 {
		return 0, 0, status.Error(codes.InvalidArgument, "bad page token")
	}
	switch tok[0] {
	case 'a':
		return deliveryv1.QueueState_QUEUE_STATE_ACTIVE, seq, nil
	case 'd':
		return deliveryv1.QueueState_QUEUE_STATE_DEFERRED, seq, nil
	}
	return 0, 0, status.Error(codes.InvalidArgument, "bad page token")
}

func pageToken(state deliveryv1.QueueState, seq uint64) string {
	if state == deliveryv1.QueueState_QUEUE_STATE_DEFERRED {
		return fmt.Sprintf("d%d", seq)
	}
	return fmt.Sprintf("a%d", seq)
}

// ListQueueEntries implements QueueAdminService.
func (s *Server) ListQueueEntries(ctx context.Context, req *deliveryv1.ListQueueEntriesRequest) (*deliveryv1.ListQueueEntriesResponse, error) {
	if err := s.authorize(ctx); err != nil {
		return nil, err
	}
	size := int(req.GetPageSize())
	switch {
	case size <= 0:
		size = 100
	case size > 1000:
		size = 1000
	}
	startState, from, err := parsePageToken(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	resp := &deliveryv1.ListQueueEntriesResponse{}
	for _, st := range states {
		if st < startState || (req.GetState() != deliveryv1.QueueState_QUEUE_STATE_UNSPECIFIED && req.GetState() != st) {
			continue
		}
		start := uint64(1)
		if st == startState {
			start = from
		}
		full := false
		err := s.scan(ctx, st, start, func(f found) bool {
			if len(resp.Items) == size {
				// One more matching entry exists: this page is full.
				resp.NextPageToken = pageToken(st, f.seq)
				full = true
				return false
			}
			if matches(req, f.item) {
				resp.Items = append(resp.Items, f.item)
			}
			return true
		})
		if err != nil {
			return nil, err
		}
		if full {
			break
		}
	}
	return resp, nil
}

// GetQueueEntry implements QueueAdminService.
func (s *Server) GetQueueEntry(ctx context.Context, req *deliveryv1.GetQueueEntryRequest) (*deliveryv1.GetQueueEntryResponse, error) {
	if err := s.authorize(ctx); err != nil {
		return nil, err
	}
	all, err := s.find(ctx, req.GetQueueId())
	if err != nil {
		return nil, err
	}
	// The newest copy is the current state.
	return &deliveryv1.GetQueueEntryResponse{Item: all[len(all)-1].item}, nil
}

// RetryQueueEntry implements QueueAdminService.
func (s *Server) RetryQueueEntry(ctx context.Context, req *deliveryv1.RetryQueueEntryRequest) (*deliveryv1.RetryQueueEntryResponse, error) {
	if err := s.authorize(ctx); err != nil {
		return nil, err
	}
	all, err := s.find(ctx, req.GetQueueId())
	if err != nil {
		return nil, err
	}
	for _, f := range all {
		if f.state != deliveryv1.QueueState_QUEUE_STATE_DEFERRED {
			continue
		}
		// Publish the due copy before removing the waiting one, so that a
		// failure in between leaves two copies (harmless: the store
		// deduplicates) rather than none.
		item := proto.Clone(f.item).(*deliveryv1.QueueItem)
		item.NextAttemptAt = nil
		data, err := proto.Marshal(item)
		if err != nil {
			return nil, status.Error(codes.Internal, "encode queue item")
		}
		id := fmt.Sprintf("%s.%d.retry.%d", item.GetEntry().GetQueueId(), item.GetAttempts(), f.seq)
		if _, err := natsx.PublishDedup(ctx, s.o.JS, queue.DeferredSubjectOf(s.o.NATS), id, data); err != nil {
			return nil, unavailable(s.log, "publish retry", err)
		}
		if err := s.deleteMsg(ctx, f); err != nil {
			return nil, err
		}
		if s.o.Resume != nil {
			s.o.Resume(ctx, unfinishedDomains(item))
		}
		s.log.Info("queue entry retried by an operator", "queue_id", req.GetQueueId())
	}
	return &deliveryv1.RetryQueueEntryResponse{}, nil
}

func (s *Server) deleteMsg(ctx context.Context, f found) error {
	name, _ := s.streamOf(f.state)
	st, err := s.o.JS.Stream(ctx, name)
	if err != nil {
		return unavailable(s.log, "open stream", err)
	}
	if err := st.DeleteMsg(ctx, f.seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return unavailable(s.log, "delete message", err)
	}
	return nil
}

// DeleteQueueEntry implements QueueAdminService.
func (s *Server) DeleteQueueEntry(ctx context.Context, req *deliveryv1.DeleteQueueEntryRequest) (*deliveryv1.DeleteQueueEntryResponse, error) {
	if err := s.authorize(ctx); err != nil {
		return nil, err
	}
	all, err := s.find(ctx, req.GetQueueId())
	if err != nil {
		return nil, err
	}
	mayReference, held := false, false
	for _, f := range all {
		held = held || f.item.GetStoreHold()
		if f.state != deliveryv1.QueueState_QUEUE_STATE_DEFERRED || f.item.GetStoreMayReference() {
			mayReference = true
		}
		if err := s.deleteMsg(ctx, f); err != nil {
			return nil, err
		}
	}
	if key := all[0].item.GetEntry().GetBlobKey(); held && s.o.Holds != nil && key != "" {
		if err := s.o.Holds.Release(ctx, key, req.GetQueueId()); err != nil {
			s.log.Warn("release the message object of a deleted entry", "key", key, "error", err)
		}
	}
	if key := all[0].item.GetEntry().GetBlobKey(); !mayReference && s.o.Blobs != nil && key != "" {
		if err := s.o.Blobs.Delete(ctx, key); err != nil {
			s.log.Warn("delete the message object of a deleted entry", "key", key, "error", err)
		}
	}
	s.log.Info("queue entry deleted by an operator", "queue_id", req.GetQueueId())
	return &deliveryv1.DeleteQueueEntryResponse{}, nil
}

// CountQueueEntries implements QueueAdminService.
func (s *Server) CountQueueEntries(ctx context.Context, _ *deliveryv1.CountQueueEntriesRequest) (*deliveryv1.CountQueueEntriesResponse, error) {
	if err := s.authorize(ctx); err != nil {
		return nil, err
	}
	var n [2]int64
	for i, st := range states {
		name, _ := s.streamOf(st)
		str, err := s.o.JS.Stream(ctx, name)
		if err != nil {
			return nil, unavailable(s.log, "open stream", err)
		}
		info, err := str.Info(ctx)
		if err != nil {
			return nil, unavailable(s.log, "stream info", err)
		}
		n[i] = int64(info.State.Msgs)
	}
	return &deliveryv1.CountQueueEntriesResponse{Active: n[0], Deferred: n[1]}, nil
}

// unfinishedDomains are the domains of item's recipients without a final
// outcome, each once.
func unfinishedDomains(item *deliveryv1.QueueItem) []string {
	var out []string
	for _, r := range item.GetRecipients() {
		switch r.GetOutcome() {
		case deliveryv1.RecipientOutcome_RECIPIENT_OUTCOME_DELIVERED, deliveryv1.RecipientOutcome_RECIPIENT_OUTCOME_BOUNCED:
			continue
		}
		if d, ok := domainOf(r.GetRecipient().GetAddress()); ok {
			if d = strings.ToLower(d); !slices.Contains(out, d) {
				out = append(out, d)
			}
		}
	}
	return out
}

// domainOf is the domain of an address (after its last '@').
func domainOf(addr string) (string, bool) {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return "", false
	}
	return addr[at+1:], true
}
