package delivery_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	queuev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/queue/v1"
)

// BenchmarkLocalDelivery measures local delivery throughput from the queue
// to the INBOX: b.N entries (one local recipient each, spread over
// benchAccounts accounts, small messages already in MinIO) wait in the stream; the timer
// runs from the consumer's start until the last entry is acknowledged, that
// is, stored by the real petrel-store in PostgreSQL. Reported as msgs/s.
//
// The entries carry smtp's RCPT-time resolution (tenant and account ids),
// as smtp writes them; BenchmarkLocalDeliveryResolve leaves it out, so
// every entry costs a ResolveRecipient call too (DSNs, older entries).
func BenchmarkLocalDelivery(b *testing.B) { benchLocalDelivery(b, true) }

// BenchmarkLocalDeliveryResolve is BenchmarkLocalDelivery with entries
// that delivery must resolve.
func BenchmarkLocalDeliveryResolve(b *testing.B) { benchLocalDelivery(b, false) }

func benchLocalDelivery(b *testing.B, carry bool) {
	e := newEnv(b)
	var rcpts []string
	for i := range benchAccounts {
		rcpts = append(rcpts, e.account(fmt.Sprintf("user%d", i)))
	}
	resolved := map[string]*queuev1.Recipient{}
	if carry {
		for _, r := range rcpts {
			resolved[r] = e.resolved(r)
		}
	}
	entries := make([]*queuev1.QueueEntry, b.N)
	var wg sync.WaitGroup
	work := make(chan int)
	for range 16 {
		wg.Go(func() {
			for i := range work {
				en := e.entry(fmt.Sprintf("QB%d", i), "sender@remote.test", rcpts[i%len(rcpts)])
				if r := resolved[rcpts[i%len(rcpts)]]; r != nil {
					en.Recipients[0] = r
				}
				entries[i] = en
			}
		})
	}
	for i := range b.N {
		work <- i
	}
	close(work)
	wg.Wait()
	ctx := testCtx(b)
	for _, en := range entries {
		data, err := proto.Marshal(en)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.js.PublishAsync(e.nopts.QueueInboundSubject(), data); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-e.js.PublishAsyncComplete():
	case <-ctx.Done():
		b.Fatal("publishing timed out")
	}

	b.ResetTimer()
	start := time.Now()
	stop := e.runConsumer(consumerOpts{concurrency: 64, quiet: true})
	waitForQuiet(b, func() bool { return streamMsgs(b, e.js, e.nopts.QueueStream()) == 0 })
	elapsed := time.Since(start)
	b.StopTimer()
	stop()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	total := 0
	for _, r := range rcpts {
		total += e.inbox(r)
	}
	if total != b.N {
		b.Fatalf("INBOXes hold %d messages, want %d", total, b.N)
	}
}

// benchAccounts is how many mailboxes share the load: each INBOX takes its
// deliveries one at a time (UID allocation), as in every IMAP store.
const benchAccounts = 32

// waitForQuiet polls like waitFor, with a deadline that scales to big runs.
func waitForQuiet(b *testing.B, cond func() bool) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			b.Fatal("timed out waiting for the queue to drain")
		case <-time.After(25 * time.Millisecond):
		}
	}
}
