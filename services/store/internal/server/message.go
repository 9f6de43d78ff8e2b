package server

import (
	"context"
	"slices"

	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/petrel-mail/petrel/services/store/internal/mimeparse"
	"github.com/petrel-mail/petrel/services/store/internal/repo"
)

// fetchBatch is how many messages one FetchMessagesResponse carries: big
// enough that FLAGS of 100,000 messages is 200 stream messages, small
// enough that one response stays well under the 4 MiB gRPC default even
// with envelopes and structures.
const fetchBatch = 500

// MessageServer implements storev1.MessageServiceServer. Search is added by
// search.go; until then the embedded Unimplemented server answers it.
type MessageServer struct {
	storev1.UnimplementedMessageServiceServer
	d Deps
}

// NewMessageServer returns the message service.
func NewMessageServer(d Deps) (*MessageServer, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return &MessageServer{d: d.withDefaults()}, nil
}

func (s *MessageServer) fail(ctx context.Context, op string, err error) error {
	return toStatus(ctx, s.d.Logger, op, err)
}

func (s *MessageServer) event(ctx context.Context, sc repo.Scope, kind storev1.MailboxEventKind, mb repo.Mailbox, uids []uint32, modseq uint64, uidNext uint32) {
	s.d.Events.Publish(ctx, &storev1.MailboxEvent{
		TenantId: idString(sc.TenantID), AccountId: idString(sc.AccountID),
		MailboxId: idString(mb.ID), Mailbox: mb.Name, Kind: kind,
		Uids: uids, Modseq: modseq, UidNext: uidNext,
	})
}

var fetchFieldBits = map[storev1.FetchField]repo.FetchFields{
	storev1.FetchField_FETCH_FIELD_FLAGS:         repo.FetchFlags,
	storev1.FetchField_FETCH_FIELD_INTERNAL_DATE: repo.FetchInternalDate,
	storev1.FetchField_FETCH_FIELD_SIZE:          repo.FetchSize,
	storev1.FetchField_FETCH_FIELD_ENVELOPE:      repo.FetchEnvelope,
	storev1.FetchField_FETCH_FIELD_BODYSTRUCTURE: repo.FetchBodyStructure,
	storev1.FetchField_FETCH_FIELD_BODY:          repo.FetchBodyStructure,
	storev1.FetchField_FETCH_FIELD_PARTS:         repo.FetchParts,
	storev1.FetchField_FETCH_FIELD_HEADER:        repo.FetchHeader,
}

// FetchMessages streams the metadata of a UID set in batches (FETCH,
// RFC 9051 §6.4.5; CHANGEDSINCE, RFC 7162 §3.1.4). Only metadata in
// PostgreSQL is read; bodies come from GetBody.
func (s *MessageServer) FetchMessages(req *storev1.FetchMessagesRequest, stream grpc.ServerStreamingServer[storev1.FetchMessagesResponse]) error {
	ctx := stream.Context()
	sc, err := callerScope(ctx)
	if err != nil {
		return err
	}
	mb, err := lookupMailbox(ctx, s.d.Repo, sc, req.GetMailbox())
	if err != nil {
		return s.fail(ctx, "fetch", err)
	}
	var fields repo.FetchFields
	want := map[storev1.FetchField]bool{}
	for _, f := range req.GetFields() {
		bit, ok := fetchFieldBits[f]
		if !ok {
			return s.fail(ctx, "fetch", invalid("unknown fetch field"))
		}
		fields |= bit
		want[f] = true
	}
	batch := &storev1.FetchMessagesResponse{}
	err = s.d.Repo.FetchMeta(ctx, sc, mb.ID, uidSet(req.GetUids()), fields, req.GetChangedSince(), func(m *repo.MessageMeta) error {
		batch.Messages = append(batch.Messages, messageMeta(m, want))
		if len(batch.Messages) < fetchBatch {
			return nil
		}
		err := stream.Send(batch)
		batch = &storev1.FetchMessagesResponse{}
		return err
	})
	if err == nil && len(batch.Messages) > 0 {
		err = stream.Send(batch)
	}
	if err != nil {
		return s.fail(ctx, "fetch", err)
	}
	return nil
}

