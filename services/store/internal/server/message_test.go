package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/petrel-mail/petrel/platform/blob"
	"github.com/petrel-mail/petrel/services/store/internal/gc"
	"github.com/petrel-mail/petrel/services/store/internal/repo"
	"github.com/petrel-mail/petrel/services/store/storeclient"
)

func simpleMsg(subject string) []byte {
	return []byte("From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: " + subject +
		"\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\nMessage-ID: <" + subject + "@example.org>\r\n\r\nHello " + subject + "\r\n")
}

// multipartMsg has a text part and a 150 KiB attachment, so that a whole
// GetBody spans several 64 KiB chunks.
func multipartMsg() []byte {
	att := make([]byte, 110<<10)
	for i := range att {
		att[i] = byte(i * 7)
	}
	enc := base64.StdEncoding.EncodeToString(att)
	var lines []string
	for len(enc) > 76 {
		lines = append(lines, enc[:76])
		enc = enc[76:]
	}
	lines = append(lines, enc)
	return []byte("From: Alice <alice@example.org>\r\nTo: Bob <bob@example.net>\r\nSubject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n" +
		"Date: Wed, 25 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n" +
		"preamble\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe text part.\r\n" +
		"--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"a.bin\"\r\n\r\n" +
		strings.Join(lines, "\r\n") + "\r\n--b1--\r\n")
}

func wantCode(t *testing.T, what string, err error, code codes.Code, reason storev1.Reason) {
	t.Helper()
	if status.Code(err) != code || storeclient.Reason(err) != reason {
		t.Fatalf("%s: got %v (reason %v), want %v %v", what, err, storeclient.Reason(err), code, reason)
	}
}

func TestAppendFetchBody(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	_, ctx := f.account(t)
	raw := multipartMsg()
	res, err := f.appendMsg(t, ctx, "INBOX", raw, `\Seen`, "$Work")
	if err != nil {
		t.Fatal(err)
	}
	if res.GetUid() != 1 || res.GetUidValidity() == 0 {
		t.Fatalf("append result %v", res)
	}
	msgs := f.fetch(t, ctx, &storev1.FetchMessagesRequest{Mailbox: "INBOX", Fields: []storev1.FetchField{
		storev1.FetchField_FETCH_FIELD_FLAGS, storev1.FetchField_FETCH_FIELD_SIZE, storev1.FetchField_FETCH_FIELD_ENVELOPE,
		storev1.FetchField_FETCH_FIELD_BODYSTRUCTURE, storev1.FetchField_FETCH_FIELD_PARTS, storev1.FetchField_FETCH_FIELD_INTERNAL_DATE,
	}})
	if len(msgs) != 1 {
		t.Fatalf("fetched %d messages", len(msgs))
	}
	m := msgs[0]
	if m.GetSize() != int64(len(raw)) || !slices.Equal(m.GetFlags(), []string{`\Seen`, "$Work"}) {
		t.Fatalf("size %d flags %q", m.GetSize(), m.GetFlags())
	}
	if !m.GetInternalDate().AsTime().Equal(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("internal date %v", m.GetInternalDate().AsTime())
	}
	if !bytes.Contains(m.GetEnvelope(), []byte(`"Wed, 25 Nov 2026 10:00:00 +0000"`)) || !bytes.Contains(m.GetBodyStructure(), []byte(`"mixed"`)) {
		t.Errorf("envelope %s\nbodystructure %s", m.GetEnvelope(), m.GetBodyStructure())
	}
	if len(m.GetBody()) != 0 || len(m.GetHeader()) != 0 {
		t.Errorf("fields not asked for were sent")
	}
	if len(m.GetParts()) != 3 {
		t.Fatalf("parts %v", m.GetParts())
	}
	for _, p := range m.GetParts() {
		for _, r := range [][2]int64{{p.GetHeaderOffset(), p.GetHeaderLen()}, {p.GetBodyOffset(), p.GetBodyLen()}} {
			got, size, err := f.body(ctx, &storev1.GetBodyRequest{Mailbox: "INBOX", Uid: 1, Offset: r[0], Length: r[1]})
			if err != nil {
				t.Fatal(err)
			}
			if size != int64(len(raw)) || !bytes.Equal(got, raw[r[0]:r[0]+r[1]]) {
				t.Fatalf("part %q range %v: got %d bytes, size %d", p.GetPath(), r, len(got), size)
			}
		}
	}
	whole, _, err := f.body(ctx, &storev1.GetBodyRequest{Mailbox: "INBOX", Uid: 1, Whole: true})
	if err != nil || !bytes.Equal(whole, raw) {
		t.Fatalf("whole body: %d bytes, %v", len(whole), err)
	}
	tail, _, err := f.body(ctx, &storev1.GetBodyRequest{Mailbox: "INBOX", Uid: 1, Offset: int64(len(raw)) - 10, Length: 100})
	if err != nil || !bytes.Equal(tail, raw[len(raw)-10:]) {
		t.Fatalf("clamped range: %q, %v", tail, err)
	}
	_, _, err = f.body(ctx, &storev1.GetBodyRequest{Mailbox: "INBOX", Uid: 2, Whole: true})
	wantCode(t, "body of a missing uid", err, codes.NotFound, storev1.Reason_REASON_NOT_FOUND)
	if !errors.Is(err, storeclient.ErrNotFound) {
		t.Fatalf("storeclient error %v does not match ErrNotFound", err)
	}

	sel, err := f.client.Mailboxes.SelectMailbox(ctx, &storev1.SelectMailboxRequest{Name: "INBOX"})
	if err != nil {
		t.Fatal(err)
	}
	if sel.GetStatus().GetMessages() != 1 || sel.GetFirstRecentUid() != 1 || sel.GetStatus().GetRecent() != 1 ||
		!slices.Equal(sel.GetKeywords(), []string{"$Work"}) || len(sel.GetUids().GetRanges()) != 1 {
		t.Fatalf("select %v", sel)
	}
	// The first SELECT claimed \Recent.
	sel, _ = f.client.Mailboxes.SelectMailbox(ctx, &storev1.SelectMailboxRequest{Name: "INBOX"})
	if sel.GetFirstRecentUid() != 0 || sel.GetStatus().GetRecent() != 0 {
		t.Fatalf("second select still recent: %v", sel)
	}
}

