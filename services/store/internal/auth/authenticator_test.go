package auth

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// memSource is an in-memory CredentialSource with both optional abilities,
// counting how often it is asked so tests can prove the path taken.
type memSource struct {
	mu       sync.Mutex
	accounts map[string]Credentials
	lookups  int
	rehashed map[string]string
	used     map[string]time.Time
	fail     error
}

func (s *memSource) Credentials(_ context.Context, username string) (Credentials, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lookups++
	if s.fail != nil {
		return Credentials{}, s.fail
	}
	c, ok := s.accounts[strings.ToLower(username)]
	if !ok {
		return Credentials{}, ErrUnknownUser
	}
	return c, nil
}

func (s *memSource) UpdatePasswordHash(_ context.Context, accountID, hash string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rehashed[accountID] = hash
	for k, c := range s.accounts {
		if c.AccountID == accountID {
			c.PasswordHash = hash
			s.accounts[k] = c
		}
	}
	return nil
}

func (s *memSource) AppPasswordUsed(_ context.Context, _, appPasswordID string, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.used[appPasswordID] = at
	return nil
}

var (
	_ PasswordRehasher    = (*memSource)(nil)
	_ AppPasswordRecorder = (*memSource)(nil)
)

type authFixture struct {
	auth    *Authenticator
	source  *memSource
	tokens  *Tokens
	clock   *fakeClock
	hasher  *Hasher
	metrics *Metrics
	appPW   string

	mu     sync.Mutex
	delays []time.Duration
}

