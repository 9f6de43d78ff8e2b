// Package retry is the schedule for temporary delivery failures: when to
// try again, when to warn the sender that mail is delayed, and when to give
// up and bounce.
//
// The shape is Postfix's (SMTP-LESSONS 12): exponential backoff from a
// floor (the first retry comes within minutes) doubling up to a ceiling
// (hours), with jitter so that messages deferred together do not retry
// together, one delay warning, and a hard queue lifetime (RFC 5321
// §4.5.4.1 recommends giving up after 4–5 days). Everything here is a pure
// function of its arguments: the caller passes the clock reading and the
// random source.
package retry

import (
	"errors"
	"fmt"
	"time"
)

// Schedule configures retries. The zero value is not valid; start from
// Default.
type Schedule struct {
	// Floor is the base delay before the first retry.
	Floor time.Duration
	// Ceiling bounds the delay between two attempts, jitter included.
	Ceiling time.Duration
	// Jitter widens each delay by a random factor in [1, 1+Jitter).
	Jitter float64
	// Lifetime: a message still undelivered this long after arrival is
	// bounced.
	Lifetime time.Duration
	// DelayWarning: the sender gets one delay DSN once the message is this
	// old and still queued; 0 disables warnings.
	DelayWarning time.Duration
}

// Default is Postfix-like: first retry after 5–10 minutes, doubling, at
// most 4 hours apart, a delay warning after 4 hours, bounce after 5 days.
func Default() Schedule {
	return Schedule{
		Floor:        5 * time.Minute,
		Ceiling:      4 * time.Hour,
		Jitter:       1.0,
		Lifetime:     5 * 24 * time.Hour,
		DelayWarning: 4 * time.Hour,
	}
}

// Validate reports every problem at once.
func (s Schedule) Validate() error {
	var errs []error
	if s.Floor <= 0 {
		errs = append(errs, errors.New("retry floor must be positive"))
	}
	if s.Jitter < 0 {
		errs = append(errs, errors.New("retry jitter must not be negative"))
	}
	if s.Floor > 0 && float64(s.Ceiling) < float64(s.Floor)*(1+s.Jitter) {
		errs = append(errs, fmt.Errorf("retry ceiling %v must be at least floor × (1+jitter) = %v",
			s.Ceiling, time.Duration(float64(s.Floor)*(1+s.Jitter))))
	}
	if s.Lifetime <= 0 {
		errs = append(errs, errors.New("queue lifetime must be positive"))
	}
	if s.DelayWarning < 0 || (s.DelayWarning > 0 && s.DelayWarning >= s.Lifetime) {
		errs = append(errs, errors.New("delay warning must be 0 (off) or shorter than the queue lifetime"))
	}
	return errors.Join(errs...)
}

// Rand is the random source: a value uniformly in [0, 1). *rand.Rand from
// math/rand/v2 satisfies it.
type Rand interface {
	Float64() float64
}

// Delay is how long to wait after the attempt-th failed attempt (1 for the
// first): Floor·2^(attempt−1), capped so that with jitter it stays below
// Ceiling, times a random factor in [1, 1+Jitter).
func (s Schedule) Delay(attempt int, rnd Rand) time.Duration {
	limit := float64(s.Ceiling) / (1 + s.Jitter)
	base := float64(s.Floor)
	for i := 1; i < attempt && base < limit; i++ {
		base *= 2
	}
	base = min(base, limit)
	d := time.Duration(base * (1 + s.Jitter*rnd.Float64()))
	return min(max(d, s.Floor), s.Ceiling)
}

// Expiry is when a message that arrived at arrival is given up on; DSNs
// call it Will-Retry-Until (RFC 3464 §2.3.9).
func (s Schedule) Expiry(arrival time.Time) time.Time {
	return arrival.Add(s.Lifetime)
}

// Next decides what follows the attempt-th failed attempt at now for a
// message that arrived at arrival. It returns the time of the next attempt,
// or expired=true when the message must be bounced now. The last attempt
// is placed at the expiry time rather than skipped, so every message gets
// a try at the end of its lifetime.
func (s Schedule) Next(attempt int, arrival, now time.Time, rnd Rand) (next time.Time, expired bool) {
	expiry := s.Expiry(arrival)
	if !now.Before(expiry) {
		return time.Time{}, true
	}
	next = now.Add(s.Delay(attempt, rnd))
	if next.After(expiry) {
		next = expiry
	}
	return next, false
}

// WarnDelay reports whether a delay DSN is due: warnings are enabled, none
// was sent yet, and the message has been queued at least DelayWarning.
func (s Schedule) WarnDelay(arrival, now time.Time, alreadyWarned bool) bool {
	return s.DelayWarning > 0 && !alreadyWarned && now.Sub(arrival) >= s.DelayWarning
}
