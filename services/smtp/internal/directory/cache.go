package directory

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Cache is a Directory that remembers ResolveRecipient answers for a short
// time, so that a busy MX does not pay a store round trip for every RCPT
// TO of the same few addresses (Dovecot's auth cache and Postfix's
// proxymap do the same for the same reason). Authenticate and CanSendAs
// are never cached: they carry credentials.
//
// What is cached: Local, NotLocal and UnknownUser answers, for TTL.
// OverQuota and Disabled are not: they are the states an administrator
// clears and expects to take effect at once, and they are rare. Errors are
// never cached. The cost of the TTL: an account created, deleted or
// aliased is seen by RCPT TO up to TTL later. Delivery does not depend on
// it: the store checks the account and its quota again when it delivers.
//
// A cached Local answer was given for some SIZE=; the store's RCPT-time
// quota check is an early refusal only (delivery checks quota for real),
// so the answer is reused for any size.
//
// Memory is bounded: entries live in two generations of at most Max/2
// each; the older generation is dropped when the newer one fills or is
// older than TTL, so neither a flood of distinct addresses nor a long run
// grows the cache past Max entries.
type Cache struct {
	Directory
	ttl time.Duration
	max int
	now func() time.Time

	mu        sync.Mutex
	cur, prev map[string]cacheEntry
	curSince  time.Time
}

type cacheEntry struct {
	r  Recipient
	at time.Time
}

// NewCache wraps d. ttl <= 0 returns d itself (no cache); max is the
// entry bound (at least 2). now is the clock (nil: time.Now).
func NewCache(d Directory, ttl time.Duration, maxEntries int, now func() time.Time) Directory {
	if ttl <= 0 {
		return d
	}
	if now == nil {
		now = time.Now
	}
	return &Cache{Directory: d, ttl: ttl, max: max(maxEntries, 2), now: now, cur: map[string]cacheEntry{}}
}

// ResolveRecipient implements Directory.
func (c *Cache) ResolveRecipient(ctx context.Context, address string, size int64) (Recipient, error) {
	// The exact address: the store decides what case means.
	key := address
	now := c.now()
	c.mu.Lock()
	e, ok := c.cur[key]
	if !ok {
		e, ok = c.prev[key]
	}
	c.mu.Unlock()
	if ok && now.Sub(e.at) < c.ttl && !now.Before(e.at) {
		r := e.r
		r.AccountIDs = slices.Clone(r.AccountIDs)
		return r, nil
	}
	r, err := c.Directory.ResolveRecipient(ctx, address, size)
	if err != nil {
		return r, err
	}
	switch r.Status {
	case RecipientLocal, RecipientNotLocal, RecipientUnknownUser:
		c.put(key, r, now)
	}
	return r, nil
}

func (c *Cache) put(key string, r Recipient, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.cur) >= c.max/2 || now.Sub(c.curSince) >= c.ttl {
		// Everything in prev is older than curSince; when cur itself
		// started a TTL ago, prev holds nothing still valid.
		c.prev, c.cur, c.curSince = c.cur, make(map[string]cacheEntry, len(c.cur)), now
	}
	r.AccountIDs = slices.Clone(r.AccountIDs)
	c.cur[key] = cacheEntry{r: r, at: now}
}

// Authenticate implements Directory (never cached).
func (c *Cache) Authenticate(ctx context.Context, username, password, service string, remoteIP netip.Addr) (Session, error) {
	return c.Directory.Authenticate(ctx, username, password, service, remoteIP)
}

// CanSendAs implements Directory (never cached).
func (c *Cache) CanSendAs(ctx context.Context, sessionToken, address string) (bool, error) {
	return c.Directory.CanSendAs(ctx, sessionToken, address)
}
