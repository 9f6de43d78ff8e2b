package repotest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mail/petrel/services/store/internal/mimeparse"
	"github.com/petrel-mail/petrel/services/store/internal/repo"
)

// searchCorpus is the mailbox the SEARCH tests run over, UIDs 1 to 4.
// Message 2 is ISO-8859-1 with an encoded-word subject, so decoded
// matching is exercised; the dates straddle midnight so that the zone
// rules of BEFORE/ON/SINCE and SENT* show.
var searchCorpus = []struct {
	src   string
	flags repo.Flags
	date  time.Time // internal date
}{
	{
		src: "From: \"Alice Example\" <alice@example.org>\r\n" +
			"To: bob@example.net\r\n" +
			"Subject: Quarterly report 2050 plan\r\n" +
			"Date: Mon, 02 Mar 2026 23:30:00 -0800\r\n" +
			"X-Priority: 1\r\n" +
			"Message-ID: <1@example.org>\r\n" +
			"\r\n" +
			"Please find the 100% complete report_v2 attached.\r\n" +
			"See attached notes.\r\n",
		flags: repo.Flags{System: repo.FlagSeen, Keywords: []string{"$Important"}},
		date:  time.Date(2026, 3, 5, 12, 0, 0, 0, time.UTC),
	},
	{
		src: "From: =?UTF-8?B?SsO8cmdlbiBNw7xsbGVy?= <juergen@example.de>\r\n" +
			"To: bob@example.net\r\n" +
			"Cc: Carol <carol@example.com>\r\n" +
			"Subject: =?ISO-8859-1?Q?Gr=FC=DFe_aus_M=FCnchen?=\r\n" +
			"Date: Tue, 10 Mar 2026 00:30:00 +0100\r\n" +
			"MIME-Version: 1.0\r\n" +
			"Content-Type: text/plain; charset=iso-8859-1\r\n" +
			"Content-Transfer-Encoding: quoted-printable\r\n" +
			"\r\n" +
			"Sch=F6ne Gr=FC=DFe, report-v2 folgt.\r\n",
		flags: repo.Flags{System: repo.FlagFlagged | repo.FlagAnswered},
		date:  time.Date(2026, 3, 9, 23, 59, 59, 0, time.UTC),
	},
	{
		src: "From: dave@example.com\r\n" +
			"To: bob@example.net\r\n" +
			"Bcc: eve@example.com\r\n" +
			"Subject: 50% off_sale\r\n" +
			"X-Mailer: PetrelTest\r\n" +
			"  folded-continuation\r\n" +
			"\r\n" +
			"Visit http://shop.example.com/deals now <see attached> terms.\r\n",
		flags: repo.Flags{System: repo.FlagDeleted | repo.FlagDraft},
		date:  time.Date(2026, 3, 12, 8, 0, 0, 0, time.UTC),
	},
	{
		src: "From: Frank <frank@example.com>\r\n" +
			"To: bob@example.net\r\n" +
			"Subject: Hello World off-sale\r\n" +
			"Date: 12 Mar 2026 10:00:00 +0000\r\n" +
			"MIME-Version: 1.0\r\n" +
			"Content-Type: multipart/alternative; boundary=b1\r\n" +
			"\r\n" +
			"--b1\r\n" +
			"Content-Type: text/html; charset=utf-8\r\n" +
			"\r\n" +
			"<p>Hello <b>Big</b> World</p>\r\n" +
			"--b1--\r\n" + strings.Repeat("padding line\r\n", 300),
		date: time.Date(2026, 3, 13, 0, 0, 0, 0, time.UTC),
	},
}