func TestAppendLimits(t *testing.T) {
	f := newFixture(t, fixtureOptions{maxSize: 1 << 20})
	sc, ctx := f.account(t)
	_, err := f.appendDeclared(ctx, "INBOX", nil, 2<<20)
	wantCode(t, "declared size above the maximum", err, codes.InvalidArgument, storev1.Reason_REASON_TOO_BIG)
	_, err = f.appendDeclared(ctx, "INBOX", simpleMsg("long"), 10)
	wantCode(t, "more bytes than declared", err, codes.InvalidArgument, storev1.Reason_REASON_UNSPECIFIED)
	_, err = f.appendDeclared(ctx, "INBOX", simpleMsg("short"), 10000)
	wantCode(t, "fewer bytes than declared", err, codes.InvalidArgument, storev1.Reason_REASON_UNSPECIFIED)
	_, err = f.appendMsg(t, ctx, "Nope", simpleMsg("x"))
	wantCode(t, "append to a missing mailbox", err, codes.NotFound, storev1.Reason_REASON_NOT_FOUND)
	// No object is left behind by the failed appends.
	for info, err := range f.blobs.List(context.Background(), "msg/"+idString(sc.TenantID)+"/") {
		t.Errorf("object left after failed appends: %v %v", info.Key, err)
	}

	if err := f.repo.SetQuota(context.Background(), sc, 300, 0); err != nil {
		t.Fatal(err)
	}
	f.mustAppend(t, ctx, "INBOX", simpleMsg("fits"))
	big := append(simpleMsg("big"), bytes.Repeat([]byte("x"), 300)...)
	_, err = f.appendMsg(t, ctx, "INBOX", big)
	wantCode(t, "over quota", err, codes.ResourceExhausted, storev1.Reason_REASON_OVER_QUOTA)
	if !errors.Is(err, storeclient.ErrOverQuota) {
		t.Fatalf("%v is not ErrOverQuota", err)
	}
	q, err := f.client.Messages.GetQuota(ctx, &storev1.GetQuotaRequest{})
	if err != nil || q.GetBytesLimit() != 300 || q.GetMessagesUsed() != 1 || q.GetBytesUsed() != int64(len(simpleMsg("fits"))) {
		t.Fatalf("quota %v, %v", q, err)
	}
}

