package repotest

import (
	"context"
	"slices"
	"testing"

	"github.com/petrel-mail/petrel/services/store/internal/repo"
)

// testKeywordList: the keyword list of an account is what SELECT sends as
// FLAGS; it names each keyword once, in its first spelling, and another
// account (or the same account id under another tenant) sees none of them.
func testKeywordList(t *testing.T, f Factory) {
	e := newEnv(t, f)
	ctx := context.Background()
	s, other := e.account(t), e.account(t)
	mb := e.inbox(t, s)
	if kw, err := e.r.Keywords(ctx, s); err != nil || len(kw) != 0 {
		t.Fatalf("new account keywords %q, %v", kw, err)
	}
	e.appendN(t, s, mb.ID, 1, 0)
	if _, err := e.r.StoreFlags(ctx, s, mb.ID, nil, repo.FlagsAdd, repo.Flags{Keywords: []string{"work", "$Label1"}}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.StoreFlags(ctx, s, mb.ID, nil, repo.FlagsAdd, repo.Flags{Keywords: []string{"WORK"}}, 0); err != nil {
		t.Fatal(err)
	}
	kw, err := e.r.Keywords(ctx, s)
	if err != nil || !slices.Equal(kw, []string{"$Label1", "work"}) {
		t.Fatalf("keywords %q, %v", kw, err)
	}
	if kw, err := e.r.Keywords(ctx, other); err != nil || len(kw) != 0 {
		t.Fatalf("other account sees keywords %q, %v", kw, err)
	}
	if kw, err := e.r.Keywords(ctx, repo.Scope{TenantID: s.TenantID + 1000, AccountID: s.AccountID}); err != nil || len(kw) != 0 {
		t.Fatalf("foreign tenant sees keywords %q, %v", kw, err)
	}
}
