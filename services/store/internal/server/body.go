package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/petrel-mail/petrel/platform/blob"
	"github.com/petrel-mail/petrel/services/store/internal/mimeparse"
	"github.com/petrel-mail/petrel/services/store/internal/repo"
)

// bodyChunk is the size of one GetBody response.
const bodyChunk = 64 << 10

// objectKey names a new object the way smtp names the ones it writes
// (msg/<tenant>/<yyyy>/<mm>/<dd>/<id>): every key in the bucket has the
// same number of segments, which MinIO needs, and an "a-" id cannot
// collide with a queue id.
func objectKey(tenant int64, now time.Time) (string, error) {
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", fmt.Errorf("object key: %w", err)
	}
	now = now.UTC()
	return fmt.Sprintf("msg/%d/%04d/%02d/%02d/a-%s", tenant, now.Year(), int(now.Month()), now.Day(), hex.EncodeToString(id[:])), nil
}

// errSizeMismatch: the chunks did not add up to the declared size.
var errSizeMismatch = invalid("message size differs from the declared size")

// AppendMessage stores a new message (APPEND, RFC 9051 §6.3.12). The
// chunks are streamed into object storage through a pipe and parsed in the
// same pass (a tee into a second pipe), so memory stays bounded by the
// chunk and part sizes whatever the message size. Only when both have
// finished does the short transaction run: CreateObject, then Append. On
// any failure the object is deleted (its row, if written, is unreferenced
// and the collector removes it).
func (s *MessageServer) AppendMessage(stream grpc.ClientStreamingServer[storev1.AppendMessageRequest, storev1.AppendMessageResponse]) error {
	ctx := stream.Context()
	sc, err := callerScope(ctx)
	if err != nil {
		return err
	}
	first, err := stream.Recv()
	if err != nil {
		return s.fail(ctx, "append", err)
	}
	hdr := first.GetHeader()
	if hdr == nil {
		return s.fail(ctx, "append", invalid("the first request must carry the header"))
	}
	switch {
	case hdr.GetSize() <= 0:
		return s.fail(ctx, "append", invalid("declared size must be positive"))
	case hdr.GetSize() > s.d.MaxMessageSize:
		return s.fail(ctx, "append", errTooBig)
	}
	flags, err := parseFlags(hdr.GetFlags())
	if err != nil {
		return s.fail(ctx, "append", err)
	}
	mb, err := lookupMailbox(ctx, s.d.Repo, sc, hdr.GetMailbox())
	if err != nil {
		return s.fail(ctx, "append", err)
	}
	if mb.NoSelect {
		return s.fail(ctx, "append", repo.ErrNoSelect)
	}
	// Refuse before storing a byte when the declared size cannot fit; the
	// Append below enforces the limit for real, atomically.
	if q, err := s.d.Repo.GetQuota(ctx, sc); err != nil {
		return s.fail(ctx, "append", err)
	} else if q.LimitBytes > 0 && q.UsedBytes+hdr.GetSize() > q.LimitBytes || q.LimitMessages > 0 && q.UsedMessages+1 > q.LimitMessages {
		return s.fail(ctx, "append", repo.ErrOverQuota)
	}
	key, err := objectKey(sc.TenantID, s.d.Now())
	if err != nil {
		return s.fail(ctx, "append", err)
	}
	parsed, err := s.storeStream(ctx, key, hdr.GetSize(), stream.Recv)
	if err != nil {
		return s.fail(ctx, "append", err)
	}
	date := s.d.Now()
	if hdr.GetInternalDate() != nil {
		date = hdr.GetInternalDate().AsTime()
	}
	res, err := s.link(ctx, sc, mb.ID, key, parsed, flags, date)
	if err != nil {
		return s.fail(ctx, "append", err)
	}
	s.event(ctx, sc, storev1.MailboxEventKind_MAILBOX_EVENT_KIND_APPEND, mb, []uint32{res.UID}, res.ModSeq, res.UID+1)
	return stream.SendAndClose(&storev1.AppendMessageResponse{UidValidity: res.UIDValidity, Uid: res.UID})
}

