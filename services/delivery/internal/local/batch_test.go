package local

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/petrel-mail/petrel/services/store/storeclient"
)

// fakeMessages answers Deliver and DeliverBatch, recording the batch
// sizes; gate, when set, holds every call until it is closed.
type fakeMessages struct {
	storev1.MessageServiceClient
	gate          chan struct{}
	entered       chan struct{}
	unimplemented bool

	mu      sync.Mutex
	batches []int
}

func (f *fakeMessages) wait() {
	if f.entered != nil {
		f.entered <- struct{}{}
	}
	if f.gate != nil {
		<-f.gate
	}
}

func result(req *storev1.DeliverRequest) *storev1.DeliverResponse {
	return &storev1.DeliverResponse{Results: []*storev1.DeliverResult{{AccountId: req.GetDeliveryId(), Outcome: storev1.DeliverOutcome_DELIVER_OUTCOME_DELIVERED}}}
}

func (f *fakeMessages) Deliver(_ context.Context, req *storev1.DeliverRequest, _ ...grpc.CallOption) (*storev1.DeliverResponse, error) {
	f.wait()
	f.mu.Lock()
	f.batches = append(f.batches, 1)
	f.mu.Unlock()
	return result(req), nil
}

func (f *fakeMessages) DeliverBatch(_ context.Context, req *storev1.DeliverBatchRequest, _ ...grpc.CallOption) (*storev1.DeliverBatchResponse, error) {
	if f.unimplemented {
		return nil, storeclient.FromStatus(status.Error(codes.Unimplemented, "no"))
	}
	f.wait()
	f.mu.Lock()
	f.batches = append(f.batches, len(req.GetDeliveries()))
	f.mu.Unlock()
	resp := &storev1.DeliverBatchResponse{}
	for _, d := range req.GetDeliveries() {
		if d.GetDeliveryId() == "bad" {
			resp.Results = append(resp.Results, &storev1.DeliverBatchResult{Code: int32(codes.NotFound), Message: "blob missing"})
			continue
		}
		resp.Results = append(resp.Results, &storev1.DeliverBatchResult{Response: result(d)})
	}
	return resp, nil
}

// TestBatcherGroupsWhileBusy: a call goes out alone when nothing is in
// flight; what arrives while it is held leaves together in the next call,
// each caller getting its own result, a failed one its own error.
func TestBatcherGroupsWhileBusy(t *testing.T) {
	f := &fakeMessages{gate: make(chan struct{}), entered: make(chan struct{}, 100)}
	b := &batcher{rpc: f, maxBatch: 32, maxCalls: 1, timeout: time.Minute}
	ctx := context.Background()
	type res struct {
		id   string
		resp *storev1.DeliverResponse
		err  error
	}
	out := make(chan res, 10)
	send := func(id string) {
		go func() {
			r, err := b.deliver(ctx, &storev1.DeliverRequest{DeliveryId: id})
			out <- res{id, r, err}
		}()
	}
	send("first")
	<-f.entered // the first call is in flight, alone
	for i := range 5 {
		send(fmt.Sprint("q", i))
	}
	send("bad")
	// The six wait in the queue while the first call is held.
	waitQueued(t, b, 6)
	close(f.gate)
	for range 7 {
		r := <-out
		switch {
		case r.id == "bad":
			if !errors.Is(r.err, storeclient.ErrNotFound) {
				t.Errorf("bad delivery: %v, %v", r.resp, r.err)
			}
		case r.err != nil || r.resp.GetResults()[0].GetAccountId() != r.id:
			t.Errorf("%s: got %v, %v", r.id, r.resp, r.err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.batches) != 2 || f.batches[0] != 1 || f.batches[1] != 6 {
		t.Fatalf("calls carried %v deliveries, want [1 6]", f.batches)
	}
}

// TestBatcherOlderStore: a store without DeliverBatch gets one Deliver
// per entry.
func TestBatcherOlderStore(t *testing.T) {
	f := &fakeMessages{unimplemented: true, gate: make(chan struct{}), entered: make(chan struct{}, 100)}
	b := &batcher{rpc: f, maxBatch: 32, maxCalls: 1, timeout: time.Minute}
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := b.deliver(context.Background(), &storev1.DeliverRequest{DeliveryId: "a"}); err != nil {
			t.Error(err)
		}
	})
	<-f.entered
	for i := range 3 {
		wg.Go(func() {
			if _, err := b.deliver(context.Background(), &storev1.DeliverRequest{DeliveryId: fmt.Sprint(i)}); err != nil {
				t.Error(err)
			}
		})
	}
	waitQueued(t, b, 3)
	close(f.gate)
	wg.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.batches) != 4 {
		t.Fatalf("calls %v, want four single ones", f.batches)
	}
}

// waitQueued returns once n deliveries wait in b's queue. It polls, with
// a deadline: the queue has no event to wait on.
func waitQueued(t *testing.T, b *batcher, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.mu.Lock()
		got := len(b.queue)
		b.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d deliveries queued after 10s, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}
