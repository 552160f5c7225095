package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keyctl/keyctl/apikey"
	"github.com/keyctl/keyctl/store/decide"
	"github.com/keyctl/keyctl/store/keys"
)

// The fast path of a long-running server (store.FastVerifier): a
// verification that spends nothing but usage is decided from the cache, or
// on a read when the cache does not hold the key, and its use is written in
// the background, many uses to a round trip, within flushEvery. One that
// would spend quota or rate limit is reported as exact, and the server
// verifies it with VerifyBatch, on the locked row. The listener and the
// heartbeat start with the first check: commands that run once and exit
// never listen.

const (
	flushEvery = 20 * time.Millisecond // how long a use waits, at most, to be written
	flushBatch = 1024                  // uses written by one round trip, at most
	maxPending = 64 * 1024             // uses kept while the database is unreachable, at most
	pruneEvery = time.Hour             // how often the usage log is trimmed
)

type verifier struct {
	p           *Postgres
	cache       *cache
	beatChannel string
	beatSoon    chan struct{}
	born        time.Time // the heartbeats' clock starts here
	ctx         context.Context
	stop        context.CancelFunc
	wg          sync.WaitGroup

	uses chan queued
	done chan error

	mu     sync.RWMutex // held for reading while sending on uses
	closed bool
}

// queued is a use to record or, with flushed set, a request to write what
// came before it now and report how that went.
type queued struct {
	use
	flushed chan error
}

// fastPath returns the store's verifier, starting it the first time.
func (p *Postgres) fastPath() (*verifier, error) {
	p.fastMu.Lock()
	defer p.fastMu.Unlock()
	if p.closed {
		return nil, keys.ErrClosed
	}
	if p.fast == nil {
		ctx, stop := context.WithCancel(context.Background())
		v := &verifier{p: p, cache: newCache(p.staleAfter), beatChannel: newBeatChannel(),
			beatSoon: make(chan struct{}, 1), born: time.Now(), ctx: ctx, stop: stop,
			uses: make(chan queued, 4*flushBatch), done: make(chan error, 1)}
		v.wg.Add(2)
		go func() { defer v.wg.Done(); v.listen(ctx) }()
		go func() { defer v.wg.Done(); v.heartbeat(ctx) }()
		go v.record()
		p.fast = v
	}
	return p.fast, nil
}

// Check verifies req from the cache or on a read when that decides it;
// exact reports that it must be verified with VerifyBatch instead.
func (p *Postgres) Check(ctx context.Context, req keys.VerifyRequest) (*keys.VerifyResult, bool, error) {
	v, err := p.fastPath()
	if err != nil {
		return nil, false, err
	}
	return v.check(ctx, req)
}

// CheckToken is Check for a caller's token: every key the cache holds is
// reused while nothing it depends on has changed, the caller's as any.
func (p *Postgres) CheckToken(ctx context.Context, req keys.VerifyRequest) (*keys.VerifyResult, bool, error) {
	return p.Check(ctx, req)
}

// CheckCall is CheckToken for a caller's token and then, if allow permits
// its result, Check for req.
func (p *Postgres) CheckCall(ctx context.Context, token keys.VerifyRequest, allow func(*keys.VerifyResult) bool, req keys.VerifyRequest) (res, tokRes *keys.VerifyResult, exact bool, err error) {
	v, err := p.fastPath()
	if err != nil {
		return nil, nil, false, err
	}
	if token.Token != "" {
		tokRes, exact, err = v.check(ctx, token)
		if err != nil || exact {
			return nil, nil, exact, err
		}
		if !allow(tokRes) {
			return nil, tokRes, false, nil
		}
	}
	res, exact, err = v.check(ctx, req)
	return res, tokRes, exact, err
}

// PropagationBound is how long a change made through another handle (or
// behind keyctl's back) may go unseen by this store's checks: every check
// that starts this long after the change committed sees it. See cache.go;
// a change made through this store is seen by its next check.
func (p *Postgres) PropagationBound() time.Duration { return p.staleAfter }

// Flush returns once every use checked so far is written, and reports a
// failure to write them.
func (p *Postgres) Flush(ctx context.Context) error {
	p.fastMu.Lock()
	v := p.fast
	p.fastMu.Unlock()
	if v == nil {
		return nil
	}
	return v.flush(ctx)
}

// fastQuery reads a secret and its key, without a lock.
const fastQuery = `SELECT s.digest, s.ends_at, k.rate_tat, ` + keyColumns + `
	FROM secrets s JOIN keys k ON k.id = s.key_id LEFT JOIN key_usage u ON u.key_id = k.id
	WHERE s.digest = $1`