// link records the object and adds it to the mailbox; on failure it
// removes the bytes.
func (s *MessageServer) link(ctx context.Context, sc repo.Scope, mailboxID int64, key string, parsed *mimeparse.Parsed, flags repo.Flags, date time.Time) (repo.AppendResult, error) {
	objectID, err := s.d.Repo.CreateObject(ctx, sc.TenantID, key, parsed)
	if err == nil {
		var res repo.AppendResult
		if res, err = s.d.Repo.Append(ctx, sc, mailboxID, repo.AppendRequest{ObjectID: objectID, Flags: flags, InternalDate: date}); err == nil {
			return res, nil
		}
	}
	s.deleteObject(key)
	return repo.AppendResult{}, err
}

// deleteObject removes an object nothing refers to, on a context of its
// own because the request's may be what failed.
func (s *MessageServer) deleteObject(key string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.d.Blobs.Delete(ctx, key); err != nil {
		// The collector deletes it after the grace period if its row
		// was written; otherwise it is an orphan that a bucket listing
		// against the objects table finds.
		s.d.Logger.WarnContext(ctx, "append: could not delete the object of a failed append", "key", key, "err", err)
	}
}

// storeStream copies the chunks that recv returns into the object key
// while parsing them, and checks that they add up to size.
func (s *MessageServer) storeStream(ctx context.Context, key string, size int64, recv func() (*storev1.AppendMessageRequest, error)) (*mimeparse.Parsed, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	bodyR, bodyW := io.Pipe()
	parseR, parseW := io.Pipe()

	var parsed *mimeparse.Parsed
	var parseErr error
	parseDone := make(chan struct{})
	go func() {
		defer close(parseDone)
		parsed, parseErr = mimeparse.Parse(parseR)
		// Keep the tee flowing if the parser stopped early.
		_, _ = io.Copy(io.Discard, parseR)
	}()
	var putErr error
	putDone := make(chan struct{})
	go func() {
		defer close(putDone)
		_, putErr = s.d.Blobs.Put(ctx, key, io.TeeReader(bodyR, parseW))
		bodyR.CloseWithError(errors.Join(putErr, io.ErrClosedPipe))
		parseW.CloseWithError(putErr) // nil: EOF for the parser
	}()

	var n int64
	recvErr := func() error {
		for {
			req, err := recv()
			if err == io.EOF {
				if n != size {
					return errSizeMismatch
				}
				return nil
			}
			if err != nil {
				return err
			}
			chunk := req.GetChunk()
			if req.GetHeader() != nil {
				return invalid("only the first request may carry a header")
			}
			n += int64(len(chunk))
			if n > size {
				return errSizeMismatch
			}
			if _, err := bodyW.Write(chunk); err != nil {
				return nil // Put failed; its error is reported below
			}
		}
	}()
	if recvErr != nil {
		bodyW.CloseWithError(recvErr)
	} else {
		bodyW.Close()
	}
	<-putDone
	<-parseDone
	switch {
	case recvErr != nil:
		s.deleteObject(key)
		return nil, recvErr
	case putErr != nil:
		s.deleteObject(key)
		return nil, fmt.Errorf("store object: %w", putErr)
	case parseErr != nil:
		s.deleteObject(key)
		return nil, fmt.Errorf("parse message: %w", parseErr)
	}
	return parsed, nil
}

// Deliver links one object written by smtp into the mailboxes of several
// recipients. The object is read and parsed once for all of them, and
// recipients that share a mailbox name and flags (the usual case: all of
// them, INBOX, no flags) are delivered by one repository call, one
// transaction. Idempotent per (delivery_id, account).
func (s *MessageServer) Deliver(ctx context.Context, req *storev1.DeliverRequest) (*storev1.DeliverResponse, error) {
	p, err := s.prepareDelivery(ctx, req)
	if err != nil {
		return nil, s.fail(ctx, "deliver", err)
	}
	resp, err := s.finishDelivery(ctx, p)
	if err != nil {
		return nil, s.fail(ctx, "deliver", err)
	}
	return resp, nil
}