func messageMeta(m *repo.MessageMeta, want map[storev1.FetchField]bool) *storev1.MessageMeta {
	out := &storev1.MessageMeta{Uid: m.UID, Modseq: m.ModSeq}
	if want[storev1.FetchField_FETCH_FIELD_FLAGS] {
		out.Flags = formatFlags(m.Flags)
	}
	if want[storev1.FetchField_FETCH_FIELD_INTERNAL_DATE] {
		out.InternalDate = timestamppb.New(m.InternalDate)
	}
	if want[storev1.FetchField_FETCH_FIELD_SIZE] {
		out.Size = m.Size
	}
	if want[storev1.FetchField_FETCH_FIELD_ENVELOPE] {
		out.Envelope = m.Envelope
	}
	if want[storev1.FetchField_FETCH_FIELD_BODYSTRUCTURE] {
		out.BodyStructure = m.BodyStructure
	}
	if want[storev1.FetchField_FETCH_FIELD_BODY] {
		out.Body = m.Body
	}
	if want[storev1.FetchField_FETCH_FIELD_PARTS] {
		out.Parts = make([]*storev1.MessagePart, len(m.Parts))
		for i, p := range m.Parts {
			out.Parts[i] = messagePart(p)
		}
	}
	if want[storev1.FetchField_FETCH_FIELD_HEADER] {
		out.Header = m.Header
	}
	return out
}

func messagePart(p mimeparse.Part) *storev1.MessagePart {
	return &storev1.MessagePart{
		Path: p.Path, HeaderOffset: p.HeaderOffset, HeaderLen: p.HeaderLen,
		BodyOffset: p.BodyOffset, BodyLen: p.BodyLen,
		ContentType: p.ContentType, Encoding: p.Encoding, Charset: p.Charset, Lines: p.Lines,
	}
}

func flagChanges(cs []repo.FlagChange) []*storev1.FlagChange {
	out := make([]*storev1.FlagChange, len(cs))
	for i, c := range cs {
		out[i] = &storev1.FlagChange{Uid: c.UID, Modseq: c.ModSeq, Flags: formatFlags(c.Flags)}
	}
	return out
}

// StoreFlags changes flags in one set-based update (STORE, RFC 9051
// §6.4.6; UNCHANGEDSINCE, RFC 7162 §3.1.3).
func (s *MessageServer) StoreFlags(ctx context.Context, req *storev1.StoreFlagsRequest) (*storev1.StoreFlagsResponse, error) {
	sc, err := callerScope(ctx)
	if err != nil {
		return nil, err
	}
	var op repo.FlagOp
	switch req.GetOp() {
	case storev1.FlagOp_FLAG_OP_ADD:
		op = repo.FlagsAdd
	case storev1.FlagOp_FLAG_OP_REMOVE:
		op = repo.FlagsRemove
	case storev1.FlagOp_FLAG_OP_REPLACE:
		op = repo.FlagsReplace
	default:
		return nil, s.fail(ctx, "store", invalid("flag operation is required"))
	}
	flags, err := parseFlags(req.GetFlags())
	if err != nil {
		return nil, s.fail(ctx, "store", err)
	}
	mb, err := lookupMailbox(ctx, s.d.Repo, sc, req.GetMailbox())
	if err != nil {
		return nil, s.fail(ctx, "store", err)
	}
	res, err := s.d.Repo.StoreFlags(ctx, sc, mb.ID, uidSet(req.GetUids()), op, flags, req.GetUnchangedSince())
	if err != nil {
		return nil, s.fail(ctx, "store", err)
	}
	resp := &storev1.StoreFlagsResponse{
		Changed: flagChanges(res.Changed), ModifiedUids: uidSetOf(res.Modified), HighestModseq: mb.HighestModSeq,
	}
	if len(res.Changed) > 0 {
		uids := make([]uint32, len(res.Changed))
		for i, c := range res.Changed {
			uids[i] = c.UID
			resp.HighestModseq = max(resp.HighestModseq, c.ModSeq)
		}
		s.event(ctx, sc, storev1.MailboxEventKind_MAILBOX_EVENT_KIND_FLAGS, mb, uids, resp.HighestModseq, 0)
	}
	return resp, nil
}

