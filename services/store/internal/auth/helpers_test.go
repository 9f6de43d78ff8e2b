package auth

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
)

// cheapParams keep argon2id fast in tests; production uses DefaultParams.
var cheapParams = Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newTestHasher(t *testing.T) *Hasher {
	t.Helper()
	h, err := NewHasher(cheapParams)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func mustKey(t *testing.T, id string) Key {
	t.Helper()
	k, err := GenerateKey(id)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustKeyring(t *testing.T, current Key, previous ...Key) *Keyring {
	t.Helper()
	kr, err := NewKeyring(current, previous...)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func newTestTokens(t *testing.T, clock *fakeClock, kr *Keyring) *Tokens {
	t.Helper()
	tok, err := NewTokens(TokenOptions{Keyring: kr, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func metadataContext(kv ...string) context.Context {
	return metadata.NewOutgoingContext(context.Background(), metadata.Pairs(kv...))
}