func TestDeliverOnceToEachRecipient(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	var scopes []repo.Scope
	var ctxs []context.Context
	for range 3 {
		sc, ctx := f.account(t)
		scopes, ctxs = append(scopes, sc), append(ctxs, ctx)
	}
	if err := f.repo.SetQuota(context.Background(), scopes[2], 10, 0); err != nil {
		t.Fatal(err)
	}
	overQuota, _ := f.account(t)
	if err := f.repo.SetQuota(context.Background(), overQuota, 10, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.repo.SetQuota(context.Background(), scopes[2], 0, 0); err != nil {
		t.Fatal(err)
	}
	// Idempotency is per (delivery, account), whatever the mailbox, so
	// the missing mailbox is tried on an account of its own.
	noMailbox, _ := f.account(t)
	raw := simpleMsg("delivered")
	key := "msg/" + idString(f.tenant.ID) + "/2026/11/25/q1"
	if _, err := f.blobs.Put(context.Background(), key, bytes.NewReader(raw)); err != nil {
		t.Fatal(err)
	}
	req := &storev1.DeliverRequest{DeliveryId: "q1", TenantId: idString(f.tenant.ID), BlobKey: key}
	for _, sc := range scopes {
		req.Recipients = append(req.Recipients, &storev1.DeliverRecipient{AccountId: idString(sc.AccountID)})
	}
	req.Recipients = append(req.Recipients,
		&storev1.DeliverRecipient{AccountId: idString(overQuota.AccountID)},
		&storev1.DeliverRecipient{AccountId: "999999999"},
		&storev1.DeliverRecipient{AccountId: idString(noMailbox.AccountID), Mailbox: "Nope"},
	)
	sctx := f.service(t, "delivery")
	for round, want := range []storev1.DeliverOutcome{storev1.DeliverOutcome_DELIVER_OUTCOME_DELIVERED, storev1.DeliverOutcome_DELIVER_OUTCOME_DUPLICATE} {
		resp, err := f.client.Messages.Deliver(sctx, req)
		if err != nil {
			t.Fatal(err)
		}
		got := resp.GetResults()
		if len(got) != 6 {
			t.Fatalf("round %d: %d results", round, len(got))
		}
		for i := range 3 {
			if got[i].GetOutcome() != want || got[i].GetUid() != 1 || got[i].GetAccountId() != idString(scopes[i].AccountID) {
				t.Fatalf("round %d recipient %d: %v", round, i, got[i])
			}
		}
		for i, w := range []storev1.DeliverOutcome{storev1.DeliverOutcome_DELIVER_OUTCOME_OVER_QUOTA, storev1.DeliverOutcome_DELIVER_OUTCOME_NO_SUCH_ACCOUNT, storev1.DeliverOutcome_DELIVER_OUTCOME_NO_SUCH_MAILBOX} {
			if got[3+i].GetOutcome() != w {
				t.Fatalf("round %d recipient %d: %v, want %v", round, 3+i, got[3+i], w)
			}
		}
	}
	// One copy each, all on one object with three references.
	var objectID int64
	for i, sc := range scopes {
		var metas []repo.MessageMeta
		err := f.repo.FetchMeta(context.Background(), sc, mustInbox(t, f, sc).ID, nil, repo.FetchObject, 0, func(m *repo.MessageMeta) error {
			metas = append(metas, *m)
			return nil
		})
		if err != nil || len(metas) != 1 {
			t.Fatalf("recipient %d has %d messages (%v)", i, len(metas), err)
		}
		if i > 0 && metas[0].ObjectID != objectID {
			t.Fatalf("recipient %d has object %d, want %d", i, metas[0].ObjectID, objectID)
		}
		objectID = metas[0].ObjectID
		got, _, err := f.body(ctxs[i], &storev1.GetBodyRequest{Mailbox: "INBOX", Uid: 1, Whole: true})
		if err != nil || !bytes.Equal(got, raw) {
			t.Fatalf("recipient %d body %q, %v", i, got, err)
		}
	}
	obj, err := f.repo.GetObject(context.Background(), f.tenant.ID, objectID)
	if err != nil || obj.RefCount != 3 || obj.Key != key {
		t.Fatalf("object %+v, %v", obj, err)
	}

	// A session may not deliver, nor may a service deliver another
	// tenant's object or with malformed header lines.
	_, ctx := f.account(t)
	_, err = f.client.Messages.Deliver(ctx, req)
	wantCode(t, "deliver with a session token", err, codes.PermissionDenied, storev1.Reason_REASON_UNSPECIFIED)
	bad := proto.Clone(req).(*storev1.DeliverRequest)
	bad.BlobKey = "msg/1/2026/11/25/q1"
	bad.TenantId = idString(f.tenant.ID + 1000)
	_, err = f.client.Messages.Deliver(sctx, bad)
	wantCode(t, "deliver another tenant's key", err, codes.InvalidArgument, storev1.Reason_REASON_UNSPECIFIED)
	bad = proto.Clone(req).(*storev1.DeliverRequest)
	bad.Recipients[0].HeaderPrefix = []byte("Delivered-To: x@example.org\n")
	_, err = f.client.Messages.Deliver(sctx, bad)
	wantCode(t, "header prefix with a bare LF", err, codes.InvalidArgument, storev1.Reason_REASON_UNSPECIFIED)
	bad = proto.Clone(req).(*storev1.DeliverRequest)
	bad.BlobKey = "msg/" + idString(f.tenant.ID) + "/2026/11/25/missing"
	bad.DeliveryId = "q2"
	_, err = f.client.Messages.Deliver(sctx, bad)
	wantCode(t, "deliver a missing object", err, codes.NotFound, storev1.Reason_REASON_NOT_FOUND)
}

func mustInbox(t *testing.T, f *fixture, sc repo.Scope) repo.Mailbox {
	t.Helper()
	mb, err := f.repo.MailboxByName(context.Background(), sc, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	return mb
}

func nextEvent(t *testing.T, sub *nats.Subscription) *storev1.MailboxEvent {
	t.Helper()
	msg, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("no event: %v", err)
	}
	var ev storev1.MailboxEvent
	if err := proto.Unmarshal(msg.Data, &ev); err != nil {
		t.Fatal(err)
	}
	return &ev
}

func TestFlagsCopyMoveExpungeChangesAndEvents(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	sc, ctx := f.account(t)
	subject, err := f.names.EventSubject(idString(sc.TenantID), idString(sc.AccountID))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := f.nc.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := f.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	inbox := mustInbox(t, f, sc)
	for i := range 4 {
		if uid := f.mustAppend(t, ctx, "INBOX", simpleMsg("m"+string(rune('a'+i)))); uid != uint32(i+1) {
			t.Fatalf("uid %d", uid)
		}
		ev := nextEvent(t, sub)
		if ev.GetKind() != storev1.MailboxEventKind_MAILBOX_EVENT_KIND_APPEND || !slices.Equal(ev.GetUids(), []uint32{uint32(i + 1)}) ||
			ev.GetMailboxId() != idString(inbox.ID) || ev.GetMailbox() != "INBOX" || ev.GetUidNext() != uint32(i+2) || ev.GetModseq() == 0 {
			t.Fatalf("append event %v", ev)
		}
	}
	sel, _ := f.client.Mailboxes.SelectMailbox(ctx, &storev1.SelectMailboxRequest{Name: "INBOX", ReadOnly: true})
	base := sel.GetStatus().GetHighestModseq()

	st, err := f.client.Messages.StoreFlags(ctx, &storev1.StoreFlagsRequest{Mailbox: "INBOX", Uids: set(1, 2), Op: storev1.FlagOp_FLAG_OP_ADD, Flags: []string{`\Deleted`, "Later"}})
	if err != nil || len(st.GetChanged()) != 2 || !slices.Equal(st.GetChanged()[0].GetFlags(), []string{`\Deleted`, "Later"}) || st.GetHighestModseq() <= base {
		t.Fatalf("store: %v, %v", st, err)
	}
	ev := nextEvent(t, sub)
	if ev.GetKind() != storev1.MailboxEventKind_MAILBOX_EVENT_KIND_FLAGS || !slices.Equal(ev.GetUids(), []uint32{1, 2}) || ev.GetModseq() != st.GetHighestModseq() {
		t.Fatalf("flags event %v", ev)
	}
	// UNCHANGEDSINCE below the change: refused and reported.
	st2, err := f.client.Messages.StoreFlags(ctx, &storev1.StoreFlagsRequest{Mailbox: "INBOX", Uids: set(1, 3), Op: storev1.FlagOp_FLAG_OP_ADD, Flags: []string{`\Flagged`}, UnchangedSince: base})
	if err != nil || len(st2.GetChanged()) != 1 || st2.GetChanged()[0].GetUid() != 3 || len(st2.GetModifiedUids().GetRanges()) != 1 ||
		st2.GetModifiedUids().GetRanges()[0].GetStart() != 1 || st2.GetModifiedUids().GetRanges()[0].GetStop() != 2 {
		t.Fatalf("store unchangedsince: %v, %v", st2, err)
	}
	nextEvent(t, sub)

	if _, err := f.client.Mailboxes.CreateMailbox(ctx, &storev1.CreateMailboxRequest{Name: "Archive/2026"}); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, sub); ev.GetKind() != storev1.MailboxEventKind_MAILBOX_EVENT_KIND_MAILBOX_CREATED || ev.GetMailbox() != "Archive/2026" {
		t.Fatalf("create event %v", ev)
	}
	cp, err := f.client.Messages.CopyMessages(ctx, &storev1.CopyMessagesRequest{Mailbox: "INBOX", Uids: set(3, 4), Destination: "Archive/2026"})
	if err != nil || !slices.Equal(cp.GetSourceUids(), []uint32{3, 4}) || !slices.Equal(cp.GetDestinationUids(), []uint32{1, 2}) || cp.GetDestinationUidValidity() == 0 {
		t.Fatalf("copy %v, %v", cp, err)
	}
	if ev := nextEvent(t, sub); ev.GetKind() != storev1.MailboxEventKind_MAILBOX_EVENT_KIND_APPEND || ev.GetMailbox() != "Archive/2026" || !slices.Equal(ev.GetUids(), []uint32{1, 2}) || ev.GetUidNext() != 3 {
		t.Fatalf("copy event %v", ev)
	}
	mv, err := f.client.Messages.MoveMessages(ctx, &storev1.MoveMessagesRequest{Mailbox: "INBOX", Uids: set(4, 0), Destination: "Archive/2026"})
	if err != nil || !slices.Equal(mv.GetSourceUids(), []uint32{4}) || !slices.Equal(mv.GetDestinationUids(), []uint32{3}) {
		t.Fatalf("move %v, %v", mv, err)
	}
	nextEvent(t, sub) // append to Archive/2026
	if ev := nextEvent(t, sub); ev.GetKind() != storev1.MailboxEventKind_MAILBOX_EVENT_KIND_EXPUNGE || ev.GetMailbox() != "INBOX" || !slices.Equal(ev.GetUids(), []uint32{4}) {
		t.Fatalf("move expunge event %v", ev)
	}

	ex, err := f.client.Messages.Expunge(ctx, &storev1.ExpungeRequest{Mailbox: "INBOX"})
	if err != nil || !slices.Equal(ex.GetUids(), []uint32{1, 2}) {
		t.Fatalf("expunge %v, %v", ex, err)
	}
	if ev := nextEvent(t, sub); ev.GetKind() != storev1.MailboxEventKind_MAILBOX_EVENT_KIND_EXPUNGE || !slices.Equal(ev.GetUids(), []uint32{1, 2}) || ev.GetModseq() != ex.GetHighestModseq() {
		t.Fatalf("expunge event %v", ev)
	}

	ch, err := f.client.Messages.ChangesSince(ctx, &storev1.ChangesSinceRequest{Mailbox: "INBOX", Modseq: base, IncludeVanished: true})
	if err != nil || ch.GetVanishedIncomplete() || ch.GetHighestModseq() != ex.GetHighestModseq() {
		t.Fatalf("changes %v, %v", ch, err)
	}
	if len(ch.GetChanged()) != 1 || ch.GetChanged()[0].GetUid() != 3 || !slices.Equal(ch.GetChanged()[0].GetFlags(), []string{`\Flagged`}) {
		t.Fatalf("changed %v", ch.GetChanged())
	}
	if r := ch.GetVanished().GetRanges(); len(r) != 1 || r[0].GetStart() != 1 || r[0].GetStop() != 2 {
		// UID 4 was moved away, 1 and 2 expunged: RFC 7162 VANISHED
		// lists all three; the ranges compress 1:2 and 4.
		if len(r) != 2 || r[0].GetStart() != 1 || r[0].GetStop() != 2 || r[1].GetStart() != 4 || r[1].GetStop() != 4 {
			t.Fatalf("vanished %v", ch.GetVanished())
		}
	}
	// Known UIDs restrict the answer.
	ch, _ = f.client.Messages.ChangesSince(ctx, &storev1.ChangesSinceRequest{Mailbox: "INBOX", Modseq: base, IncludeVanished: true, Uids: set(2, 2)})
	if len(ch.GetChanged()) != 0 || len(ch.GetVanished().GetRanges()) != 1 || ch.GetVanished().GetRanges()[0].GetStart() != 2 {
		t.Fatalf("changes for known uid 2: %v", ch)
	}
	// CHANGEDSINCE in FETCH.
	msgs := f.fetch(t, ctx, &storev1.FetchMessagesRequest{Mailbox: "INBOX", ChangedSince: base, Fields: []storev1.FetchField{storev1.FetchField_FETCH_FIELD_FLAGS}})
	if len(msgs) != 1 || msgs[0].GetUid() != 3 {
		t.Fatalf("changedsince fetch %v", msgs)
	}
	msgs = f.fetch(t, ctx, &storev1.FetchMessagesRequest{Mailbox: "Archive/2026", Fields: []storev1.FetchField{storev1.FetchField_FETCH_FIELD_FLAGS}})
	if len(msgs) != 3 || !slices.Equal(msgs[0].GetFlags(), []string{`\Flagged`}) {
		t.Fatalf("archive %v", msgs)
	}

	// Mailbox tree operations.
	if _, err := f.client.Mailboxes.RenameMailbox(ctx, &storev1.RenameMailboxRequest{Name: "Archive", NewName: "Old"}); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, sub); ev.GetKind() != storev1.MailboxEventKind_MAILBOX_EVENT_KIND_MAILBOX_RENAMED || ev.GetMailbox() != "Old" {
		t.Fatalf("rename event %v", ev)
	}
	if _, err := f.client.Mailboxes.Subscribe(ctx, &storev1.SubscribeRequest{Name: "Old/2026"}); err != nil {
		t.Fatal(err)
	}
	list, err := f.client.Mailboxes.ListMailboxes(ctx, &storev1.ListMailboxesRequest{Pattern: "*"})
	if err != nil || len(list.GetMailboxes()) != 3 {
		t.Fatalf("list %v, %v", list, err)
	}
	attrs := map[string][]string{}
	for _, m := range list.GetMailboxes() {
		attrs[m.GetName()] = m.GetAttributes()
	}
	if !slices.Contains(attrs["Old"], `\HasChildren`) || !slices.Contains(attrs["Old/2026"], `\Subscribed`) || !slices.Contains(attrs["INBOX"], `\HasNoChildren`) {
		t.Fatalf("attributes %v", attrs)
	}
	stat, err := f.client.Mailboxes.GetMailboxStatus(ctx, &storev1.GetMailboxStatusRequest{Name: "Old/2026"})
	if err != nil || stat.GetStatus().GetMessages() != 3 || stat.GetStatus().GetUidNext() != 4 || stat.GetStatus().GetUnseen() != 3 {
		t.Fatalf("status %v, %v", stat, err)
	}
	_, err = f.client.Mailboxes.DeleteMailbox(ctx, &storev1.DeleteMailboxRequest{Name: "INBOX"})
	wantCode(t, "delete INBOX", err, codes.FailedPrecondition, storev1.Reason_REASON_CANNOT)
	_, err = f.client.Mailboxes.CreateMailbox(ctx, &storev1.CreateMailboxRequest{Name: "Old"})
	wantCode(t, "create existing", err, codes.AlreadyExists, storev1.Reason_REASON_ALREADY_EXISTS)
	if _, err := f.client.Mailboxes.DeleteMailbox(ctx, &storev1.DeleteMailboxRequest{Name: "Old/2026"}); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, sub); ev.GetKind() != storev1.MailboxEventKind_MAILBOX_EVENT_KIND_MAILBOX_DELETED || ev.GetMailbox() != "Old/2026" {
		t.Fatalf("delete event %v", ev)
	}
}