func (v *verifier) check(ctx context.Context, req keys.VerifyRequest) (*keys.VerifyResult, bool, error) {
	if _, err := apikey.Parse(req.Token); err != nil {
		return keys.MalformedResult(), false, nil
	}
	if req.Cost < 0 {
		return nil, false, fmt.Errorf("%w: cost %d is negative", keys.ErrInvalid, req.Cost)
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	if v.closed {
		return nil, false, keys.ErrClosed
	}
	digest := apikey.Digest(req.Token, v.p.pepper)
	e, epoch := v.cache.get(digest)
	if e != nil {
		k := e.key
		k.UsageCount += e.uses.Add(1) - 1
		res, exact := v.decide(&k, e.ends, 0, req)
		if exact {
			e.uses.Add(-1)
		}
		return res, exact, nil
	}
	var stored []byte
	var ends *time.Time
	var tat int64
	k := &keys.Key{}
	dest, finish := v.p.keyDest(k)
	err := v.p.pool.QueryRow(ctx, fastQuery, digest).Scan(append([]any{&stored, &ends, &tat}, dest...)...)
	if errors.Is(err, pgx.ErrNoRows) || err == nil && !apikey.Equal(stored, digest) {
		return keys.NotFoundResult(), false, nil
	}
	if err != nil {
		return nil, false, classify(err)
	}
	finish()
	v.p.pepperProven()
	if ends != nil {
		*ends = ends.UTC()
	}
	v.cache.put(digest, epoch, k, ends)
	res, exact := v.decide(k, ends, tat, req)
	return res, exact, nil
}

// decide judges a key from the cache or a read, and queues its use; or
// reports that the verification must be exact: it would spend quota or
// rate limit, which only the locked row may decide. A refusal that spends
// nothing (revoked, disabled, expired, forbidden) is final either way.
func (v *verifier) decide(k *keys.Key, ends *time.Time, tat int64, req keys.VerifyRequest) (*keys.VerifyResult, bool) {
	exact := decide.Exact(k, req)
	out := decide.Decide(decide.State{Key: k, SecretEnds: ends, RateTAT: tat}, req, v.p.now())
	switch out.Result.Code {
	case keys.Valid, keys.RateLimited, keys.QuotaExceeded:
		if exact {
			return nil, true
		}
	}
	v.uses <- queued{use: use{keyID: k.ID, at: out.Use.At, code: out.Use.Code, ip: out.Use.IP}}
	return out.Result, false
}

// record writes queued uses as soon as one is waiting, together with
// whatever queues meanwhile (up to flushEvery later). Uses that could not be
// written are kept, up to maxPending, and written with the next ones; those
// still unwritten at Close are lost, and counted (store.Background).
func (v *verifier) record() {
	var (
		pending []use
		flushes []chan error
		lastErr error
	)
	lastPrune := time.Now()
	for q := range v.uses {
		flushes = flushes[:0]
		add := func(q queued) {
			if q.flushed != nil {
				flushes = append(flushes, q.flushed)
			} else {
				pending = append(pending, q.use)
			}
		}
		add(q)
		deadline := time.NewTimer(flushEvery)
	fill:
		for len(pending) < flushBatch && len(flushes) == 0 {
			select {
			case q, ok := <-v.uses:
				if !ok {
					break fill
				}
				add(q)
			case <-deadline.C:
				break fill
			}
		}
		deadline.Stop()
		pending, lastErr = v.write(pending)
		for _, f := range flushes {
			f <- lastErr
		}
		if time.Since(lastPrune) > pruneEvery {
			if err := v.p.PruneUsage(context.Background()); err != nil {
				v.p.bg.Failed(fmt.Errorf("pruning the usage log: %w", err))
			}
			lastPrune = time.Now()
		}
	}
	if pending, _ = v.write(pending); len(pending) > 0 {
		v.p.bg.Lost(len(pending))
	}
	v.done <- v.p.bg.Summary()
}

// write records pending in chunks; what fails stays pending, to be written
// with the next uses, and what is past maxPending is dropped. Each failure
// is reported when it happens (store.Background), with the uses dropped.
func (v *verifier) write(pending []use) ([]use, error) {
	for len(pending) > 0 {
		n := min(len(pending), flushBatch)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := v.p.recordUses(ctx, pending[:n])
		cancel()
		if err != nil {
			dropped := 0
			if over := len(pending) - maxPending; over > 0 {
				pending, dropped = pending[over:], over
			}
			err = fmt.Errorf("recording %d uses (%d kept to retry): %w", n, len(pending), err)
			v.p.bg.WriteFailed(err, dropped)
			return pending, err
		}
		v.p.bg.Recorded(n)
		pending = pending[n:]
	}
	return pending[:0], nil
}

func (v *verifier) flush(ctx context.Context) error {
	f := make(chan error, 1)
	v.mu.RLock()
	if v.closed {
		v.mu.RUnlock()
		return nil // close wrote everything
	}
	v.uses <- queued{flushed: f}
	v.mu.RUnlock()
	select {
	case err := <-f:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (v *verifier) close() error {
	v.mu.Lock()
	v.closed = true
	close(v.uses)
	v.mu.Unlock()
	err := <-v.done
	v.stop()
	v.wg.Wait()
	return err
}
