package directory

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// countingDir answers from a table and counts the calls per address.
type countingDir struct {
	answers map[string]Recipient
	err     error
	calls   map[string]int
}

func (d *countingDir) ResolveRecipient(_ context.Context, address string, _ int64) (Recipient, error) {
	d.calls[address]++
	if d.err != nil {
		return Recipient{}, d.err
	}
	r, ok := d.answers[address]
	if !ok {
		return Recipient{Status: RecipientUnknownUser}, nil
	}
	return r, nil
}

func (d *countingDir) Authenticate(context.Context, string, string, string, netip.Addr) (Session, error) {
	d.calls["auth"]++
	return Session{AccountID: "1"}, nil
}

func (d *countingDir) CanSendAs(context.Context, string, string) (bool, error) {
	d.calls["sendas"]++
	return true, nil
}

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func newCountingDir() *countingDir {
	return &countingDir{
		answers: map[string]Recipient{
			"a@local.test":    {Status: RecipientLocal, TenantID: "1", AccountIDs: []string{"10"}},
			"full@local.test": {Status: RecipientOverQuota},
			"off@local.test":  {Status: RecipientDisabled},
			"x@remote.test":   {Status: RecipientNotLocal},
		},
		calls: map[string]int{},
	}
}

func TestCacheAnswersRepeatsWithinTTL(t *testing.T) {
	ctx := context.Background()
	d := newCountingDir()
	clk := &fakeClock{t: time.Unix(1_000_000, 0)}
	c := NewCache(d, 5*time.Second, 100, clk.now)

	for _, addr := range []string{"a@local.test", "x@remote.test", "nobody@local.test"} {
		first, err := c.ResolveRecipient(ctx, addr, 0)
		if err != nil {
			t.Fatal(err)
		}
		clk.t = clk.t.Add(4 * time.Second)
		again, err := c.ResolveRecipient(ctx, addr, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if again.Status != first.Status || again.TenantID != first.TenantID || fmt.Sprint(again.AccountIDs) != fmt.Sprint(first.AccountIDs) {
			t.Errorf("%s: cached %+v, first %+v", addr, again, first)
		}
		if d.calls[addr] != 1 {
			t.Errorf("%s: %d store calls within the TTL, want 1", addr, d.calls[addr])
		}
		clk.t = clk.t.Add(2 * time.Second) // 6 s after the first answer
		if _, err := c.ResolveRecipient(ctx, addr, 0); err != nil {
			t.Fatal(err)
		}
		if d.calls[addr] != 2 {
			t.Errorf("%s: %d store calls after the TTL, want 2", addr, d.calls[addr])
		}
	}
}

func TestCacheDoesNotKeepStatesAnAdministratorClears(t *testing.T) {
	ctx := context.Background()
	d := newCountingDir()
	c := NewCache(d, time.Minute, 100, nil)
	for _, addr := range []string{"full@local.test", "off@local.test"} {
		for range 3 {
			if _, err := c.ResolveRecipient(ctx, addr, 0); err != nil {
				t.Fatal(err)
			}
		}
		if d.calls[addr] != 3 {
			t.Errorf("%s: %d store calls, want 3 (not cached)", addr, d.calls[addr])
		}
	}
}

func TestCacheDoesNotKeepErrors(t *testing.T) {
	ctx := context.Background()
	d := newCountingDir()
	c := NewCache(d, time.Minute, 100, nil)
	d.err = fmt.Errorf("resolve recipient: %w", ErrUnavailable)
	if _, err := c.ResolveRecipient(ctx, "a@local.test", 0); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err %v, want ErrUnavailable", err)
	}
	d.err = nil
	r, err := c.ResolveRecipient(ctx, "a@local.test", 0)
	if err != nil || r.Status != RecipientLocal {
		t.Fatalf("after recovery: %+v, %v", r, err)
	}
	if d.calls["a@local.test"] != 2 {
		t.Errorf("%d store calls, want 2", d.calls["a@local.test"])
	}
}

func TestCacheCallersCannotChangeCachedAnswers(t *testing.T) {
	ctx := context.Background()
	c := NewCache(newCountingDir(), time.Minute, 100, nil)
	r, _ := c.ResolveRecipient(ctx, "a@local.test", 0)
	r.AccountIDs[0] = "changed"
	r2, _ := c.ResolveRecipient(ctx, "a@local.test", 0)
	if r2.AccountIDs[0] != "10" {
		t.Fatalf("cached answer changed by a caller: %v", r2.AccountIDs)
	}
}

func TestCacheIsBounded(t *testing.T) {
	ctx := context.Background()
	d := newCountingDir()
	clk := &fakeClock{t: time.Unix(1_000_000, 0)}
	cc := NewCache(d, time.Hour, 10, clk.now).(*Cache)
	for i := range 1000 {
		if _, err := cc.ResolveRecipient(ctx, fmt.Sprintf("u%d@local.test", i), 0); err != nil {
			t.Fatal(err)
		}
		if n := len(cc.cur) + len(cc.prev); n > 10 {
			t.Fatalf("after %d addresses the cache holds %d entries, bound 10", i+1, n)
		}
	}
	// The most recent answers are still served from the cache.
	if _, err := cc.ResolveRecipient(ctx, "u999@local.test", 0); err != nil {
		t.Fatal(err)
	}
	if d.calls["u999@local.test"] != 1 {
		t.Errorf("recent entry evicted: %d calls", d.calls["u999@local.test"])
	}
}

func TestCacheDisabledAndCredentialsPassThrough(t *testing.T) {
	d := newCountingDir()
	if got := NewCache(d, 0, 100, nil); got != Directory(d) {
		t.Fatalf("TTL 0 should return the directory itself, got %T", got)
	}
	c := NewCache(d, time.Minute, 100, nil)
	ctx := context.Background()
	for range 2 {
		if _, err := c.Authenticate(ctx, "u", "p", "submission", netip.MustParseAddr("127.0.0.1")); err != nil {
			t.Fatal(err)
		}
		if _, err := c.CanSendAs(ctx, "tok", "a@local.test"); err != nil {
			t.Fatal(err)
		}
	}
	if d.calls["auth"] != 2 || d.calls["sendas"] != 2 {
		t.Fatalf("credentials cached: %v", d.calls)
	}
}