// TestIsolation: another account, in the same tenant or another, cannot
// read, change or detect the first account's mailboxes and messages over
// the API; everything answers as if they did not exist.
func TestIsolation(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	a, actx := f.account(t)
	_, bctx := f.account(t)
	other := newFixture(t, fixtureOptions{})
	_, cctx := other.account(t)
	if _, err := f.client.Mailboxes.CreateMailbox(actx, &storev1.CreateMailboxRequest{Name: "Secret"}); err != nil {
		t.Fatal(err)
	}
	f.mustAppend(t, actx, "Secret", simpleMsg("secret"))
	f.mustAppend(t, actx, "INBOX", simpleMsg("inbox"))
	// other's server shares the database but has its own token key;
	// use this server with a token for the other tenant's account.
	for name, ctx := range map[string]context.Context{"same tenant": bctx, "other tenant": f.crossToken(t, other, cctx)} {
		_, err := f.client.Mailboxes.GetMailboxStatus(ctx, &storev1.GetMailboxStatusRequest{Name: "Secret"})
		wantCode(t, name+": status", err, codes.NotFound, storev1.Reason_REASON_NOT_FOUND)
		_, err = f.client.Mailboxes.SelectMailbox(ctx, &storev1.SelectMailboxRequest{Name: "Secret"})
		wantCode(t, name+": select", err, codes.NotFound, storev1.Reason_REASON_NOT_FOUND)
		_, err = f.client.Mailboxes.DeleteMailbox(ctx, &storev1.DeleteMailboxRequest{Name: "Secret"})
		wantCode(t, name+": delete", err, codes.NotFound, storev1.Reason_REASON_NOT_FOUND)
		_, err = f.client.Mailboxes.RenameMailbox(ctx, &storev1.RenameMailboxRequest{Name: "Secret", NewName: "Mine"})
		wantCode(t, name+": rename", err, codes.NotFound, storev1.Reason_REASON_NOT_FOUND)
		_, err = f.appendMsg(t, ctx, "Secret", simpleMsg("planted"))
		wantCode(t, name+": append", err, codes.NotFound, storev1.Reason_REASON_NOT_FOUND)
		_, _, err = f.body(ctx, &storev1.GetBodyRequest{Mailbox: "INBOX", Uid: 1, Whole: true})
		wantCode(t, name+": body by uid", err, codes.NotFound, storev1.Reason_REASON_NOT_FOUND)
		st, err := f.client.Messages.StoreFlags(ctx, &storev1.StoreFlagsRequest{Mailbox: "INBOX", Uids: set(1, 0), Op: storev1.FlagOp_FLAG_OP_ADD, Flags: []string{`\Deleted`}})
		if err != nil || len(st.GetChanged()) != 0 {
			t.Fatalf("%s: store on own empty INBOX changed %v (%v)", name, st, err)
		}
		if msgs := f.fetch(t, ctx, &storev1.FetchMessagesRequest{Mailbox: "INBOX"}); len(msgs) != 0 {
			t.Fatalf("%s: fetched %v", name, msgs)
		}
		_, err = f.client.Messages.CopyMessages(ctx, &storev1.CopyMessagesRequest{Mailbox: "Secret", Uids: set(1, 1), Destination: "INBOX"})
		wantCode(t, name+": copy", err, codes.NotFound, storev1.Reason_REASON_NOT_FOUND)
		list, err := f.client.Mailboxes.ListMailboxes(ctx, &storev1.ListMailboxesRequest{Pattern: "*"})
		if err != nil || len(list.GetMailboxes()) != 1 || list.GetMailboxes()[0].GetName() != "INBOX" {
			t.Fatalf("%s: list %v, %v", name, list, err)
		}
	}
	// A's data is untouched.
	msgs := f.fetch(t, actx, &storev1.FetchMessagesRequest{Mailbox: "Secret", Fields: []storev1.FetchField{storev1.FetchField_FETCH_FIELD_FLAGS}})
	if len(msgs) != 1 || len(msgs[0].GetFlags()) != 0 {
		t.Fatalf("A's Secret: %v", msgs)
	}
	if mb, err := f.repo.MailboxByName(context.Background(), a, "INBOX"); err != nil || mb.Messages != 1 {
		t.Fatalf("A's INBOX %+v %v", mb, err)
	}
	// No token, or a forged one: refused before any handler runs.
	_, err := f.client.Mailboxes.ListMailboxes(ctxTimeout(t), &storev1.ListMailboxesRequest{Pattern: "*"})
	wantCode(t, "no token", err, codes.Unauthenticated, storev1.Reason_REASON_AUTH_FAILED)
	_, err = f.client.Mailboxes.ListMailboxes(storeclient.WithToken(ctxTimeout(t), "pt1.test.e30.AAAA"), &storev1.ListMailboxesRequest{Pattern: "*"})
	wantCode(t, "forged token", err, codes.Unauthenticated, storev1.Reason_REASON_AUTH_FAILED)
}

