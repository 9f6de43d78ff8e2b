package retry_test

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mail/petrel/services/delivery/internal/retry"
)

// fixed is a random source that always returns the same value.
type fixed float64

func (f fixed) Float64() float64 { return float64(f) }

func TestDefaultIsValidAndPostfixLike(t *testing.T) {
	s := retry.Default()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if d := s.Delay(1, fixed(0)); d != 5*time.Minute {
		t.Errorf("first retry, no jitter: %v", d)
	}
	if d := s.Delay(1, fixed(0.999999)); d < 9*time.Minute || d > 10*time.Minute {
		t.Errorf("first retry, max jitter: %v, want just under 10m", d)
	}
	if d := s.Delay(2, fixed(0)); d != 10*time.Minute {
		t.Errorf("second retry: %v, want doubled", d)
	}
	if d := s.Delay(3, fixed(0)); d != 20*time.Minute {
		t.Errorf("third retry: %v", d)
	}
}

func TestDelayNeverExceedsCeilingOrUndercutsFloor(t *testing.T) {
	s := retry.Default()
	rnd := rand.New(rand.NewPCG(1, 2))
	prevBase := time.Duration(0)
	for attempt := 1; attempt <= 200; attempt++ {
		d := s.Delay(attempt, rnd)
		if d < s.Floor || d > s.Ceiling {
			t.Fatalf("attempt %d: delay %v outside [%v, %v]", attempt, d, s.Floor, s.Ceiling)
		}
		base := s.Delay(attempt, fixed(0))
		if base < prevBase {
			t.Fatalf("attempt %d: base delay %v shrank from %v", attempt, base, prevBase)
		}
		prevBase = base
	}
	// Late attempts still get jitter, not all exactly the ceiling.
	if s.Delay(100, fixed(0)) == s.Delay(100, fixed(0.9)) {
		t.Error("no jitter at the ceiling")
	}
}

func TestNextAndExpiry(t *testing.T) {
	s := retry.Default()
	arrival := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

	next, expired := s.Next(1, arrival, arrival.Add(time.Second), fixed(0.5))
	if expired || next != arrival.Add(time.Second+7*time.Minute+30*time.Second) {
		t.Fatalf("Next = %v %v", next, expired)
	}
	// Close to the end of the lifetime the last attempt lands at expiry.
	late := arrival.Add(5*24*time.Hour - time.Minute)
	next, expired = s.Next(40, arrival, late, fixed(0.5))
	if expired || !next.Equal(s.Expiry(arrival)) {
		t.Fatalf("near expiry: Next = %v %v, want %v", next, expired, s.Expiry(arrival))
	}
	if _, expired = s.Next(41, arrival, s.Expiry(arrival), fixed(0.5)); !expired {
		t.Fatal("attempt at expiry did not expire")
	}

	// Walking the whole schedule: attempts stay within 4h of each other and
	// the message expires after 5 days.
	now := arrival
	attempts := 0
	for {
		attempts++
		n, exp := s.Next(attempts, arrival, now, rand.New(rand.NewPCG(uint64(attempts), 7)))
		if exp {
			break
		}
		if n.Sub(now) > 4*time.Hour {
			t.Fatalf("gap %v after attempt %d", n.Sub(now), attempts)
		}
		now = n
	}
	if now.Sub(arrival) != 5*24*time.Hour {
		t.Errorf("expired at %v after arrival", now.Sub(arrival))
	}
	if attempts < 30 || attempts > 70 {
		t.Errorf("%d attempts over 5 days; expected a few dozen", attempts)
	}
}

func TestWarnDelay(t *testing.T) {
	s := retry.Default()
	arrival := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	if s.WarnDelay(arrival, arrival.Add(3*time.Hour), false) {
		t.Error("warned before 4h")
	}
	if !s.WarnDelay(arrival, arrival.Add(4*time.Hour), false) {
		t.Error("no warning at 4h")
	}
	if s.WarnDelay(arrival, arrival.Add(5*time.Hour), true) {
		t.Error("warned twice")
	}
	s.DelayWarning = 0
	if s.WarnDelay(arrival, arrival.Add(24*time.Hour), false) {
		t.Error("warned with warnings off")
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	err := retry.Schedule{Floor: 0, Ceiling: time.Minute, Jitter: -1, Lifetime: 0, DelayWarning: -1}.Validate()
	if err == nil {
		t.Fatal("invalid schedule accepted")
	}
	for _, want := range []string{"floor", "jitter", "lifetime", "delay warning"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if err := (retry.Schedule{Floor: time.Hour, Ceiling: time.Hour, Jitter: 1, Lifetime: time.Hour * 48}).Validate(); err == nil {
		t.Error("ceiling below floor×(1+jitter) accepted")
	}
}