func newAuthFixture(t *testing.T) *authFixture {
	t.Helper()
	f := &authFixture{clock: newFakeClock(), hasher: newTestHasher(t)}
	pwHash, err := f.hasher.Hash("alice's secret")
	if err != nil {
		t.Fatal(err)
	}
	appPW, appHash, err := f.hasher.NewAppPassword()
	if err != nil {
		t.Fatal(err)
	}
	f.appPW = appPW
	disabledHash, _ := f.hasher.Hash("dave's secret")
	f.source = &memSource{
		accounts: map[string]Credentials{
			"alice@example.test": {TenantID: "t1", AccountID: "a1", Address: "alice@example.test", PasswordHash: pwHash,
				AppPasswords: []AppPasswordHash{{ID: "ap1", Hash: appHash}}},
			"dave@example.test": {TenantID: "t1", AccountID: "a4", Address: "dave@example.test", PasswordHash: disabledHash, Disabled: true},
		},
		rehashed: map[string]string{},
		used:     map[string]time.Time{},
	}
	f.metrics, err = NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	f.tokens = newTestTokens(t, f.clock, mustKeyring(t, mustKey(t, "k1")))
	th := newTestThrottler(t, f.clock, f.metrics, nil)
	f.auth, err = NewAuthenticator(AuthenticatorOptions{
		Source: f.source, Hasher: f.hasher, Tokens: f.tokens, Throttler: th, Metrics: f.metrics,
		Now: f.clock.Now,
		Sleep: func(ctx context.Context, d time.Duration) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.delays = append(f.delays, d)
			return ctx.Err()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *authFixture) attempts(result string) float64 {
	return testutil.ToFloat64(f.metrics.attemptsTotal.WithLabelValues(result))
}

func TestAuthenticateSuccess(t *testing.T) {
	f := newAuthFixture(t)
	s, err := f.auth.Authenticate(context.Background(), "Alice@Example.test", "alice's secret", "imap", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	want := Principal{Kind: KindSession, TenantID: "t1", AccountID: "a1", Address: "alice@example.test", Service: "imap", ExpiresAt: f.clock.Now().Add(DefaultSessionTTL)}
	if s.Principal != want || !s.ExpiresAt.Equal(want.ExpiresAt) {
		t.Fatalf("session %+v, want principal %+v", s, want)
	}
	got, err := f.tokens.Verify(s.Token)
	if err != nil || got != want {
		t.Fatalf("session token verifies to %+v, %v; want %+v", got, err, want)
	}
	if f.attempts(resultSuccess) != 1 {
		t.Fatal("success not counted")
	}
	if len(f.source.rehashed) != 0 {
		t.Fatal("hash with current parameters was rehashed")
	}
}

func TestAuthenticateAppPassword(t *testing.T) {
	f := newAuthFixture(t)
	typed := strings.ToUpper(strings.ReplaceAll(f.appPW, "-", ""))
	s, err := f.auth.Authenticate(context.Background(), "alice@example.test", typed, "submission", "192.0.2.1")
	if err != nil {
		t.Fatalf("app password login: %v", err)
	}
	if s.Principal.AccountID != "a1" || s.Principal.Service != "submission" {
		t.Fatalf("principal %+v", s.Principal)
	}
	if at, ok := f.source.used["ap1"]; !ok || !at.Equal(f.clock.Now()) {
		t.Fatalf("app password use recorded as %v, %v", at, ok)
	}
	// The app password is Alice's, not Dave's.
	if _, err := f.auth.Authenticate(context.Background(), "dave@example.test", f.appPW, "imap", "192.0.2.1"); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("another account's app password: %v", err)
	}
}

// TestAuthenticateUnknownUserSameAsWrongPassword: both answers must be the
// same error, reached through the same work (one argon2id verification).
func TestAuthenticateUnknownUserSameAsWrongPassword(t *testing.T) {
	f := newAuthFixture(t)
	ctx := context.Background()
	f.source.accounts["gina@example.test"] = Credentials{TenantID: "t1", AccountID: "a7"} // app passwords only
	work := func(user string) (int64, error) {
		before := f.hasher.verifications.Load()
		_, err := f.auth.Authenticate(ctx, user, "guess", "imap", "")
		return f.hasher.verifications.Load() - before, err
	}
	workUnknown, errUnknown := work("nobody@example.test")
	workWrong, errWrong := work("alice@example.test")
	workNoPassword, errNoPassword := work("gina@example.test")
	if workUnknown != 1 || workWrong != 1 || workNoPassword != 1 {
		t.Fatalf("argon2id runs: unknown user %d, wrong password %d, account without password %d; want 1 each", workUnknown, workWrong, workNoPassword)
	}
	if errNoPassword != ErrAuthFailed {
		t.Fatalf("account without password: %v", errNoPassword)
	}
	if errUnknown != ErrAuthFailed || errWrong != ErrAuthFailed {
		t.Fatalf("unknown user: %v; wrong password: %v; want ErrAuthFailed for both, unwrapped", errUnknown, errWrong)
	}
	if errUnknown.Error() != errWrong.Error() {
		t.Fatal("error texts differ")
	}
	// A disabled account with a wrong password answers like the others:
	// only the owner of the password learns it is disabled.
	if _, err := f.auth.Authenticate(ctx, "dave@example.test", "guess", "imap", "192.0.2.3"); err != ErrAuthFailed {
		t.Fatalf("disabled account, wrong password: %v", err)
	}
	if got := f.attempts(resultFailure); got != 4 {
		t.Fatalf("failures counted %v, want 4", got)
	}
}

func TestAuthenticateDisabled(t *testing.T) {
	f := newAuthFixture(t)
	_, err := f.auth.Authenticate(context.Background(), "dave@example.test", "dave's secret", "pop3", "192.0.2.1")
	if !errors.Is(err, ErrDisabled) {
		t.Fatalf("disabled account: %v, want ErrDisabled", err)
	}
	if f.attempts(resultDisabled) != 1 {
		t.Fatal("disabled not counted")
	}
}

func TestAuthenticateThrottles(t *testing.T) {
	f := newAuthFixture(t)
	ctx := context.Background()
	// The fixture's user limits: delay after 3 failures, refuse after 6.
	for i := range 6 {
		if _, err := f.auth.Authenticate(ctx, "alice@example.test", "guess", "imap", "192.0.2.1"); err != ErrAuthFailed {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}
	if len(f.delays) != len(want) {
		t.Fatalf("delays %v, want %v", f.delays, want)
	}
	for i := range want {
		if f.delays[i] != want[i] {
			t.Fatalf("delays %v, want %v", f.delays, want)
		}
	}
	lookups := f.source.lookups
	// Locked: even the right password is refused, without a lookup.
	if _, err := f.auth.Authenticate(ctx, "alice@example.test", "alice's secret", "imap", "198.51.100.1"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("locked user: %v, want ErrThrottled", err)
	}
	if f.source.lookups != lookups {
		t.Fatal("a throttled attempt reached the credential source")
	}
	if f.attempts(resultThrottled) != 1 {
		t.Fatal("throttled attempt not counted")
	}

	// After the window the right password works and resets the count.
	f.clock.Advance(10 * time.Minute)
	if _, err := f.auth.Authenticate(ctx, "alice@example.test", "alice's secret", "imap", "198.51.100.1"); err != nil {
		t.Fatalf("login after the window: %v", err)
	}
	f.delays = nil
	for range 3 {
		f.auth.Authenticate(ctx, "alice@example.test", "guess", "imap", "198.51.100.1")
	}
	if len(f.delays) != 0 {
		t.Fatalf("delays %v after a successful login reset the count", f.delays)
	}
}

func TestAuthenticateDelayCanceled(t *testing.T) {
	f := newAuthFixture(t)
	for range 3 {
		f.auth.Authenticate(context.Background(), "alice@example.test", "guess", "imap", "192.0.2.1")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.auth.Authenticate(ctx, "alice@example.test", "alice's secret", "imap", "192.0.2.1"); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled during delay: %v", err)
	}
}

func TestAuthenticateRehash(t *testing.T) {
	f := newAuthFixture(t)
	old, err := NewHasher(Params{Memory: 32, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32})
	if err != nil {
		t.Fatal(err)
	}
	oldHash, _ := old.Hash("erin's secret")
	f.source.accounts["erin@example.test"] = Credentials{TenantID: "t1", AccountID: "a5", Address: "erin@example.test", PasswordHash: oldHash}
	if _, err := f.auth.Authenticate(context.Background(), "erin@example.test", "erin's secret", "imap", ""); err != nil {
		t.Fatal(err)
	}
	newHash := f.source.rehashed["a5"]
	if newHash == "" || f.hasher.NeedsRehash(newHash) {
		t.Fatalf("hash not upgraded: %q", newHash)
	}
	if ok, _ := f.hasher.Verify(newHash, "erin's secret"); !ok {
		t.Fatal("upgraded hash does not verify the password")
	}
}

func TestAuthenticateSourceError(t *testing.T) {
	f := newAuthFixture(t)
	f.source.fail = errors.New("database down")
	_, err := f.auth.Authenticate(context.Background(), "alice@example.test", "alice's secret", "imap", "")
	if err == nil || errors.Is(err, ErrAuthFailed) || !strings.Contains(err.Error(), "database down") {
		t.Fatalf("source failure: %v; want a wrapped internal error", err)
	}
	if f.attempts(resultError) != 1 {
		t.Fatal("error not counted")
	}
}

func TestAuthenticateMalformedStoredHash(t *testing.T) {
	f := newAuthFixture(t)
	f.source.accounts["frank@example.test"] = Credentials{TenantID: "t1", AccountID: "a6", PasswordHash: "$argon2id$broken"}
	if _, err := f.auth.Authenticate(context.Background(), "frank@example.test", "anything", "imap", ""); err != ErrAuthFailed {
		t.Fatalf("malformed stored hash: %v, want ErrAuthFailed", err)
	}
}

func TestNewAuthenticatorRequires(t *testing.T) {
	_, err := NewAuthenticator(AuthenticatorOptions{})
	if err == nil {
		t.Fatal("empty options accepted")
	}
	for _, want := range []string{"source", "hasher", "tokens", "throttler"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}