// copyOrMove serves COPY and MOVE (RFC 4315 COPYUID, RFC 6851).
func (s *MessageServer) copyOrMove(ctx context.Context, op, src, dst string, set *storev1.UIDSet, move bool) (repo.CopyResult, error) {
	sc, err := callerScope(ctx)
	if err != nil {
		return repo.CopyResult{}, err
	}
	from, err := lookupMailbox(ctx, s.d.Repo, sc, src)
	if err != nil {
		return repo.CopyResult{}, s.fail(ctx, op, err)
	}
	to, err := lookupMailbox(ctx, s.d.Repo, sc, dst)
	if err != nil {
		return repo.CopyResult{}, s.fail(ctx, op, err)
	}
	var res repo.CopyResult
	if move {
		res, err = s.d.Repo.Move(ctx, sc, from.ID, uidSet(set), to.ID)
	} else {
		res, err = s.d.Repo.Copy(ctx, sc, from.ID, uidSet(set), to.ID)
	}
	if err != nil {
		return res, s.fail(ctx, op, err)
	}
	if len(res.Map) == 0 {
		return res, nil
	}
	srcUIDs, dstUIDs := pairs(res.Map)
	// The destination's new MODSEQ and UIDNEXT are not in CopyResult; the
	// event is a hint, so read them back instead of widening the contract.
	if after, err := s.d.Repo.MailboxByID(ctx, sc, to.ID); err == nil {
		to = after
	}
	s.event(ctx, sc, storev1.MailboxEventKind_MAILBOX_EVENT_KIND_APPEND, to, dstUIDs, to.HighestModSeq, to.UIDNext)
	if move {
		s.event(ctx, sc, storev1.MailboxEventKind_MAILBOX_EVENT_KIND_EXPUNGE, from, srcUIDs, res.SrcModSeq, 0)
	}
	return res, nil
}

func pairs(m []repo.UIDPair) (src, dst []uint32) {
	src, dst = make([]uint32, len(m)), make([]uint32, len(m))
	for i, p := range m {
		src[i], dst[i] = p.Src, p.Dst
	}
	return src, dst
}

// CopyMessages copies a UID set to another mailbox in one transaction.
func (s *MessageServer) CopyMessages(ctx context.Context, req *storev1.CopyMessagesRequest) (*storev1.CopyMessagesResponse, error) {
	res, err := s.copyOrMove(ctx, "copy", req.GetMailbox(), req.GetDestination(), req.GetUids(), false)
	if err != nil {
		return nil, err
	}
	src, dst := pairs(res.Map)
	return &storev1.CopyMessagesResponse{DestinationUidValidity: res.DstUIDValidity, SourceUids: src, DestinationUids: dst}, nil
}

// MoveMessages moves a UID set to another mailbox in one transaction.
func (s *MessageServer) MoveMessages(ctx context.Context, req *storev1.MoveMessagesRequest) (*storev1.MoveMessagesResponse, error) {
	res, err := s.copyOrMove(ctx, "move", req.GetMailbox(), req.GetDestination(), req.GetUids(), true)
	if err != nil {
		return nil, err
	}
	src, dst := pairs(res.Map)
	return &storev1.MoveMessagesResponse{DestinationUidValidity: res.DstUIDValidity, SourceUids: src, DestinationUids: dst}, nil
}

// Expunge removes \Deleted messages (EXPUNGE, UID EXPUNGE RFC 4315 §2.1).
func (s *MessageServer) Expunge(ctx context.Context, req *storev1.ExpungeRequest) (*storev1.ExpungeResponse, error) {
	sc, err := callerScope(ctx)
	if err != nil {
		return nil, err
	}
	mb, err := lookupMailbox(ctx, s.d.Repo, sc, req.GetMailbox())
	if err != nil {
		return nil, s.fail(ctx, "expunge", err)
	}
	res, err := s.d.Repo.Expunge(ctx, sc, mb.ID, uidSet(req.GetUids()))
	if err != nil {
		return nil, s.fail(ctx, "expunge", err)
	}
	modseq := max(res.ModSeq, mb.HighestModSeq)
	if len(res.UIDs) > 0 {
		s.event(ctx, sc, storev1.MailboxEventKind_MAILBOX_EVENT_KIND_EXPUNGE, mb, res.UIDs, res.ModSeq, 0)
	}
	return &storev1.ExpungeResponse{Uids: res.UIDs, HighestModseq: modseq}, nil
}