// maxDeliverBatch bounds DeliverBatch (memory: each delivery's parsed
// object is held until the batch is recorded).
const maxDeliverBatch = 64

// DeliverBatch is Deliver for several entries: the objects are read and
// parsed concurrently, and the usual deliveries (one group: every
// recipient in the same mailbox) are recorded with one repository call,
// one transaction and one commit for the whole batch.
func (s *MessageServer) DeliverBatch(ctx context.Context, req *storev1.DeliverBatchRequest) (*storev1.DeliverBatchResponse, error) {
	reqs := req.GetDeliveries()
	if len(reqs) > maxDeliverBatch {
		return nil, s.fail(ctx, "deliver batch", invalid(fmt.Sprintf("at most %d deliveries per batch", maxDeliverBatch)))
	}
	preps := make([]*preparedDelivery, len(reqs))
	errs := make([]error, len(reqs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8) // concurrent object reads
	for i, r := range reqs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			preps[i], errs[i] = s.prepareDelivery(ctx, r)
		})
	}
	wg.Wait()
	// One repository call for every single-group delivery.
	var batch []repo.Delivery
	var batchOf []int
	for i, p := range preps {
		if errs[i] == nil && p.single() {
			batch = append(batch, p.delivery(p.order[0]))
			batchOf = append(batchOf, i)
		}
	}
	if len(batch) > 0 {
		outs, outErrs := s.d.Repo.DeliverBatch(ctx, batch)
		for j, i := range batchOf {
			preps[i].recorded = &recorded{out: outs[j], err: outErrs[j]}
		}
	}
	resp := &storev1.DeliverBatchResponse{Results: make([]*storev1.DeliverBatchResult, len(reqs))}
	for i, p := range preps {
		var r *storev1.DeliverResponse
		err := errs[i]
		if err == nil {
			r, err = s.finishDelivery(ctx, p)
		}
		res := &storev1.DeliverBatchResult{Response: r}
		if err != nil {
			st, _ := status.FromError(s.fail(ctx, "deliver", err))
			res.Response, res.Code, res.Message = nil, int32(st.Code()), st.Message()
		}
		resp.Results[i] = res
	}
	return resp, nil
}

// preparedDelivery is a Deliver request checked, its object read and
// parsed, its recipients grouped by mailbox and flags.
type preparedDelivery struct {
	req       *storev1.DeliverRequest
	tenant    int64
	key       string
	parsed    *mimeparse.Parsed
	date      time.Time
	results   []*storev1.DeliverResult
	groups    map[string]*deliveryGroup
	order     []string
	objectID  int64 // recorded beforehand (several groups)
	newObject *repo.NewObject
	// recorded is the single group's repository outcome when DeliverBatch
	// has already made the call.
	recorded *recorded
}

type recorded struct {
	out []repo.DeliveryResult
	err error
}

type deliveryGroup struct {
	mailbox   string
	flags     repo.Flags
	idx       []int
	byAccount map[int64][]int
}

// single reports whether the delivery is one repository call that records
// the object itself (the usual case).
func (p *preparedDelivery) single() bool { return len(p.order) == 1 }