// crossToken re-issues the session of ctx (made by other) with f's key, so
// that f's server accepts it: a valid session of another tenant.
func (f *fixture) crossToken(t *testing.T, other *fixture, _ context.Context) context.Context {
	t.Helper()
	a, err := other.repo.CreateAccount(context.Background(), other.tenant.ID, other.domain.ID, "cross", "")
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := f.tokens.IssueSession(idString(a.TenantID), idString(a.ID), a.Address, "imap")
	if err != nil {
		t.Fatal(err)
	}
	return storeclient.WithToken(ctxTimeout(t), tok)
}

// TestNATSDownDoesNotFailAppend: the event is lost (and counted), the
// message is stored.
func TestNATSDownDoesNotFailAppend(t *testing.T) {
	f := newFixture(t, fixtureOptions{natsClosed: true})
	_, ctx := f.account(t)
	if uid := f.mustAppend(t, ctx, "INBOX", simpleMsg("no-nats")); uid != 1 {
		t.Fatalf("uid %d", uid)
	}
	if _, err := f.client.Messages.StoreFlags(ctx, &storev1.StoreFlagsRequest{Mailbox: "INBOX", Uids: set(1, 1), Op: storev1.FlagOp_FLAG_OP_ADD, Flags: []string{`\Seen`}}); err != nil {
		t.Fatal(err)
	}
	if n := f.events.Failed(); n != 2 {
		t.Fatalf("%v failed events counted, want 2", n)
	}
}

