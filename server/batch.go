package server

import (
	"context"
	"errors"
	"sync"

	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/keys"
)

// maxBatch bounds how many verifications share one transaction.
const maxBatch = 256

// errClosed: the server is shutting down and takes no new verifications.
var errClosed = errors.New("the server is shutting down")

// verifyBatchFunc verifies requests together, each as if alone.
type verifyBatchFunc func(ctx context.Context, reqs []keys.VerifyRequest) ([]*keys.VerifyResult, error)

// batchVerifier is the store's VerifyBatch when it has one (SQLite: one
// transaction, one commit for the lot), else Verify for each request.
func batchVerifier(st store.Store) verifyBatchFunc {
	if b, ok := st.(store.BatchVerifier); ok {
		return b.VerifyBatch
	}
	return func(ctx context.Context, reqs []keys.VerifyRequest) ([]*keys.VerifyResult, error) {
		out := make([]*keys.VerifyResult, len(reqs))
		for i, req := range reqs {
			res, err := st.Verify(ctx, req)
			if err != nil {
				return nil, err
			}
			out[i] = res
		}
		return out, nil
	}
}

// batcher verifies concurrent requests in batches: one goroutine takes
// whatever is queued, verifies it in one call, and hands each result back.
// Under load the commit is shared; alone, a request waits for no one. It
// takes the verifications that must be exact (those that spend quota or
// rate limit), and all of them when the store has no fast path.
type batcher struct {
	verify  verifyBatchFunc
	metrics *metrics
	queue   chan *pending
	done    chan struct{}

	mu     sync.RWMutex // held for reading while sending on queue
	closed bool
}

type pending struct {
	req  keys.VerifyRequest
	res  *keys.VerifyResult
	err  error
	done chan struct{}
}

func newBatcher(verify verifyBatchFunc, m *metrics) *batcher {
	b := &batcher{verify: verify, metrics: m, queue: make(chan *pending, maxBatch), done: make(chan struct{})}
	go b.run()
	return b
}

// do verifies req in the next batch.
func (b *batcher) do(ctx context.Context, req keys.VerifyRequest) (*keys.VerifyResult, error) {
	p, err := b.submit(ctx, &pending{req: req})
	if err != nil {
		return nil, err
	}
	return p.res, nil
}

// submit queues p and waits for it. Once queued a job is verified and
// recorded even if ctx ends: the caller only stops waiting.
func (b *batcher) submit(ctx context.Context, p *pending) (*pending, error) {
	p.done = make(chan struct{})
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return nil, errClosed
	}
	b.queue <- p
	b.mu.RUnlock()
	select {
	case <-p.done:
		return p, p.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (b *batcher) run() {
	defer close(b.done)
	batch := make([]*pending, 0, maxBatch)
	for p := range b.queue {
		batch = append(batch[:0], p)
	fill:
		for len(batch) < maxBatch {
			select {
			case q, ok := <-b.queue:
				if !ok {
					break fill
				}
				batch = append(batch, q)
			default:
				break fill
			}
		}
		b.step(batch)
		for _, p := range batch {
			close(p.done)
		}
	}
}

// step verifies the jobs' requests in one call. If that call fails it was
// rolled back whole, so each is verified alone: one request's failure is
// only its own.
func (b *batcher) step(jobs []*pending) {
	if len(jobs) == 0 {
		return
	}
	reqs := make([]keys.VerifyRequest, len(jobs))
	for i, p := range jobs {
		reqs[i] = p.req
	}
	b.metrics.batchSize.Observe(float64(len(reqs)))
	// Not a request's context: one client going away must not undo the
	// others' verifications.
	res, err := b.verify(context.Background(), reqs)
	if err == nil {
		for i, p := range jobs {
			p.res = res[i]
		}
		return
	}
	for i, p := range jobs {
		if len(jobs) > 1 {
			var one []*keys.VerifyResult
			if one, err = b.verify(context.Background(), reqs[i:i+1]); err == nil {
				p.res = one[0]
				continue
			}
		}
		p.err = err
	}
}

// close stops taking requests and returns when every queued one is done.
func (b *batcher) close() {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.queue)
	}
	b.mu.Unlock()
	<-b.done
}
