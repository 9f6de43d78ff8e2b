package server

import (
	"slices"
	"testing"

	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"
	"google.golang.org/grpc/codes"
)

func keyAll() *storev1.SearchKey { return &storev1.SearchKey{Key: &storev1.SearchKey_All{All: true}} }
func keyNot(k *storev1.SearchKey) *storev1.SearchKey {
	return &storev1.SearchKey{Key: &storev1.SearchKey_Not{Not: k}}
}
func keyOr(ks ...*storev1.SearchKey) *storev1.SearchKey {
	return &storev1.SearchKey{Key: &storev1.SearchKey_Or{Or: &storev1.SearchKeys{Keys: ks}}}
}
func keyAnd(ks ...*storev1.SearchKey) *storev1.SearchKey {
	return &storev1.SearchKey{Key: &storev1.SearchKey_And{And: &storev1.SearchKeys{Keys: ks}}}
}
func keyFlag(f string) *storev1.SearchKey {
	return &storev1.SearchKey{Key: &storev1.SearchKey_Flag{Flag: f}}
}
func keyHeader(field, value string) *storev1.SearchKey {
	return &storev1.SearchKey{Key: &storev1.SearchKey_Header{Header: &storev1.HeaderMatch{Field: field, Value: value}}}
}
func keyBody(v string) *storev1.SearchKey {
	return &storev1.SearchKey{Key: &storev1.SearchKey_Body{Body: v}}
}
func keyText(v string) *storev1.SearchKey {
	return &storev1.SearchKey{Key: &storev1.SearchKey_Text{Text: v}}
}
func keyUIDs(rs ...*storev1.UIDRange) *storev1.SearchKey {
	return &storev1.SearchKey{Key: &storev1.SearchKey_Uids{Uids: &storev1.UIDSet{Ranges: rs}}}
}
func keySent(op, date string) *storev1.SearchKey {
	return &storev1.SearchKey{Key: &storev1.SearchKey_SentDate{SentDate: &storev1.DateMatch{Op: op, Date: date}}}
}
func keyInternal(op, date string) *storev1.SearchKey {
	return &storev1.SearchKey{Key: &storev1.SearchKey_InternalDate{InternalDate: &storev1.DateMatch{Op: op, Date: date}}}
}

