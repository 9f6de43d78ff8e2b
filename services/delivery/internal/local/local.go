// Package local delivers queue entries to local mailboxes through the
// store. A recipient that smtp resolved at RCPT time carries its tenant
// and accounts in the queue entry (queuev1.Recipient.account_ids) and is
// delivered to them without another look-up: one store round trip per
// recipient less, the difference between ~250 and ~1,000 messages/s. A
// recipient without them (a DSN, an older smtp) is resolved with
// DirectoryService.ResolveRecipient at delivery time. The cost of
// trusting smtp's resolution: an alias changed between RCPT and delivery
// (milliseconds, or a retry's minutes) delivers to its old targets, and an
// account deleted since is a 5.1.1 bounce, as Deliver reports it. The
// message is stored for every local account of the entry with one
// delivery per tenant, which concurrent attempts share store calls for
// (MessageService.DeliverBatch, see batcher). The store
// links the object smtp wrote into each INBOX; the call is idempotent per
// (queue id, account), which is what makes a repeated attempt harmless.
//
// Outcomes follow what Postfix's local(8) reports (RFC 3463 enhanced
// status codes): an unknown user is a permanent 5.1.1 failure, a disabled
// account 5.2.1, a full mailbox a temporary 4.2.2 until
// Options.OverQuotaBounceAfter has passed since the message arrived, then a
// permanent 5.2.2. A store that cannot be reached fails the whole attempt
// (nothing recorded, retried soon), never a recipient.
//
// Each copy starts with Return-Path: (the envelope sender, RFC 5321
// §4.4) and Delivered-To: (the envelope recipient), as Postfix's local(8)
// and virtual(8) write them: per recipient, in the store's header_prefix,
// so the shared object stays one for all of them.
package local

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	queuev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/queue/v1"
	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"

	"github.com/petrel-mail/petrel/services/delivery/internal/queue"
	"github.com/petrel-mail/petrel/services/store/storeclient"
)

// DefaultOverQuotaBounceAfter is how long mail for a full mailbox is
// retried before it bounces.
const DefaultOverQuotaBounceAfter = 24 * time.Hour

