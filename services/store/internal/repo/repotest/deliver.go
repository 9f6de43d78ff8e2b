package repotest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/petrel-mail/petrel/services/store/internal/mimeparse"
	"github.com/petrel-mail/petrel/services/store/internal/repo"
)

func newObjectSpec(key string, size int64) *repo.NewObject {
	return &repo.NewObject{Key: key, Parsed: &mimeparse.Parsed{
		Size: size, Envelope: []byte(`(NIL "hi" NIL NIL NIL NIL NIL NIL NIL NIL)`),
		BodyStructure: []byte(`("text" "plain" NIL NIL NIL "7bit" 2 1)`), Body: []byte(`("text" "plain" NIL NIL NIL "7bit" 2 1)`),
		Parts: []mimeparse.Part{{Path: "", HeaderLen: 15, BodyOffset: 15, BodyLen: size - 15, ContentType: "text/plain"},
			{Path: "1", HeaderOffset: 15, BodyOffset: 15, BodyLen: size - 15, ContentType: "text/plain"}},
		Header: []byte("Subject: hi\r\n\r\n"), Subject: "hi", Text: "hello world",
	}}
}

// testDeliverNewObject: Deliver with NewObject records the object in the
// same call, once, however many deliveries of the same key race; the
// reference count equals the entries.
func testDeliverNewObject(t *testing.T, f Factory) {
	e := newEnv(t, f)
	ctx := context.Background()
	var scopes []repo.Scope
	for range 6 {
		scopes = append(scopes, e.account(t))
	}
	spec := newObjectSpec("new/1", 1000)
	var wg sync.WaitGroup
	errs := make([]error, len(scopes))
	for i, s := range scopes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := e.r.Deliver(ctx, repo.Delivery{TenantID: e.tenant.ID, DeliveryID: fmt.Sprint("d", i),
				Recipients: []int64{s.AccountID}, NewObject: spec})
			if err == nil && (len(res) != 1 || res[0].Err != nil) {
				err = fmt.Errorf("results %+v", res)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	var obj int64
	for i, s := range scopes {
		msgs := fetchAll(t, e.r, s, e.inbox(t, s).ID, repo.FetchObject|repo.FetchEnvelope|repo.FetchSize)
		if len(msgs) != 1 || msgs[0].ObjectKey != "new/1" || msgs[0].Size != 1000 || string(msgs[0].Envelope) == "" {
			t.Fatalf("recipient %d: %+v", i, msgs)
		}
		if i > 0 && msgs[0].ObjectID != obj {
			t.Fatalf("recipient %d has object %d, another has %d", i, msgs[0].ObjectID, obj)
		}
		obj = msgs[0].ObjectID
	}
	if o, err := e.r.GetObject(ctx, e.tenant.ID, obj); err != nil || o.RefCount != int64(len(scopes)) || o.Size != 1000 {
		t.Fatalf("object %+v, %v", o, err)
	}
	// Recording an existing key reuses its row.
	if _, err := e.r.Deliver(ctx, repo.Delivery{TenantID: e.tenant.ID, DeliveryID: "again", Recipients: []int64{scopes[0].AccountID}, NewObject: spec}); err != nil {
		t.Fatal(err)
	}
	if o, err := e.r.GetObject(ctx, e.tenant.ID, obj); err != nil || o.RefCount != int64(len(scopes))+1 {
		t.Fatalf("object %+v, %v", o, err)
	}
	// A tenant that does not exist records nothing.
	if _, err := e.r.Deliver(ctx, repo.Delivery{TenantID: 1 << 50, DeliveryID: "x", Recipients: []int64{scopes[0].AccountID},
		NewObject: newObjectSpec("new/2", 100)}); !errors.Is(err, repo.ErrNotFound) {
		t.Fatalf("unknown tenant: %v", err)
	}
}

// testDeliverHeaderPrefix: each recipient's header prefix is served before
// the object: size, header and part offsets count it; copies keep it.
func testDeliverHeaderPrefix(t *testing.T, f Factory) {
	e := newEnv(t, f)
	ctx := context.Background()
	a, b := e.account(t), e.account(t)
	pa := []byte("Delivered-To: a@example.org\r\n")
	spec := newObjectSpec("hp/1", 1000)
	res, err := e.r.Deliver(ctx, repo.Delivery{TenantID: e.tenant.ID, DeliveryID: "hp", Recipients: []int64{a.AccountID, b.AccountID},
		HeaderPrefix: map[int64][]byte{a.AccountID: pa}, NewObject: spec})
	if err != nil || len(res) != 2 || res[0].Err != nil || res[1].Err != nil {
		t.Fatalf("deliver: %+v, %v", res, err)
	}
	all := repo.FetchObject | repo.FetchSize | repo.FetchParts | repo.FetchHeader
	ma := fetchAll(t, e.r, a, e.inbox(t, a).ID, all)
	mb := fetchAll(t, e.r, b, e.inbox(t, b).ID, all)
	n := int64(len(pa))
	if len(ma) != 1 || ma[0].Size != 1000+n || !bytes.Equal(ma[0].HeaderPrefix, pa) ||
		!bytes.Equal(ma[0].Header, append(append([]byte{}, pa...), spec.Parsed.Header...)) ||
		ma[0].Parts[0].HeaderOffset != 0 || ma[0].Parts[0].HeaderLen != 15+n || ma[0].Parts[0].BodyOffset != 15+n ||
		ma[0].Parts[1].HeaderOffset != 15+n || ma[0].Parts[1].BodyOffset != 15+n || ma[0].Parts[1].BodyLen != 985 {
		t.Fatalf("with prefix: %+v", ma)
	}
	if len(mb) != 1 || mb[0].Size != 1000 || mb[0].HeaderPrefix != nil || !bytes.Equal(mb[0].Header, spec.Parsed.Header) ||
		mb[0].Parts[0].HeaderLen != 15 || mb[0].Parts[1].BodyOffset != 15 {
		t.Fatalf("without prefix: %+v", mb)
	}
	if q, err := e.r.GetQuota(ctx, a); err != nil || q.UsedBytes != 1000+n {
		t.Fatalf("quota %+v, %v", q, err)
	}
	dst, err := e.r.CreateMailbox(ctx, a, "Copy", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.Copy(ctx, a, e.inbox(t, a).ID, nil, dst.ID); err != nil {
		t.Fatal(err)
	}
	if mc := fetchAll(t, e.r, a, dst.ID, all); len(mc) != 1 || mc[0].Size != 1000+n || !bytes.Equal(mc[0].HeaderPrefix, pa) {
		t.Fatalf("copy: %+v", mc)
	}
	// A malformed prefix is refused and nothing is written.
	_, err = e.r.Deliver(ctx, repo.Delivery{TenantID: e.tenant.ID, DeliveryID: "bad", Recipients: []int64{b.AccountID},
		HeaderPrefix: map[int64][]byte{b.AccountID: []byte("Delivered-To: b\n")}, NewObject: spec})
	if !errors.Is(err, repo.ErrBadHeaderPrefix) {
		t.Fatalf("bad prefix: %v", err)
	}
	if mb := e.inbox(t, b); mb.Messages != 1 {
		t.Fatalf("bad prefix delivered: %+v", mb)
	}
}
