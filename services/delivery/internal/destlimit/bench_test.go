package destlimit

import (
	"context"
	"testing"
	"time"
)

// BenchmarkDeliveryCycle is what the shared limiter costs one outbound
// delivery: Acquire, Feedback (answered) and release, against the test
// NATS server, one destination, a window at its ceiling (every Max-th
// feedback writes the window again).
func BenchmarkDeliveryCycle(b *testing.B) {
	for _, initial := range []int{0, 5} {
		name := "no-slow-start"
		if initial > 0 {
			name = "slow-start"
		}
		b.Run(name, func(b *testing.B) {
			s := openConfig(b, options(b), Config{Max: 10, Initial: initial, TTL: time.Minute, Holder: "bench"})
			ctx := context.Background()
			for b.Loop() {
				rel, err := s.Acquire(ctx, "example.org")
				if err != nil {
					b.Fatal(err)
				}
				if _, err := s.Feedback(ctx, "example.org", true); err != nil {
					b.Fatal(err)
				}
				rel()
			}
		})
	}
}