// Options configure a Deliverer.
type Options struct {
	// Directory and Messages are the store's clients, with the delivery
	// service token and storeclient's error mapping (storeclient.Dial).
	Directory storev1.DirectoryServiceClient
	Messages  storev1.MessageServiceClient
	// OverQuotaBounceAfter: default DefaultOverQuotaBounceAfter.
	OverQuotaBounceAfter time.Duration
	// BatchSize is the most entries one store call carries
	// (MessageService.DeliverBatch; default 32, 1 sends each alone), and
	// BatchCalls how many such calls may be in flight at once (default
	// 2): see batcher. BatchTimeout bounds one call (default 30s).
	BatchSize    int
	BatchCalls   int
	BatchTimeout time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Deliverer makes the local part of delivery attempts.
type Deliverer struct {
	o     Options
	batch *batcher
}

// New returns a Deliverer.
func New(o Options) (*Deliverer, error) {
	if o.Directory == nil || o.Messages == nil {
		return nil, errors.New("local: Directory and Messages are required")
	}
	if o.OverQuotaBounceAfter < 0 {
		return nil, errors.New("local: negative OverQuotaBounceAfter")
	}
	if o.OverQuotaBounceAfter == 0 {
		o.OverQuotaBounceAfter = DefaultOverQuotaBounceAfter
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 32
	}
	if o.BatchCalls <= 0 {
		o.BatchCalls = 2
	}
	if o.BatchTimeout <= 0 {
		o.BatchTimeout = 30 * time.Second
	}
	b := &batcher{rpc: o.Messages, maxBatch: o.BatchSize, maxCalls: o.BatchCalls, timeout: o.BatchTimeout}
	return &Deliverer{o: o, batch: b}, nil
}

// Split is an attempt's local part.
type Split struct {
	// Results for the recipients that are local or not deliverable at all.
	Results []queue.Result
	// Remote lists the recipients whose domain is not ours.
	Remote []int
	// StoreMayReference: see queue.Attempt.
	StoreMayReference bool
}

// ErrUnavailable wraps the error of an attempt that could not be made
// because the store was unreachable.
var ErrUnavailable = errors.New("local: store unavailable")

// Deliver resolves the recipients at indexes pending of entry, delivers to
// the local ones, and returns the others as remote. It fails (wrapping
// ErrUnavailable) only when the store is unavailable; repeating the call is
// then safe.
func (d *Deliverer) Deliver(ctx context.Context, entry *queuev1.QueueEntry, pending []int) (Split, error) {
	var out Split
	// accounts of one tenant → the recipient indexes they serve.
	type target struct {
		tenant, account string
	}
	byTenant := map[string][]string{}
	serves := map[target][]int{}
	need := map[int]int{} // recipient → accounts still to hear about
	worst := map[int]queue.Result{}
	addTarget := func(i int, tenant, account string) {
		t := target{tenant, account}
		if _, seen := serves[t]; !seen {
			byTenant[t.tenant] = append(byTenant[t.tenant], t.account)
		}
		serves[t] = append(serves[t], i)
		need[i]++
	}
	for _, i := range pending {
		rcpt := entry.GetRecipients()[i]
		if rcpt.GetTenantId() != "" && len(rcpt.GetAccountIds()) > 0 {
			// smtp resolved it at RCPT time: one store call less per
			// recipient. The Deliver below still checks the account
			// and its quota.
			for _, a := range rcpt.GetAccountIds() {
				addTarget(i, rcpt.GetTenantId(), a)
			}
			continue
		}
		addr := rcpt.GetAddress()
		res, err := d.o.Directory.ResolveRecipient(ctx, &storev1.ResolveRecipientRequest{Address: addr, Size: entry.GetSize()})
		if err != nil {
			if errors.Is(err, storeclient.ErrUnavailable) || ctx.Err() != nil {
				return Split{}, fmt.Errorf("%w: resolve recipient: %w", ErrUnavailable, err)
			}
			if errors.Is(err, storeclient.ErrInvalidArgument) {
				out.Results = append(out.Results, queue.Result{Index: i, Outcome: queue.Permanent, Reply: "550 5.1.3 bad recipient address syntax"})
				continue
			}
			out.Results = append(out.Results, queue.Result{Index: i, Outcome: queue.Temporary, Reply: "451 4.3.0 recipient lookup failed"})
			continue
		}
		switch res.GetStatus() {
		case storev1.RecipientStatus_RECIPIENT_STATUS_NOT_LOCAL:
			out.Remote = append(out.Remote, i)
		case storev1.RecipientStatus_RECIPIENT_STATUS_UNKNOWN_USER:
			out.Results = append(out.Results, queue.Result{Index: i, Outcome: queue.Permanent, Reply: "550 5.1.1 mailbox unavailable: no such user"})
		case storev1.RecipientStatus_RECIPIENT_STATUS_DISABLED:
			out.Results = append(out.Results, queue.Result{Index: i, Outcome: queue.Permanent, Reply: "550 5.2.1 mailbox disabled"})
		case storev1.RecipientStatus_RECIPIENT_STATUS_OVER_QUOTA:
			out.Results = append(out.Results, d.overQuota(entry, i))
		case storev1.RecipientStatus_RECIPIENT_STATUS_LOCAL:
			if len(res.GetAccounts()) == 0 {
				out.Results = append(out.Results, queue.Result{Index: i, Outcome: queue.Temporary, Reply: "451 4.3.0 recipient has no account"})
				continue
			}
			for _, a := range res.GetAccounts() {
				addTarget(i, res.GetTenantId(), a.GetAccountId())
			}
		default:
			out.Results = append(out.Results, queue.Result{Index: i, Outcome: queue.Temporary, Reply: "451 4.3.0 recipient lookup failed"})
		}
	}
	if len(byTenant) == 0 {
		return out, nil
	}

	// One Deliver call per tenant carries every account of the entry in it
	// (one object, many mailbox entries).
	record := func(i int, r queue.Result) {
		r.Index = i
		if prev, ok := worst[i]; !ok || rank(r.Outcome) > rank(prev.Outcome) {
			worst[i] = r
		}
		need[i]--
	}
	content := inlineContent(entry)
	for tenant, accounts := range byTenant {
		req := &storev1.DeliverRequest{
			DeliveryId:   entry.GetQueueId(),
			TenantId:     tenant,
			BlobKey:      entry.GetBlobKey(),
			InternalDate: entry.GetReceivedAt(),
			Content:      content,
		}
		for _, a := range accounts {
			// An account that several recipients reach gets one copy,
			// traced with the first of them.
			first := entry.GetRecipients()[serves[target{tenant, a}][0]].GetAddress()
			req.Recipients = append(req.Recipients, &storev1.DeliverRecipient{AccountId: a, Mailbox: "INBOX",
				HeaderPrefix: tracePrefix(entry.GetMailFrom(), first)})
		}
		resp, err := d.batch.deliver(ctx, req)
		if err != nil {
			if errors.Is(err, storeclient.ErrUnavailable) || ctx.Err() != nil {
				return Split{}, fmt.Errorf("%w: deliver: %w", ErrUnavailable, err)
			}
			// The store may have stored it before failing: its outcome is
			// unknown, so the object may be referenced.
			out.StoreMayReference = true
			for _, a := range accounts {
				for _, i := range serves[target{tenant, a}] {
					record(i, queue.Result{Outcome: queue.Temporary, Reply: "451 4.3.0 local delivery failed"})
				}
			}
			continue
		}
		// The store records the object on any answered Deliver, even when
		// no mailbox took it (a full mailbox): from now on it is the
		// store's collector that deletes it, and the entry that retries
		// must hold it (queue.Holder).
		out.StoreMayReference = true
		got := map[string]storev1.DeliverOutcome{}
		for _, r := range resp.GetResults() {
			got[r.GetAccountId()] = r.GetOutcome()
		}
		for _, a := range accounts {
			var r queue.Result
			switch got[a] {
			case storev1.DeliverOutcome_DELIVER_OUTCOME_DELIVERED, storev1.DeliverOutcome_DELIVER_OUTCOME_DUPLICATE:
				out.StoreMayReference = true
				r = queue.Result{Outcome: queue.Delivered, Reply: "250 2.0.0 delivered to mailbox"}
			case storev1.DeliverOutcome_DELIVER_OUTCOME_OVER_QUOTA:
				r = d.overQuota(entry, 0)
			case storev1.DeliverOutcome_DELIVER_OUTCOME_NO_SUCH_ACCOUNT:
				r = queue.Result{Outcome: queue.Permanent, Reply: "550 5.1.1 mailbox unavailable: no such user"}
			case storev1.DeliverOutcome_DELIVER_OUTCOME_NO_SUCH_MAILBOX:
				r = queue.Result{Outcome: queue.Temporary, Reply: "450 4.2.0 mailbox unavailable"}
			default:
				out.StoreMayReference = true
				r = queue.Result{Outcome: queue.Temporary, Reply: "451 4.3.0 no local delivery result"}
			}
			for _, i := range serves[target{tenant, a}] {
				record(i, r)
			}
		}
	}
	for _, i := range pending {
		if r, ok := worst[i]; ok {
			out.Results = append(out.Results, r)
		}
	}
	return out, nil
}

// rank orders the outcomes of one recipient's several accounts (an alias):
// the recipient is done only when every account is, and bounces only when
// none took it.
func rank(o queue.Outcome) int {
	switch o {
	case queue.Temporary:
		return 3
	case queue.Delivered:
		return 2
	}
	return 1
}

func (d *Deliverer) overQuota(entry *queuev1.QueueEntry, i int) queue.Result {
	arrival := d.o.Now()
	if entry.GetReceivedAt() != nil {
		arrival = entry.GetReceivedAt().AsTime()
	}
	if d.o.Now().Sub(arrival) >= d.o.OverQuotaBounceAfter {
		return queue.Result{Index: i, Outcome: queue.Permanent, Reply: "552 5.2.2 mailbox full"}
	}
	return queue.Result{Index: i, Outcome: queue.Temporary, Reply: "452 4.2.2 mailbox full"}
}

// maxTraceAddress bounds an address written into the trace lines; the
// store refuses a header prefix over 4096 bytes, and SMTP paths are at
// most 256 octets (RFC 5321 §4.5.3.1.3).
const maxTraceAddress = 1000

// tracePrefix is the Return-Path: and Delivered-To: lines of one copy.
// An address that could not be written as one header line (a CR or LF, or
// too long: smtp never accepts such) leaves its line out.
func tracePrefix(mailFrom, rcpt string) []byte {
	var b []byte
	if traceable(mailFrom) {
		b = append(b, "Return-Path: <"+mailFrom+">\r\n"...)
	}
	if rcpt != "" && traceable(rcpt) {
		b = append(b, "Delivered-To: "+rcpt+"\r\n"...)
	}
	return b
}

func traceable(addr string) bool {
	return len(addr) <= maxTraceAddress && !strings.ContainsAny(addr, "\r\n\x00")
}

// inlineContent is the entry's copy of its object (smtp keeps small
// messages in the entry), given to the store so that it need not read the
// object back, when it is exactly what smtp stored: its SHA-256 is the
// entry's. Otherwise nil, and the store reads the object.
func inlineContent(entry *queuev1.QueueEntry) []byte {
	c := entry.GetContent()
	if len(c) == 0 || int64(len(c)) != entry.GetSize() {
		return nil
	}
	sum := sha256.Sum256(c)
	if hex.EncodeToString(sum[:]) != entry.GetSha256() {
		return nil
	}
	return c
}
