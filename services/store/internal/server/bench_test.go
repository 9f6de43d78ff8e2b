package server

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"

	"github.com/petrel-mail/petrel/services/store/internal/auth"
	"github.com/petrel-mail/petrel/services/store/storeclient"
)

// message10K is a 10 KiB text message whose body is words drawn from a
// 3,000-word vocabulary, so that its search index is as large as a real
// letter's (a repeated phrase would index a handful of words).
func message10K() []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	vocab := make([]string, 3000)
	for i := range vocab {
		w := make([]byte, 3+rng.IntN(8))
		for j := range w {
			w[j] = byte('a' + rng.IntN(26))
		}
		vocab[i] = string(w)
	}
	var b strings.Builder
	b.WriteString("From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: Quarterly report\r\n" +
		"Date: Wed, 25 Nov 2026 10:00:00 +0000\r\nMessage-ID: <bench@example.org>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n\r\n")
	line := 0
	for b.Len() < 10<<10 {
		w := vocab[rng.IntN(len(vocab))]
		if line+len(w) > 72 {
			b.WriteString("\r\n")
			line = 0
		}
		b.WriteString(w + " ")
		line += len(w) + 1
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

// BenchmarkGRPCDeliver10KiB is the store's side of local delivery as the
// delivery service drives it: Deliver RPCs with a service token over an
// in-process gRPC connection, 16 concurrent callers, each delivery reading
// its 10 KiB object from MinIO, parsing it, and recording and linking it
// in PostgreSQL (one statement), to one of 16 recipients with Return-Path:
// and Delivered-To: header lines. The objects are written to MinIO before
// the timer starts, as smtp would have. `-benchtime=10000x` is issue 3's
// measure (10,000 messages).
func BenchmarkGRPCDeliver10KiB(b *testing.B) {
	f := newFixture(b, fixtureOptions{})
	var accounts []string
	for range 16 {
		sc, _ := f.account(b)
		accounts = append(accounts, idString(sc.AccountID))
	}
	tok, _, err := f.tokens.Issue(auth.Principal{Kind: auth.KindService, Service: "delivery"}, 24*time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	ctx := storeclient.WithToken(context.Background(), tok)
	raw := message10K()
	tenant := idString(f.tenant.ID)
	key := func(i int64) string { return fmt.Sprintf("msg/%s/2026/11/25/bench-%d", tenant, i) }

	// Write b.N objects with 16 writers.
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				if _, err := f.blobs.Put(ctx, key(i), bytes.NewReader(raw)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}

	var seq atomic.Int64
	b.SetParallelism(8) // 2 cores: 16 callers
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := seq.Add(1)
			acct := accounts[i%int64(len(accounts))]
			resp, err := f.client.Messages.Deliver(ctx, &storev1.DeliverRequest{
				DeliveryId: fmt.Sprint("bench-", i), TenantId: tenant, BlobKey: key(i),
				Recipients: []*storev1.DeliverRecipient{{AccountId: acct,
					HeaderPrefix: []byte("Return-Path: <alice@example.org>\r\nDelivered-To: user" + acct + "@example.net\r\n")}},
			})
			if err != nil || resp.GetResults()[0].GetOutcome() != storev1.DeliverOutcome_DELIVER_OUTCOME_DELIVERED {
				b.Errorf("deliver %d: %v %v", i, resp, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