func (s *MessageServer) prepareDelivery(ctx context.Context, req *storev1.DeliverRequest) (*preparedDelivery, error) {
	tenant, err := objectRef(req.GetTenantId(), req.GetBlobKey())
	if err != nil {
		return nil, err
	}
	if req.GetDeliveryId() == "" {
		return nil, invalid("delivery id is required")
	}
	key := req.GetBlobKey()
	for _, r := range req.GetRecipients() {
		if repo.CheckHeaderPrefix(r.GetHeaderPrefix()) != nil {
			return nil, invalid("header prefix must be complete header lines ending in CRLF, at most 4096 bytes")
		}
	}
	p := &preparedDelivery{req: req, tenant: tenant, key: key, groups: map[string]*deliveryGroup{}}
	p.results = make([]*storev1.DeliverResult, len(req.GetRecipients()))
	for i, r := range req.GetRecipients() {
		p.results[i] = &storev1.DeliverResult{AccountId: r.GetAccountId(), Outcome: storev1.DeliverOutcome_DELIVER_OUTCOME_NO_SUCH_ACCOUNT}
		id, err := strconv.ParseInt(r.GetAccountId(), 10, 64)
		if err != nil || id <= 0 {
			continue
		}
		flags, err := parseFlags(r.GetFlags())
		if err != nil {
			return nil, err
		}
		mailbox := r.GetMailbox()
		if mailbox == "" {
			mailbox = repo.Inbox
		}
		gk := mailbox + "\x00" + strings.Join(formatFlags(flags), " ")
		g := p.groups[gk]
		if g == nil {
			g = &deliveryGroup{mailbox: mailbox, flags: flags, byAccount: map[int64][]int{}}
			p.groups[gk] = g
			p.order = append(p.order, gk)
		}
		g.idx = append(g.idx, i)
		g.byAccount[id] = append(g.byAccount[id], i)
	}
	if c := req.GetContent(); len(c) > 0 {
		// The caller's copy of the object (a queue entry's): no read of
		// the object at all, the most expensive part of a delivery.
		if int64(len(c)) > s.d.MaxMessageSize {
			return nil, invalid("content larger than the message size limit")
		}
		if p.parsed, err = mimeparse.Parse(bytes.NewReader(c)); err != nil {
			return nil, fmt.Errorf("parse content of %s: %w", key, err)
		}
	} else {
		rc, _, err := s.d.Blobs.Get(ctx, key)
		if errors.Is(err, blob.ErrNotFound) {
			return nil, fmt.Errorf("blob %s: %w", key, repo.ErrNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("read object: %w", err)
		}
		p.parsed, err = mimeparse.Parse(rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("parse object %s: %w", key, err)
		}
	}
	p.date = s.d.Now()
	if req.GetInternalDate() != nil {
		p.date = req.GetInternalDate().AsTime()
	}
	p.newObject = &repo.NewObject{Key: key, Parsed: p.parsed}
	return p, nil
}

// delivery is the repository call of one group.
func (p *preparedDelivery) delivery(gk string) repo.Delivery {
	g := p.groups[gk]
	d := repo.Delivery{TenantID: p.tenant, DeliveryID: p.req.GetDeliveryId(), Mailbox: g.mailbox, ObjectID: p.objectID,
		NewObject: p.newObject, Flags: g.flags, InternalDate: p.date}
	seen := map[int64]bool{}
	for _, i := range g.idx {
		r := p.req.GetRecipients()[i]
		id, _ := strconv.ParseInt(r.GetAccountId(), 10, 64)
		if seen[id] {
			continue
		}
		// An account listed twice gets one copy, with the header lines
		// of its first listing.
		seen[id] = true
		d.Recipients = append(d.Recipients, id)
		if pre := r.GetHeaderPrefix(); len(pre) > 0 {
			if d.HeaderPrefix == nil {
				d.HeaderPrefix = map[int64][]byte{}
			}
			d.HeaderPrefix[id] = pre
		}
	}
	return d
}

// finishDelivery records the delivery (unless a batch did: p.recorded)
// and reports the outcomes.
func (s *MessageServer) finishDelivery(ctx context.Context, p *preparedDelivery) (*storev1.DeliverResponse, error) {
	// The usual delivery is one group: the object is recorded by the same
	// repository call that links it, one round trip in all. Several groups
	// record it first and link it once per group.
	if len(p.order) > 1 {
		id, err := s.d.Repo.CreateObject(ctx, p.tenant, p.key, p.parsed)
		if err != nil {
			return nil, err
		}
		p.objectID, p.newObject = id, nil
	}
	for _, gk := range p.order {
		g := p.groups[gk]
		var out []repo.DeliveryResult
		var err error
		if p.recorded != nil {
			out, err = p.recorded.out, p.recorded.err
		} else {
			out, err = s.d.Repo.Deliver(ctx, p.delivery(gk))
		}
		if errors.Is(err, repo.ErrInvalidName) {
			for _, i := range g.idx {
				p.results[i].Outcome = storev1.DeliverOutcome_DELIVER_OUTCOME_NO_SUCH_MAILBOX
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, r := range out {
			outcome := s.outcome(ctx, p.tenant, g.mailbox, r)
			for _, i := range g.byAccount[r.AccountID] {
				p.results[i].Outcome = outcome
				if r.Err == nil {
					p.results[i].UidValidity, p.results[i].Uid = r.UIDValidity, r.UID
				}
			}
			if r.Err == nil && !r.Duplicate {
				sc := repo.Scope{TenantID: p.tenant, AccountID: r.AccountID}
				s.event(ctx, sc, storev1.MailboxEventKind_MAILBOX_EVENT_KIND_APPEND,
					repo.Mailbox{ID: r.MailboxID, Name: g.mailbox}, []uint32{r.UID}, r.ModSeq, r.UID+1)
			}
		}
	}
	return &storev1.DeliverResponse{Results: p.results}, nil
}

// objectRef checks a service's (tenant, key) pair: a service may only act
// on objects of the tenant it works for (object rows are per tenant, so a
// foreign key would let one tenant's mailbox point at another's bytes).
func objectRef(tenantID, key string) (int64, error) {
	tenant, err := strconv.ParseInt(tenantID, 10, 64)
	if err != nil || tenant <= 0 {
		return 0, invalid("bad tenant id")
	}
	if blob.ValidKey(key) != nil || !strings.HasPrefix(key, "msg/"+tenantID+"/") {
		return 0, invalid("bad blob key")
	}
	return tenant, nil
}

// HoldObject keeps an object from the collector for a queue entry.
func (s *MessageServer) HoldObject(ctx context.Context, req *storev1.HoldObjectRequest) (*storev1.HoldObjectResponse, error) {
	if err := s.objectHold(ctx, "hold object", req.GetTenantId(), req.GetBlobKey(), req.GetHolder(), s.d.Repo.HoldObject); err != nil {
		return nil, err
	}
	return &storev1.HoldObjectResponse{}, nil
}

// ReleaseObject ends a hold.
func (s *MessageServer) ReleaseObject(ctx context.Context, req *storev1.ReleaseObjectRequest) (*storev1.ReleaseObjectResponse, error) {
	if err := s.objectHold(ctx, "release object", req.GetTenantId(), req.GetBlobKey(), req.GetHolder(), s.d.Repo.ReleaseObject); err != nil {
		return nil, err
	}
	return &storev1.ReleaseObjectResponse{}, nil
}

// objectHold checks a hold or release and applies it with fn.
func (s *MessageServer) objectHold(ctx context.Context, op, tenantID, key, holder string,
	fn func(ctx context.Context, tenantID int64, key, holder string) error) error {
	tenant, err := objectRef(tenantID, key)
	if err == nil && holder == "" {
		err = invalid("holder is required")
	}
	if err == nil {
		err = fn(ctx, tenant, key, holder)
	}
	if err != nil {
		return s.fail(ctx, op, err)
	}
	return nil
}

// outcome maps one recipient's result. The repository reports a missing
// account and a missing mailbox both as ErrNotFound; since every account
// has an INBOX, looking the INBOX up tells them apart (only on this rare
// path).
func (s *MessageServer) outcome(ctx context.Context, tenant int64, mailbox string, r repo.DeliveryResult) storev1.DeliverOutcome {
	switch {
	case r.Err == nil && r.Duplicate:
		return storev1.DeliverOutcome_DELIVER_OUTCOME_DUPLICATE
	case r.Err == nil:
		return storev1.DeliverOutcome_DELIVER_OUTCOME_DELIVERED
	case errors.Is(r.Err, repo.ErrOverQuota):
		return storev1.DeliverOutcome_DELIVER_OUTCOME_OVER_QUOTA
	case errors.Is(r.Err, repo.ErrNoSelect):
		return storev1.DeliverOutcome_DELIVER_OUTCOME_NO_SUCH_MAILBOX
	case errors.Is(r.Err, repo.ErrNotFound):
		if strings.EqualFold(mailbox, repo.Inbox) {
			return storev1.DeliverOutcome_DELIVER_OUTCOME_NO_SUCH_ACCOUNT
		}
		if _, err := s.d.Repo.MailboxByName(ctx, repo.Scope{TenantID: tenant, AccountID: r.AccountID}, repo.Inbox); err == nil {
			return storev1.DeliverOutcome_DELIVER_OUTCOME_NO_SUCH_MAILBOX
		}
		return storev1.DeliverOutcome_DELIVER_OUTCOME_NO_SUCH_ACCOUNT
	}
	s.d.Logger.ErrorContext(ctx, "deliver: recipient failed", "account_id", r.AccountID, "err", r.Err)
	return storev1.DeliverOutcome_DELIVER_OUTCOME_UNSPECIFIED
}

// GetBody streams a message's bytes, whole or a range, in 64 KiB chunks;
// the first response carries the message's size. A delivered message's
// header prefix comes first, then the object's bytes.
func (s *MessageServer) GetBody(req *storev1.GetBodyRequest, stream grpc.ServerStreamingServer[storev1.GetBodyResponse]) error {
	ctx := stream.Context()
	sc, err := callerScope(ctx)
	if err != nil {
		return err
	}
	if req.GetUid() == 0 {
		return s.fail(ctx, "get body", invalid("uid is required"))
	}
	mb, err := lookupMailbox(ctx, s.d.Repo, sc, req.GetMailbox())
	if err != nil {
		return s.fail(ctx, "get body", err)
	}
	var meta *repo.MessageMeta
	err = s.d.Repo.FetchMeta(ctx, sc, mb.ID, repo.UIDSet{{Start: req.GetUid(), Stop: req.GetUid()}}, repo.FetchObject|repo.FetchSize, 0,
		func(m *repo.MessageMeta) error { meta = m; return nil })
	if err == nil && meta == nil {
		err = fmt.Errorf("uid %d: %w", req.GetUid(), repo.ErrNotFound)
	}
	if err != nil {
		return s.fail(ctx, "get body", err)
	}
	offset, length := req.GetOffset(), req.GetLength()
	if req.GetWhole() {
		offset, length = 0, -1
	}
	if offset < 0 || offset > meta.Size {
		return s.fail(ctx, "get body", invalid("offset outside the message"))
	}
	if length <= 0 || offset+length > meta.Size {
		length = meta.Size - offset
	}
	first := &storev1.GetBodyResponse{Size: meta.Size}
	if length == 0 {
		return stream.Send(first)
	}
	// The message as served is the header prefix, then the object: the
	// range takes what it covers of each.
	end := offset + length
	prefix := int64(len(meta.HeaderPrefix))
	var src io.Reader = bytes.NewReader(meta.HeaderPrefix[min(offset, prefix):min(end, prefix)])
	if end > prefix {
		objOffset := max(offset-prefix, 0)
		rc, err := s.d.Blobs.GetRange(ctx, meta.ObjectKey, objOffset, end-prefix-objOffset)
		if err != nil {
			return s.fail(ctx, "get body", fmt.Errorf("read object %s: %w", meta.ObjectKey, err))
		}
		defer rc.Close()
		src = io.MultiReader(src, rc)
	}
	buf := make([]byte, bodyChunk)
	resp := first
	var sent int64
	for sent < length {
		n, err := io.ReadFull(src, buf[:min(int64(len(buf)), length-sent)])
		if n > 0 {
			resp.Chunk = buf[:n]
			if err := stream.Send(resp); err != nil {
				return s.fail(ctx, "get body", err)
			}
			resp = &storev1.GetBodyResponse{}
			sent += int64(n)
		}
		if err != nil {
			if sent < length {
				return s.fail(ctx, "get body", fmt.Errorf("read object %s: short read at %d of %d: %w", meta.ObjectKey, sent, length, err))
			}
			break
		}
	}
	return nil
}