// TestSearch runs SEARCH through the gRPC API: the tree translation, the
// session's scope, and the error mapping of malformed trees.
func TestSearch(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	_, ctx := f.account(t)
	u1 := f.mustAppend(t, ctx, "INBOX", simpleMsg("alpha"), `\Seen`)
	u2 := f.mustAppend(t, ctx, "INBOX", multipartMsg(), "$Work")
	u3 := f.mustAppend(t, ctx, "INBOX", []byte("From: carol@example.com\r\nSubject: 50% off_sale\r\n"+
		"Date: Thu, 26 Nov 2026 00:30:00 +0100\r\n\r\nsee attached\r\n"))
	// Another account's identical message never shows up.
	_, otherCtx := f.account(t)
	f.mustAppend(t, otherCtx, "INBOX", simpleMsg("alpha"))
	f.mustAppend(t, otherCtx, "INBOX", simpleMsg("alpha"))
	f.mustAppend(t, otherCtx, "INBOX", simpleMsg("alpha"))
	f.mustAppend(t, otherCtx, "INBOX", simpleMsg("alpha"))

	st, err := f.client.Messages.StoreFlags(ctx, &storev1.StoreFlagsRequest{Mailbox: "INBOX",
		Uids: &storev1.UIDSet{Ranges: []*storev1.UIDRange{{Start: u2, Stop: u2}}}, Op: storev1.FlagOp_FLAG_OP_ADD, Flags: []string{`\Flagged`}})
	if err != nil {
		t.Fatal(err)
	}
	u2ModSeq := st.GetChanged()[0].GetModseq()

	for _, tc := range []struct {
		name        string
		key         *storev1.SearchKey
		want        []uint32
		wantHighest bool // highest_modseq is u2's after the STORE
	}{
		{"ALL", keyAll(), []uint32{u1, u2, u3}, true},
		{"keyword", keyFlag("$work"), []uint32{u2}, true},
		{"NOT \\Seen", keyNot(keyFlag(`\Seen`)), []uint32{u2, u3}, true},
		{"encoded subject", keyHeader("Subject", "grüße"), []uint32{u2}, true},
		{"FROM", keyHeader("From", "ALICE@example"), []uint32{u1, u2}, true},
		{"literal %", keyHeader("Subject", "50%"), []uint32{u3}, false},
		{"literal _", keyBody("off_sale"), nil, false},
		{"BODY", keyBody("the TEXT part"), []uint32{u2}, true},
		{"TEXT", keyText("off_sale"), []uint32{u3}, false},
		{"OR", keyOr(keyBody("hello alpha"), keyBody("see attached")), []uint32{u1, u3}, false},
		{"UID 2:*", keyUIDs(&storev1.UIDRange{Start: u2, Stop: 0}), []uint32{u2, u3}, true},
		{"UID 99:* is the largest", keyUIDs(&storev1.UIDRange{Start: 99, Stop: 0}), []uint32{u3}, false},
		{"nested AND", keyAnd(keyInternal("on", "2026-11-25"), keyNot(keyOr(keyFlag(`\Seen`), keyHeader("Subject", "off")))), []uint32{u2}, true},
		{"SENTON own zone", keySent("on", "2026-11-26"), []uint32{u3}, false},
		{"MODSEQ", &storev1.SearchKey{Key: &storev1.SearchKey_Modseq{Modseq: u2ModSeq}}, []uint32{u2}, true},
		{"LARGER", &storev1.SearchKey{Key: &storev1.SearchKey_Larger{Larger: 100 << 10}}, []uint32{u2}, true},
		{"SMALLER", &storev1.SearchKey{Key: &storev1.SearchKey_Smaller{Smaller: 100 << 10}}, []uint32{u1, u3}, false},
		{"RECENT", &storev1.SearchKey{Key: &storev1.SearchKey_Recent{Recent: true}}, []uint32{u1, u2, u3}, true},
	} {
		res, err := f.client.Messages.Search(ctx, &storev1.SearchRequest{Mailbox: "INBOX", Criteria: tc.key})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !slices.Equal(res.GetUids(), tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, res.GetUids(), tc.want)
		}
		if len(tc.want) == 0 && res.GetHighestModseq() != 0 {
			t.Errorf("%s: highest modseq %d with no match", tc.name, res.GetHighestModseq())
		}
		if tc.wantHighest && res.GetHighestModseq() != u2ModSeq {
			t.Errorf("%s: highest modseq %d, want %d", tc.name, res.GetHighestModseq(), u2ModSeq)
		}
	}

	deep := keyAll()
	for range 64 {
		deep = keyNot(deep)
	}
	var many []*storev1.SearchKey
	for range 1024 {
		many = append(many, keyAll())
	}
	for name, key := range map[string]*storev1.SearchKey{
		"no criteria":       nil,
		"empty key":         {},
		"NOT of nothing":    keyNot(nil),
		"empty OR":          keyOr(),
		"empty AND":         keyAnd(),
		"nil operand":       keyAnd(keyAll(), nil),
		"too deep":          deep,
		"too many keys":     keyOr(many...),
		"bad date op":       keySent("after", "2026-11-25"),
		"bad date":          keyInternal("on", "25-Nov-2026"),
		"bad header name":   keyHeader("Sub ject", "x"),
		"empty header name": keyHeader("", "x"),
		"NUL":               keyBody("a\x00b"),
		"empty flag":        keyFlag(""),
		"negative size":     &storev1.SearchKey{Key: &storev1.SearchKey_Larger{Larger: -1}},
		"empty UID set":     keyUIDs(),
	} {
		_, err := f.client.Messages.Search(ctx, &storev1.SearchRequest{Mailbox: "INBOX", Criteria: key})
		wantCode(t, name, err, codes.InvalidArgument, storev1.Reason_REASON_UNSPECIFIED)
	}
	_, err = f.client.Messages.Search(ctx, &storev1.SearchRequest{Mailbox: "Nope", Criteria: keyAll()})
	wantCode(t, "unknown mailbox", err, codes.NotFound, storev1.Reason_REASON_NOT_FOUND)
	_, err = f.client.Messages.Search(f.service(t, "delivery"), &storev1.SearchRequest{Mailbox: "INBOX", Criteria: keyAll()})
	if err == nil {
		t.Fatal("search with a service token succeeded")
	}
}