// searchObject parses an RFC 5322 source and records it as an object.
func (e *env) searchObject(t *testing.T, src string) (int64, int64) {
	t.Helper()
	p, err := mimeparse.Parse(strings.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	id, err := e.r.CreateObject(context.Background(), e.tenant.ID, fmt.Sprintf("search/%d", e.n.Add(1)), p)
	if err != nil {
		t.Fatal(err)
	}
	return id, p.Size
}

func testSearch(t *testing.T, f Factory) {
	e := newEnv(t, f)
	ctx := context.Background()
	s := e.account(t)
	mb := e.inbox(t, s)
	var sizes []int64
	var modseqs []uint64
	for i, m := range searchCorpus {
		obj, size := e.searchObject(t, m.src)
		res, err := e.r.Append(ctx, s, mb.ID, repo.AppendRequest{ObjectID: obj, Flags: m.flags, InternalDate: m.date})
		if err != nil || res.UID != uint32(i+1) {
			t.Fatalf("append %d: %+v %v", i+1, res, err)
		}
		sizes = append(sizes, size)
		modseqs = append(modseqs, res.ModSeq)
	}
	// Another account of the same tenant holds the same messages and one
	// of its own: none of it may ever show up in s's results.
	other := e.account(t)
	otherBox := e.inbox(t, other)
	for _, src := range []string{searchCorpus[0].src, "Subject: zebra\r\n\r\nzebra secret\r\n"} {
		obj, _ := e.searchObject(t, src)
		if _, err := e.r.Append(ctx, other, otherBox.ID, repo.AppendRequest{ObjectID: obj}); err != nil {
			t.Fatal(err)
		}
	}

	leaf := func(c repo.Criteria) *repo.Criteria { return &c }
	hdr := func(field, value string) *repo.Criteria {
		return leaf(repo.Criteria{Op: repo.SearchHeader, Field: field, Value: value})
	}
	body := func(v string) *repo.Criteria { return leaf(repo.Criteria{Op: repo.SearchBody, Value: v}) }
	text := func(v string) *repo.Criteria { return leaf(repo.Criteria{Op: repo.SearchText, Value: v}) }
	flag := func(v string) *repo.Criteria { return leaf(repo.Criteria{Op: repo.SearchFlag, Flag: v}) }
	uids := func(rs ...repo.UIDRange) *repo.Criteria { return leaf(repo.Criteria{Op: repo.SearchUIDs, UIDs: rs}) }
	not := func(c *repo.Criteria) *repo.Criteria {
		return leaf(repo.Criteria{Op: repo.SearchNot, Children: []*repo.Criteria{c}})
	}
	and := func(cs ...*repo.Criteria) *repo.Criteria {
		return leaf(repo.Criteria{Op: repo.SearchAnd, Children: cs})
	}
	or := func(cs ...*repo.Criteria) *repo.Criteria { return leaf(repo.Criteria{Op: repo.SearchOr, Children: cs}) }
	date := func(op repo.SearchOp, dop repo.DateOp, d string) *repo.Criteria {
		tm, err := time.Parse("2006-01-02", d)
		if err != nil {
			t.Fatal(err)
		}
		return leaf(repo.Criteria{Op: op, DateOp: dop, Date: tm})
	}
	all := leaf(repo.Criteria{Op: repo.SearchAll})

	check := func(name string, c *repo.Criteria, want ...uint32) {
		t.Helper()
		got, highest, err := e.r.Search(ctx, s, mb.ID, c)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: got %v, want %v", name, got, want)
		}
		var wantHighest uint64
		for _, u := range want {
			wantHighest = max(wantHighest, modseqs[u-1])
		}
		if highest != wantHighest {
			t.Errorf("%s: highest modseq %d, want %d", name, highest, wantHighest)
		}
	}

	check("ALL", all, 1, 2, 3, 4)

	// Flags and keywords.
	check(`\Seen`, flag(`\Seen`), 1)
	check(`\seen lower-case`, flag(`\seen`), 1)
	check(`NOT \Seen`, not(flag(`\Seen`)), 2, 3, 4)
	check(`\Answered`, flag(`\Answered`), 2)
	check(`\Flagged`, flag(`\Flagged`), 2)
	check(`\Deleted`, flag(`\Deleted`), 3)
	check(`\Draft`, flag(`\Draft`), 3)
	check("unknown system flag", flag(`\Bogus`), []uint32{}...)
	check("keyword, other case", flag("$important"), 1)
	check("unknown keyword", flag("$NoSuchKeyword"), []uint32{}...)
	check("NOT unknown keyword", not(flag("$NoSuchKeyword")), 1, 2, 3, 4)

	// UID sets, with '*' as 0.
	check("UID 2:3", uids(repo.UIDRange{Start: 3, Stop: 2}), 2, 3)
	check("UID 1,4", uids(repo.UIDRange{Start: 1, Stop: 1}, repo.UIDRange{Start: 4, Stop: 4}), 1, 4)
	check("UID 3:*", uids(repo.UIDRange{Start: 3, Stop: 0}), 3, 4)
	check("UID *", uids(repo.UIDRange{}), 4)
	check("UID 10:* includes the largest", uids(repo.UIDRange{Start: 10, Stop: 0}), 4)
	check("UID 1,*", uids(repo.UIDRange{Start: 1, Stop: 1}, repo.UIDRange{Start: 0, Stop: 0}), 1, 4)
	check("UID 100:200", uids(repo.UIDRange{Start: 100, Stop: 200}), []uint32{}...)

	// Decoded header fields, case-insensitive.
	check("SUBJECT", hdr("Subject", "quarterly"), 1)
	check("SUBJECT encoded word, ISO-8859-1", hdr("subject", "grüße aus"), 2)
	check("SUBJECT upper-case non-ASCII", hdr("SUBJECT", "MÜNCHEN"), 2)
	check("FROM display name", hdr("From", "alice EXAMPLE"), 1)
	check("FROM encoded display name", hdr("from", "Jürgen"), 2)
	check("TO", hdr("To", "BOB@example"), 1, 2, 3, 4)
	check("CC", hdr("Cc", "carol"), 2)
	check("BCC", hdr("Bcc", "eve@"), 3)
	// Other fields: raw, unfolded values; empty string = has the field.
	check("HEADER present", hdr("x-priority", ""), 1)
	check("HEADER Subject present", hdr("Subject", ""), 1, 2, 3, 4)
	check("HEADER Cc present", hdr("CC", ""), 2)
	check("HEADER value", hdr("X-Mailer", "petreltest"), 3)
	check("HEADER folded value", hdr("X-Mailer", "test  folded"), 3)
	check("HEADER name is not value", hdr("X-Mailer", "x-mailer"), []uint32{}...)
	check("HEADER other field's value", hdr("X-Priority", "petrel"), []uint32{}...)
	check("HEADER missing", hdr("X-Nope", ""), []uint32{}...)

	// LIKE metacharacters match literally.
	check("SUBJECT 50%", hdr("Subject", "50%"), 3)
	check("SUBJECT off_sale", hdr("Subject", "off_sale"), 3)
	check("HEADER %", hdr("X-Mailer", "%"), []uint32{}...)
	check("BODY 100%", body("100%"), 1)
	check("BODY report_v2", body("report_v2"), 1)
	check(`BODY backslash`, body(`\`), []uint32{}...)

	// Body text: decoded, charset-converted, HTML without tags, substring
	// (not word) matching, with and without the word prefilter.
	check("BODY charset", body("SCHÖNE grüße"), 2)
	check("BODY inner substring", body("port_v"), 1)
	check("BODY single word", body("attached"), 1, 3)
	check("BODY words", body("see attached"), 1, 3)
	check("BODY across words", body(" attached notes."), 1)
	check("BODY prefix run", body("shop.example.com/de"), 3)
	check("BODY URL", body("http://shop"), 3)
	check("BODY tag-like text", body("<see attached> terms"), 3)
	check("BODY HTML text", body("hello big world"), 4)
	check("BODY HTML tags removed", body("<b>"), []uint32{}...)
	check("BODY not in header", body("alice"), []uint32{}...)
	check("BODY empty string", body(""), 1, 2, 3, 4)
	check("TEXT header only", text("PetrelTest"), 3)
	check("TEXT raw header name", text("x-priority: 1"), 1)
	check("TEXT decoded subject", text("münchen"), 2)
	check("TEXT body", text("report-v2"), 2)
	check("TEXT address", text("alice@example.org"), 1)
	check("TEXT other account's", text("zebra"), []uint32{}...)

	// Dates: internal date by UTC day; sent date by the header's own day.
	check("BEFORE", date(repo.SearchInternalDate, repo.DateBefore, "2026-03-09"), 1)
	check("ON 23:59:59 UTC", date(repo.SearchInternalDate, repo.DateOn, "2026-03-09"), 2)
	check("SINCE", date(repo.SearchInternalDate, repo.DateSince, "2026-03-10"), 3, 4)
	check("SENTON own zone -0800", date(repo.SearchSentDate, repo.DateOn, "2026-03-02"), 1)
	check("SENTON not the UTC day", date(repo.SearchSentDate, repo.DateOn, "2026-03-03"), []uint32{}...)
	check("SENTON own zone +0100", date(repo.SearchSentDate, repo.DateOn, "2026-03-10"), 2)
	check("SENTBEFORE", date(repo.SearchSentDate, repo.DateBefore, "2026-03-10"), 1)
	check("SENTSINCE", date(repo.SearchSentDate, repo.DateSince, "2026-03-10"), 2, 4)
	check("NOT SENTBEFORE includes undated", not(date(repo.SearchSentDate, repo.DateBefore, "2026-03-10")), 2, 3, 4)

	// Sizes.
	sorted := slices.Clone(sizes)
	slices.Sort(sorted)
	var wantLarger, wantSmaller []uint32
	for i, sz := range sizes {
		if sz > sorted[1] {
			wantLarger = append(wantLarger, uint32(i+1))
		}
		if sz < sorted[2] {
			wantSmaller = append(wantSmaller, uint32(i+1))
		}
	}
	check("LARGER", leaf(repo.Criteria{Op: repo.SearchLarger, Size: sorted[1]}), wantLarger...)
	check("SMALLER", leaf(repo.Criteria{Op: repo.SearchSmaller, Size: sorted[2]}), wantSmaller...)
	check("LARGER 0", leaf(repo.Criteria{Op: repo.SearchLarger}), 1, 2, 3, 4)

	// Combinations.
	check("OR", or(hdr("From", "alice"), hdr("Cc", "carol")), 1, 2)
	check("NOT OR", not(or(hdr("From", "alice"), hdr("Cc", "carol"))), 3, 4)
	check("nested AND", and(date(repo.SearchInternalDate, repo.DateSince, "2026-03-01"), not(flag(`\Deleted`)),
		or(body("big world"), hdr("Subject", "grüße"))), 2, 4)
	check("AND with UID set", and(uids(repo.UIDRange{Start: 2, Stop: 0}), or(text("shop.example"), flag(`\Flagged`))), 2, 3)
	check("NOT NOT", not(not(flag(`\Flagged`))), 2)
	check("OR of three", or(flag(`\Seen`), flag(`\Draft`), hdr("Subject", "hello")), 1, 3, 4)

	// MODSEQ and \Recent.
	st, err := e.r.StoreFlags(ctx, s, mb.ID, repo.UIDSet{{Start: 2, Stop: 2}}, repo.FlagsAdd, repo.Flags{System: repo.FlagSeen}, 0)
	if err != nil || len(st.Changed) != 1 {
		t.Fatalf("store: %+v %v", st, err)
	}
	modseqs[1] = st.Changed[0].ModSeq
	check("MODSEQ", leaf(repo.Criteria{Op: repo.SearchModSeq, ModSeq: st.Changed[0].ModSeq}), 2)
	check("MODSEQ 0", leaf(repo.Criteria{Op: repo.SearchModSeq}), 1, 2, 3, 4)
	check("RECENT before claim", leaf(repo.Criteria{Op: repo.SearchRecent}), 1, 2, 3, 4)
	check(`\Recent before claim`, flag(`\Recent`), 1, 2, 3, 4)
	if _, err := e.r.ClaimRecent(ctx, s, mb.ID); err != nil {
		t.Fatal(err)
	}
	check("RECENT after claim", leaf(repo.Criteria{Op: repo.SearchRecent}), []uint32{}...)
	check("NOT RECENT after claim", not(leaf(repo.Criteria{Op: repo.SearchRecent})), 1, 2, 3, 4)

	// Isolation: another account's mailbox id is not found, whatever the
	// criteria; a scope with the wrong tenant finds nothing either.
	_, _, err = e.r.Search(ctx, s, otherBox.ID, all)
	wantErr(t, "search another account's mailbox", err, repo.ErrNotFound)
	_, _, err = e.r.Search(ctx, repo.Scope{TenantID: e.tenant.ID + 1000, AccountID: s.AccountID}, mb.ID, all)
	wantErr(t, "search with the wrong tenant", err, repo.ErrNotFound)
	got, _, err := e.r.Search(ctx, other, otherBox.ID, body("zebra"))
	if err != nil || !slices.Equal(got, []uint32{2}) {
		t.Fatalf("other account's own search: %v %v", got, err)
	}
}

func testSearchInvalid(t *testing.T, f Factory) {
	e := newEnv(t, f)
	ctx := context.Background()
	s := e.account(t)
	mb := e.inbox(t, s)
	deep := &repo.Criteria{Op: repo.SearchAll}
	for range repo.MaxSearchDepth {
		deep = &repo.Criteria{Op: repo.SearchNot, Children: []*repo.Criteria{deep}}
	}
	wide := &repo.Criteria{Op: repo.SearchOr}
	for range repo.MaxSearchNodes {
		wide.Children = append(wide.Children, &repo.Criteria{Op: repo.SearchAll})
	}
	for name, c := range map[string]*repo.Criteria{
		"nil":              nil,
		"NOT of two":       {Op: repo.SearchNot, Children: []*repo.Criteria{{}, {}}},
		"empty OR":         {Op: repo.SearchOr},
		"empty AND":        {Op: repo.SearchAnd},
		"nil child":        {Op: repo.SearchAnd, Children: []*repo.Criteria{nil}},
		"too deep":         deep,
		"too many nodes":   wide,
		"bad field name":   {Op: repo.SearchHeader, Field: "Sub ject", Value: "x"},
		"field with colon": {Op: repo.SearchHeader, Field: "Subject:", Value: "x"},
		"NUL in string":    {Op: repo.SearchBody, Value: "a\x00b"},
		"invalid UTF-8":    {Op: repo.SearchText, Value: "\xff"},
		"negative size":    {Op: repo.SearchLarger, Size: -1},
		"missing date":     {Op: repo.SearchSentDate, DateOp: repo.DateOn},
		"unknown key":      {Op: repo.SearchOp(99)},
		"empty UID set":    {Op: repo.SearchUIDs},
		"operand on leaf":  {Op: repo.SearchAll, Children: []*repo.Criteria{{}}},
	} {
		_, _, err := e.r.Search(ctx, s, mb.ID, c)
		wantErr(t, name, err, repo.ErrInvalidSearch)
	}
	// The deepest and largest trees allowed are accepted.
	ok := &repo.Criteria{Op: repo.SearchAll}
	for range repo.MaxSearchDepth - 1 {
		ok = &repo.Criteria{Op: repo.SearchNot, Children: []*repo.Criteria{ok}}
	}
	if _, _, err := e.r.Search(ctx, s, mb.ID, ok); err != nil {
		t.Fatalf("depth %d: %v", repo.MaxSearchDepth, err)
	}
	wide.Children = wide.Children[:repo.MaxSearchNodes-1]
	if _, _, err := e.r.Search(ctx, s, mb.ID, wide); err != nil {
		t.Fatalf("%d nodes: %v", repo.MaxSearchNodes, err)
	}
	_, _, err := e.r.Search(ctx, s, mb.ID+1000, &repo.Criteria{Op: repo.SearchAll})
	wantErr(t, "missing mailbox", err, repo.ErrNotFound)
}
