package local

import (
	"context"
	"errors"
	"sync"
	"time"

	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/petrel-mail/petrel/services/store/storeclient"
)

// batcher turns the Deliver calls of concurrent workers into
// MessageService.DeliverBatch calls, the way a database groups commits: a
// call goes out at once while fewer than maxCalls are in flight, and
// whatever arrives meanwhile waits for the next free call and leaves with
// up to maxBatch others. A quiet queue so pays no added latency, and a
// busy one pays the store one gRPC call, one round of object reads and
// one database transaction per batch instead of per message.
type batcher struct {
	rpc      storev1.MessageServiceClient
	maxBatch int
	maxCalls int
	timeout  time.Duration

	mu      sync.Mutex
	queue   []*pendingDelivery
	calls   int
	noBatch bool // the store does not implement DeliverBatch
}

type pendingDelivery struct {
	req  *storev1.DeliverRequest
	done chan struct{}
	resp *storev1.DeliverResponse
	err  error
}

// deliver sends req in the next batch and waits for its result, or for
// ctx (the delivery may then still happen: Deliver is idempotent, and the
// caller repeats the attempt).
func (b *batcher) deliver(ctx context.Context, req *storev1.DeliverRequest) (*storev1.DeliverResponse, error) {
	p := &pendingDelivery{req: req, done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, p)
	if b.calls < b.maxCalls {
		b.calls++
		go b.run()
	}
	b.mu.Unlock()
	select {
	case <-p.done:
		return p.resp, p.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// run sends batches until the queue is empty.
func (b *batcher) run() {
	for {
		b.mu.Lock()
		if len(b.queue) == 0 {
			b.calls--
			b.mu.Unlock()
			return
		}
		n := min(len(b.queue), b.maxBatch)
		batch := make([]*pendingDelivery, n)
		copy(batch, b.queue)
		b.queue = append(b.queue[:0], b.queue[n:]...)
		noBatch := b.noBatch
		b.mu.Unlock()
		b.send(batch, noBatch)
	}
}

func (b *batcher) send(batch []*pendingDelivery, noBatch bool) {
	// The batch outlives any one worker's context; it has its own bound.
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	defer func() {
		for _, p := range batch {
			close(p.done)
		}
	}()
	if len(batch) == 1 || noBatch {
		b.sendEach(ctx, batch)
		return
	}
	req := &storev1.DeliverBatchRequest{}
	for _, p := range batch {
		req.Deliveries = append(req.Deliveries, p.req)
	}
	resp, err := b.rpc.DeliverBatch(ctx, req)
	if errors.Is(err, storeclient.ErrUnimplemented) {
		// An older store: one call each, from now on.
		b.mu.Lock()
		b.noBatch = true
		b.mu.Unlock()
		b.sendEach(ctx, batch)
		return
	}
	if err == nil && len(resp.GetResults()) != len(batch) {
		err = status.Errorf(codes.Internal, "DeliverBatch: %d results for %d deliveries", len(resp.GetResults()), len(batch))
		err = storeclient.FromStatus(err)
	}
	for i, p := range batch {
		if err != nil {
			p.err = err
			continue
		}
		r := resp.GetResults()[i]
		if c := codes.Code(r.GetCode()); c != codes.OK {
			p.err = storeclient.FromStatus(status.Error(c, r.GetMessage()))
			continue
		}
		p.resp = r.GetResponse()
	}
}

// sendEach sends the batch's deliveries one call each.
func (b *batcher) sendEach(ctx context.Context, batch []*pendingDelivery) {
	for _, p := range batch {
		p.resp, p.err = b.rpc.Deliver(ctx, p.req)
	}
}
