package server

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"
	"google.golang.org/grpc/codes"

	"github.com/petrel-mail/petrel/services/store/internal/repo"
)

// TestDeliverHeaderPrefix delivers one object to two recipients, each with
// its own Return-Path:/Delivered-To: lines (as Postfix's local delivery
// adds them), and checks that everything served agrees with the message
// as the recipient sees it: prefix, then object.
func TestDeliverHeaderPrefix(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	raw := multipartMsg()
	key := "msg/" + idString(f.tenant.ID) + "/2026/11/25/hp1"
	if _, err := f.blobs.Put(context.Background(), key, bytes.NewReader(raw)); err != nil {
		t.Fatal(err)
	}
	type rcpt struct {
		sc     repo.Scope
		ctx    context.Context
		prefix []byte
	}
	var rcpts []rcpt
	req := &storev1.DeliverRequest{DeliveryId: "hp1", TenantId: idString(f.tenant.ID), BlobKey: key}
	for i := range 2 {
		sc, ctx := f.account(t)
		prefix := []byte(fmt.Sprintf("Return-Path: <alice@example.org>\r\nDelivered-To: user%d@example.net\r\n", sc.AccountID))
		if i == 1 { // a folded line, and a different length
			prefix = []byte(fmt.Sprintf("Delivered-To:\r\n user%d@example.net\r\n", sc.AccountID))
		}
		rcpts = append(rcpts, rcpt{sc, ctx, prefix})
		req.Recipients = append(req.Recipients, &storev1.DeliverRecipient{AccountId: idString(sc.AccountID), HeaderPrefix: prefix})
	}
	sctx := f.service(t, "delivery")
	for round := range 2 { // the second is a duplicate and changes nothing
		resp, err := f.client.Messages.Deliver(sctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range resp.GetResults() {
			if r.GetUid() != 1 || (round == 0) != (r.GetOutcome() == storev1.DeliverOutcome_DELIVER_OUTCOME_DELIVERED) {
				t.Fatalf("round %d recipient %d: %v", round, i, r)
			}
		}
	}

	var parts0 []*storev1.MessagePart
	for i, r := range rcpts {
		served := append(append([]byte{}, r.prefix...), raw...)
		msgs := f.fetch(t, r.ctx, &storev1.FetchMessagesRequest{Mailbox: "INBOX", Fields: []storev1.FetchField{
			storev1.FetchField_FETCH_FIELD_SIZE, storev1.FetchField_FETCH_FIELD_PARTS, storev1.FetchField_FETCH_FIELD_HEADER,
			storev1.FetchField_FETCH_FIELD_BODYSTRUCTURE,
		}})
		if len(msgs) != 1 {
			t.Fatalf("recipient %d: %d messages", i, len(msgs))
		}
		m := msgs[0]
		whole, size, err := f.body(r.ctx, &storev1.GetBodyRequest{Mailbox: "INBOX", Uid: 1, Whole: true})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(whole, served) || size != int64(len(served)) || m.GetSize() != int64(len(served)) {
			t.Fatalf("recipient %d: BODY[] %d bytes (prefix ok: %v), GetBody size %d, RFC822.SIZE %d, want %d",
				i, len(whole), bytes.HasPrefix(whole, r.prefix), size, m.GetSize(), len(served))
		}
		if !bytes.HasPrefix(m.GetHeader(), r.prefix) || !bytes.Contains(m.GetHeader(), []byte("Subject: ")) {
			t.Errorf("recipient %d: header %q", i, m.GetHeader())
		}
		if !bytes.Contains(m.GetBodyStructure(), []byte(`"mixed"`)) {
			t.Errorf("recipient %d: bodystructure %s", i, m.GetBodyStructure())
		}
		// Every part's header and body, as served, read back through GetBody.
		if len(m.GetParts()) != 3 {
			t.Fatalf("recipient %d: parts %v", i, m.GetParts())
		}
		root := m.GetParts()[0]
		if root.GetPath() != "" || root.GetHeaderOffset() != 0 || root.GetBodyOffset() != root.GetHeaderLen() ||
			!bytes.HasSuffix(served[:root.GetHeaderLen()], []byte("\r\n\r\n")) || root.GetBodyOffset()+root.GetBodyLen() != int64(len(served)) {
			t.Fatalf("recipient %d: root part %v", i, root)
		}
		for _, p := range m.GetParts() {
			for _, rg := range [][2]int64{{p.GetHeaderOffset(), p.GetHeaderLen()}, {p.GetBodyOffset(), p.GetBodyLen()}} {
				got, _, err := f.body(r.ctx, &storev1.GetBodyRequest{Mailbox: "INBOX", Uid: 1, Offset: rg[0], Length: rg[1]})
				if err != nil || !bytes.Equal(got, served[rg[0]:rg[0]+rg[1]]) {
					t.Fatalf("recipient %d part %q range %v: %d bytes, %v", i, p.GetPath(), rg, len(got), err)
				}
			}
		}
		if i == 0 {
			parts0 = m.GetParts()
		} else if shift := int64(len(r.prefix) - len(rcpts[0].prefix)); parts0[2].GetBodyOffset()+shift != m.GetParts()[2].GetBodyOffset() {
			t.Errorf("part 2 offsets %v and %v differ by other than %d", parts0[2], m.GetParts()[2], shift)
		}
		// Ranges inside the prefix, across its end, and beyond it.
		p := int64(len(r.prefix))
		for _, rg := range [][2]int64{{0, 5}, {3, p - 3}, {p - 4, 10}, {p - 1, 2}, {p, 7}, {p + 1, 100}, {1, 70000}, {p - 2, int64(len(served))}} {
			got, _, err := f.body(r.ctx, &storev1.GetBodyRequest{Mailbox: "INBOX", Uid: 1, Offset: rg[0], Length: rg[1]})
			want := served[rg[0]:min(rg[0]+rg[1], int64(len(served)))]
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("recipient %d range %v: %q..., want %q..., %v", i, rg, got[:min(len(got), 40)], want[:min(len(want), 40)], err)
			}
		}
		// Quota and the mailbox size count the prefix.
		q, err := f.repo.GetQuota(context.Background(), r.sc)
		if err != nil || q.UsedBytes != int64(len(served)) {
			t.Errorf("recipient %d: quota %+v, %v", i, q, err)
		}
		if mb := mustInbox(t, f, r.sc); mb.Size != int64(len(served)) {
			t.Errorf("recipient %d: mailbox size %d", i, mb.Size)
		}

		// COPY and MOVE keep the prefix.
		if _, err := f.client.Mailboxes.CreateMailbox(r.ctx, &storev1.CreateMailboxRequest{Name: "Kept"}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.client.Messages.CopyMessages(r.ctx, &storev1.CopyMessagesRequest{Mailbox: "INBOX", Destination: "Kept", Uids: set(1, 1)}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.client.Mailboxes.CreateMailbox(r.ctx, &storev1.CreateMailboxRequest{Name: "Moved"}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.client.Messages.MoveMessages(r.ctx, &storev1.MoveMessagesRequest{Mailbox: "INBOX", Destination: "Moved", Uids: set(1, 1)}); err != nil {
			t.Fatal(err)
		}
		for _, mbox := range []string{"Kept", "Moved"} {
			got, size, err := f.body(r.ctx, &storev1.GetBodyRequest{Mailbox: mbox, Uid: 1, Whole: true})
			if err != nil || !bytes.Equal(got, served) || size != int64(len(served)) {
				t.Fatalf("recipient %d %s: %d bytes, size %d, %v", i, mbox, len(got), size, err)
			}
		}
		if q, err := f.repo.GetQuota(context.Background(), r.sc); err != nil || q.UsedBytes != 2*int64(len(served)) {
			t.Errorf("recipient %d after copy: quota %+v, %v", i, q, err)
		}
		rep, err := f.repo.RecomputeUsage(context.Background(), r.sc)
		if err != nil || rep.Before != rep.After || rep.MailboxesFixed != 0 {
			t.Errorf("recipient %d: counters drifted: %+v, %v", i, rep, err)
		}
	}

	// Malformed or oversized prefixes are refused before anything is stored.
	for _, p := range []string{"Delivered-To: x@example.net", "Delivered-To: x@example.net\r\n\r\nBody\r\n", "not a field\r\n",
		"X: " + string(bytes.Repeat([]byte("a"), repo.MaxHeaderPrefix)) + "\r\n"} {
		bad := &storev1.DeliverRequest{DeliveryId: "hp2", TenantId: idString(f.tenant.ID), BlobKey: key,
			Recipients: []*storev1.DeliverRecipient{{AccountId: idString(rcpts[0].sc.AccountID), HeaderPrefix: []byte(p)}}}
		_, err := f.client.Messages.Deliver(sctx, bad)
		wantCode(t, fmt.Sprintf("prefix %.30q", p), err, codes.InvalidArgument, storev1.Reason_REASON_UNSPECIFIED)
	}
}