// TestCollectorDeletesOnlyUnreferenced: after an expunge, the collector
// (grace 0) deletes the object of the expunged message and keeps one that
// a copy still refers to.
func TestCollectorDeletesOnlyUnreferenced(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	sc, ctx := f.account(t)
	f.mustAppend(t, ctx, "INBOX", simpleMsg("gone"))
	f.mustAppend(t, ctx, "INBOX", simpleMsg("kept"))
	if _, err := f.client.Mailboxes.CreateMailbox(ctx, &storev1.CreateMailboxRequest{Name: "Keep"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.client.Messages.CopyMessages(ctx, &storev1.CopyMessagesRequest{Mailbox: "INBOX", Uids: set(2, 2), Destination: "Keep"}); err != nil {
		t.Fatal(err)
	}
	keys := map[uint32]string{}
	if err := f.repo.FetchMeta(context.Background(), sc, mustInbox(t, f, sc).ID, nil, repo.FetchObject, 0, func(m *repo.MessageMeta) error {
		keys[m.UID] = m.ObjectKey
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.client.Messages.StoreFlags(ctx, &storev1.StoreFlagsRequest{Mailbox: "INBOX", Uids: set(1, 2), Op: storev1.FlagOp_FLAG_OP_ADD, Flags: []string{`\Deleted`}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.client.Messages.Expunge(ctx, &storev1.ExpungeRequest{Mailbox: "INBOX"}); err != nil {
		t.Fatal(err)
	}
	c, err := gc.New(gc.Options{Repo: f.repo, Blobs: f.blobs, Grace: 0})
	if err != nil {
		t.Fatal(err)
	}
	// Other tests share the database; collect until our object is gone,
	// with a deadline (the row's grace clock is the database's now()).
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := c.RunOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		_, err := f.blobs.Stat(context.Background(), keys[1])
		if errors.Is(err, blob.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("object of the expunged message still there: %v", err)
		}
	}
	if _, err := f.blobs.Stat(context.Background(), keys[2]); err != nil {
		t.Fatalf("object still referenced by a copy: %v", err)
	}
	got, _, err := f.body(ctx, &storev1.GetBodyRequest{Mailbox: "Keep", Uid: 1, Whole: true})
	if err != nil || !bytes.Equal(got, simpleMsg("kept")) {
		t.Fatalf("copy body %q, %v", got, err)
	}
}

// TestHoldObjectKeepsARetriedMessage: a delivery to a full mailbox records
// the object with no reference; the queue entry's hold keeps the collector
// (grace 0 here, an hour by default, while the retry may come a day
// later) from deleting its bytes, so the retry after the quota is raised
// delivers the message.
func TestHoldObjectKeepsARetriedMessage(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	bg := context.Background()
	sc, userCtx := f.account(t)
	if err := f.repo.SetQuota(bg, sc, 10, 0); err != nil {
		t.Fatal(err)
	}
	raw := simpleMsg("held")
	key := "msg/" + idString(f.tenant.ID) + "/2026/11/26/qhold"
	if _, err := f.blobs.Put(bg, key, bytes.NewReader(raw)); err != nil {
		t.Fatal(err)
	}
	sctx := f.service(t, "delivery")
	req := &storev1.DeliverRequest{DeliveryId: "qhold", TenantId: idString(f.tenant.ID), BlobKey: key,
		Recipients: []*storev1.DeliverRecipient{{AccountId: idString(sc.AccountID)}}}
	resp, err := f.client.Messages.Deliver(sctx, req)
	if err != nil || resp.GetResults()[0].GetOutcome() != storev1.DeliverOutcome_DELIVER_OUTCOME_OVER_QUOTA {
		t.Fatalf("first attempt: %v, %v", resp, err)
	}
	hold := &storev1.HoldObjectRequest{TenantId: idString(f.tenant.ID), BlobKey: key, Holder: "qhold"}
	if _, err := f.client.Messages.HoldObject(sctx, hold); err != nil {
		t.Fatal(err)
	}
	c, err := gc.New(gc.Options{Repo: f.repo, Blobs: f.blobs, Grace: 0})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := c.RunOnce(bg); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.blobs.Stat(bg, key); err != nil {
		t.Fatalf("held object collected: %v", err)
	}
	if err := f.repo.SetQuota(bg, sc, 0, 0); err != nil {
		t.Fatal(err)
	}
	resp, err = f.client.Messages.Deliver(sctx, req)
	if err != nil || resp.GetResults()[0].GetOutcome() != storev1.DeliverOutcome_DELIVER_OUTCOME_DELIVERED {
		t.Fatalf("retry: %v, %v", resp, err)
	}
	got, _, err := f.body(userCtx, &storev1.GetBodyRequest{Mailbox: "INBOX", Uid: 1, Whole: true})
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("delivered body %q, %v", got, err)
	}
	if _, err := f.client.Messages.ReleaseObject(sctx, &storev1.ReleaseObjectRequest{TenantId: hold.TenantId, BlobKey: key, Holder: "qhold"}); err != nil {
		t.Fatal(err)
	}

	// Only a service, and only within the tenant's own objects.
	other := &storev1.HoldObjectRequest{TenantId: idString(f.tenant.ID), BlobKey: "msg/999999/2026/11/26/x", Holder: "q"}
	if _, err := f.client.Messages.HoldObject(sctx, other); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("hold of another tenant's key: %v", err)
	}
	if _, err := f.client.Messages.HoldObject(userCtx, hold); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("hold by an account session: %v", err)
	}
}

// TestDeliverBatch: each delivery of a batch gets its own result in
// request order; one whose object is missing fails alone (NOT_FOUND), and
// a repeated batch is all duplicates.
func TestDeliverBatch(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	bg := context.Background()
	var reqs []*storev1.DeliverRequest
	var users []context.Context
	for i := range 4 {
		sc, ctx := f.account(t)
		users = append(users, ctx)
		key := fmt.Sprintf("msg/%s/2026/11/26/batch%d", idString(f.tenant.ID), i)
		if i != 2 {
			if _, err := f.blobs.Put(bg, key, bytes.NewReader(simpleMsg(fmt.Sprintf("batch%d", i)))); err != nil {
				t.Fatal(err)
			}
		}
		reqs = append(reqs, &storev1.DeliverRequest{DeliveryId: fmt.Sprintf("batch%d", i), TenantId: idString(f.tenant.ID), BlobKey: key,
			Recipients: []*storev1.DeliverRecipient{{AccountId: idString(sc.AccountID), HeaderPrefix: []byte("Delivered-To: x\r\n")}}})
		if i == 3 {
			// The queue entry's copy: parsed instead of read back.
			reqs[i].Content = simpleMsg(fmt.Sprintf("batch%d", i))
		}
	}
	sctx := f.service(t, "delivery")
	for round, want := range []storev1.DeliverOutcome{storev1.DeliverOutcome_DELIVER_OUTCOME_DELIVERED, storev1.DeliverOutcome_DELIVER_OUTCOME_DUPLICATE} {
		resp, err := f.client.Messages.DeliverBatch(sctx, &storev1.DeliverBatchRequest{Deliveries: reqs})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetResults()) != len(reqs) {
			t.Fatalf("round %d: %d results", round, len(resp.GetResults()))
		}
		for i, r := range resp.GetResults() {
			if i == 2 {
				if codes.Code(r.GetCode()) != codes.NotFound || r.GetResponse() != nil {
					t.Fatalf("round %d: missing object gave %v", round, r)
				}
				continue
			}
			got := r.GetResponse().GetResults()
			if r.GetCode() != 0 || len(got) != 1 || got[0].GetOutcome() != want || got[0].GetAccountId() != reqs[i].Recipients[0].AccountId {
				t.Fatalf("round %d delivery %d: %v", round, i, r)
			}
		}
	}
	for i, ctx := range users {
		if i == 2 {
			continue
		}
		got, _, err := f.body(ctx, &storev1.GetBodyRequest{Mailbox: "INBOX", Uid: 1, Whole: true})
		if want := append([]byte("Delivered-To: x\r\n"), simpleMsg(fmt.Sprintf("batch%d", i))...); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("delivery %d body %q, %v", i, got, err)
		}
	}
	if _, err := f.client.Messages.DeliverBatch(users[0], &storev1.DeliverBatchRequest{Deliveries: reqs}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("batch by an account session: %v", err)
	}
}