// ChangesSince answers CHANGEDSINCE and QRESYNC (RFC 7162 §3.2.5). When the
// tombstones were forgotten, every UID below UIDNEXT that is not in the
// mailbox is reported vanished, which §3.2.10 allows.
func (s *MessageServer) ChangesSince(ctx context.Context, req *storev1.ChangesSinceRequest) (*storev1.ChangesSinceResponse, error) {
	sc, err := callerScope(ctx)
	if err != nil {
		return nil, err
	}
	mb, err := lookupMailbox(ctx, s.d.Repo, sc, req.GetMailbox())
	if err != nil {
		return nil, s.fail(ctx, "changes since", err)
	}
	ch, err := s.d.Repo.ChangesSince(ctx, sc, mb.ID, req.GetModseq())
	if err != nil {
		return nil, s.fail(ctx, "changes since", err)
	}
	known := repoSet(uidSet(req.GetUids()))
	resp := &storev1.ChangesSinceResponse{HighestModseq: ch.HighestModSeq, VanishedIncomplete: ch.TooOld}
	changed := ch.Changed[:0]
	for _, c := range ch.Changed {
		if known.contains(c.UID) {
			changed = append(changed, c)
		}
	}
	resp.Changed = flagChanges(changed)
	if !req.GetIncludeVanished() {
		return resp, nil
	}
	vanished := slices.DeleteFunc(slices.Clone(ch.Vanished), func(u uint32) bool { return !known.contains(u) })
	if ch.TooOld {
		present, err := s.d.Repo.UIDs(ctx, sc, mb.ID)
		if err != nil {
			return nil, s.fail(ctx, "changes since", err)
		}
		resp.Vanished = complement(present, mb.UIDNext, known)
		return resp, nil
	}
	resp.Vanished = uidSetOf(vanished)
	return resp, nil
}

// complement returns the UIDs in [1, uidNext) that are not in present (and,
// when known is not empty, are in known), as ranges.
func complement(present []repo.UIDRange, uidNext uint32, known repoSet) *storev1.UIDSet {
	var gaps []repo.UIDRange
	next := uint32(1)
	for _, r := range present {
		if r.Start > next {
			gaps = append(gaps, repo.UIDRange{Start: next, Stop: r.Start - 1})
		}
		next = r.Stop + 1
	}
	if uidNext > next {
		gaps = append(gaps, repo.UIDRange{Start: next, Stop: uidNext - 1})
	}
	if len(known) > 0 {
		var cut []repo.UIDRange
		for _, g := range gaps {
			for _, k := range known {
				lo, hi := max(g.Start, k.Start), min(g.Stop, k.Stop)
				if lo <= hi {
					cut = append(cut, repo.UIDRange{Start: lo, Stop: hi})
				}
			}
		}
		slices.SortFunc(cut, func(a, b repo.UIDRange) int { return int(int64(a.Start) - int64(b.Start)) })
		gaps = cut
	}
	return rangesOf(gaps)
}

// GetQuota reports usage and limits (RFC 9208 STORAGE and MESSAGE).
func (s *MessageServer) GetQuota(ctx context.Context, _ *storev1.GetQuotaRequest) (*storev1.GetQuotaResponse, error) {
	sc, err := callerScope(ctx)
	if err != nil {
		return nil, err
	}
	q, err := s.d.Repo.GetQuota(ctx, sc)
	if err != nil {
		return nil, s.fail(ctx, "get quota", err)
	}
	return &storev1.GetQuotaResponse{
		BytesUsed: q.UsedBytes, BytesLimit: q.LimitBytes,
		MessagesUsed: q.UsedMessages, MessagesLimit: q.LimitMessages,
	}, nil
}
