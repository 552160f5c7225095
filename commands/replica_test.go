package commands

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyctl/keyctl/store/keys"
	"github.com/keyctl/keyctl/store/postgres"
	"github.com/keyctl/keyctl/store/postgres/pgtest"
	"github.com/keyctl/keyctl/store/remote"
)

// TestReplicas runs two `keyctl serve` replicas on one PostgreSQL server of
// the test's own (so that it may stop it), with applications' clients
// split across them, and checks what the replicas promise together: an
// exact quota, a shared rate limit, revocation seen at the other replica
// within 100 ms, a replica killed mid-load without harm to the other, and
// PostgreSQL restarted mid-load without a revoked key ever passing.
func TestReplicas(t *testing.T) {
	pg := pgtest.Start(t)
	token, err := ownerToken(pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	top := t // replicas live as long as the whole test
	a, b := startReplica(top, "A", pg.URL), startReplica(top, "B", pg.URL)
	ctx := context.Background()
	admin := a.client(t, token)
	clients := func(rs ...*replica) []*remote.Client {
		var out []*remote.Client
		for i := range 16 {
			out = append(out, rs[i%len(rs)].client(t, token))
		}
		return out
	}
	create := func(p keys.CreateParams) (*keys.Key, string) {
		t.Helper()
		p.Env, p.Prefix = keys.Production, "sk"
		k, tok, err := admin.Create(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		return k, tok
	}

	t.Run("quota", func(t *testing.T) {
		_, tok := create(keys.CreateParams{Quota: new(int64(10_000))})
		counts := newTally()
		var wg sync.WaitGroup
		for _, c := range clients(a, b) {
			wg.Go(func() {
				for range 700 {
					counts.add(verifyReq(ctx, c, tok))
				}
			})
		}
		wg.Wait()
		if counts.count(keys.Valid) != 10_000 || counts.count(keys.QuotaExceeded) != 16*700-10_000 || len(counts.errs) > 0 {
			t.Fatalf("16 clients x 700 verifications of a quota of 10,000 across two replicas: %s; want exactly 10000 VALID", counts)
		}
	})

	t.Run("rate limit", func(t *testing.T) {
		const n = 20 // per second
		_, tok := create(keys.CreateParams{RateLimit: &keys.RateLimit{Count: n, Unit: "second"}})
		counts := newTally()
		// The replicas decide between the first request sent and the last
		// answer received, and surely between the first answer received and
		// the last request sent: the bounds of their span.
		var mu sync.Mutex
		var firstSent, firstAnswer, lastSent, lastAnswer time.Time
		var wg sync.WaitGroup
		until := time.Now().Add(3 * time.Second)
		for _, c := range clients(a, b) {
			wg.Go(func() {
				for time.Now().Before(until) {
					sent := time.Now()
					res, err := verifyReq(ctx, c, tok)
					got := time.Now()
					counts.add(res, err)
					mu.Lock()
					if firstSent.IsZero() || sent.Before(firstSent) {
						firstSent = sent
					}
					if firstAnswer.IsZero() || got.Before(firstAnswer) {
						firstAnswer = got
					}
					lastSent, lastAnswer = later(lastSent, sent), later(lastAnswer, got)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		// GCRA admits a burst of n, then n a second while calls keep coming:
		// never more (that would be a replica spending what another spent),
		// and not fewer.
		longest, shortest := lastAnswer.Sub(firstSent).Seconds(), lastSent.Sub(firstAnswer).Seconds()
		most, least := n+int(n*longest)+1, n+int(n*shortest)-1
		valid := counts.count(keys.Valid)
		t.Logf("rate limit %d/s over %.2fs across two replicas: %s (between %d and %d)", n, longest, counts, least, most)
		if valid > most || valid < least || len(counts.errs) > 0 || counts.count(keys.RateLimited)+valid != sum(counts) {
			t.Fatalf("%d VALID over %.2f-%.2fs at %d/s: want between %d and %d; %s", valid, shortest, longest, n, least, most, counts)
		}
	})

	t.Run("revocation", func(t *testing.T) {
		const tries = 1000
		toks := make([]string, tries)
		ids := make([]string, tries)
		var wg sync.WaitGroup
		var next atomic.Int64
		for range 8 {
			wg.Go(func() {
				for i := next.Add(1) - 1; i < tries; i = next.Add(1) - 1 {
					k, tok, err := admin.Create(ctx, keys.CreateParams{Env: keys.Production, Prefix: "sk"})
					if err != nil {
						t.Error(err)
						return
					}
					ids[i], toks[i] = k.ID, tok
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		// B is asked every millisecond: often enough to measure, and not
		// so often that the asking itself slows B down.
		atB := b.client(t, token)
		delays := make([]time.Duration, 0, tries)
		for i := range tries {
			if res, err := verifyReq(ctx, atB, toks[i]); err != nil || res.Code != keys.Valid {
				t.Fatalf("before revocation, at B: %v, %v", res, err)
			}
			if _, err := admin.Revoke(ctx, ids[i], "test"); err != nil {
				t.Fatal(err)
			}
			revoked := time.Now()
			for {
				res, err := verifyReq(ctx, atB, toks[i])
				if err != nil {
					t.Fatal(err)
				}
				if res.Code == keys.CodeRevoked {
					delays = append(delays, time.Since(revoked))
					break
				}
				if res.Code != keys.Valid || time.Since(revoked) > 10*time.Second {
					t.Fatalf("after revocation at A, at B: %s after %s", res.Code, time.Since(revoked))
				}
				time.Sleep(time.Millisecond)
			}
		}
		p50, p99, most := percentiles(delays)
		t.Logf("revocation at A refused at B after: p50 %s, p99 %s, max %s over %d tries", p50, p99, most, tries)
		if p99 >= 100*time.Millisecond {
			t.Errorf("revocation reached the other replica in p99 %s; want under 100ms", p99)
		}
	})

	t.Run("kill -9", func(t *testing.T) {
		const quota = 3000
		k, tok := create(keys.CreateParams{Quota: new(int64(quota))})
		fromA, fromB := newTally(), newTally()
		var valid atomic.Int64
		var killed atomic.Bool
		var wg sync.WaitGroup
		for i := range 16 {
			onA := i%2 == 0
			c := a.client(t, token)
			if !onA {
				c = b.client(t, token)
			}
			wg.Go(func() {
				for range 250 {
					if !onA && killed.Load() {
						// The load balancer sends B's clients to A.
						onA, c = true, a.client(t, token)
					}
					res, err := verifyReq(ctx, c, tok)
					if onA {
						fromA.add(res, err)
					} else {
						fromB.add(res, err)
					}
					if err == nil && res.Code == keys.Valid && valid.Add(1) == quota/3 {
						b.kill()
						killed.Store(true)
					}
				}
			})
		}
		wg.Wait()
		// Verifications in flight at B when it died may have spent without
		// their answer reaching the client: at most one per client of B.
		got := fromA.count(keys.Valid) + fromB.count(keys.Valid)
		t.Logf("kill -9 of B mid-load: A answered %s; B answered %s", fromA, fromB)
		if len(fromA.errs) > 0 {
			t.Fatalf("A failed while B died: %v", fromA.errs[0])
		}
		if got > quota || got < quota-8 {
			t.Fatalf("%d VALID answered for a quota of %d", got, quota)
		}
		after, err := admin.Get(ctx, k.ID)
		if err != nil || *after.QuotaRemaining != 0 {
			t.Fatalf("quota left after the load: %v, %v; want 0", after.QuotaRemaining, err)
		}
		if check, err := admin.VerifyAudit(ctx); err != nil || !check.OK {
			t.Fatalf("audit verify after B died: %+v, %v", check, err)
		}
		b = startReplica(top, "B", pg.URL)
	})

	t.Run("postgres restart", func(t *testing.T) {
		_, plain := create(keys.CreateParams{})
		rk, revoked := create(keys.CreateParams{})
		atA, atB := a.client(t, token), b.client(t, token)
		for _, c := range []*remote.Client{atA, atB} {
			for _, tok := range []string{plain, revoked} {
				if res, err := verifyReq(ctx, c, tok); err != nil || res.Code != keys.Valid {
					t.Fatalf("before: %v, %v", res, err)
				}
			}
		}
		if _, err := admin.Revoke(ctx, rk.ID, "test"); err != nil {
			t.Fatal(err)
		}
		for _, c := range []*remote.Client{atA, atB} {
			for {
				res, err := verifyReq(ctx, c, revoked)
				if err != nil {
					t.Fatal(err)
				}
				if res.Code == keys.CodeRevoked {
					break
				}
			}
		}

		type answer struct {
			sent, got time.Time
			replica   string
			revoked   bool
			code      keys.Code
			err       error
		}
		var (
			mu      sync.Mutex
			answers []answer
			stop    atomic.Bool
		)
		var wg sync.WaitGroup
		for i := range 8 {
			r, c := "A", atA
			if i%2 == 1 {
				r, c = "B", atB
			}
			wg.Go(func() {
				for n := 0; !stop.Load(); n++ {
					tok := []string{plain, revoked}[n%2]
					sent := time.Now()
					cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					res, err := verifyReq(cctx, c, tok)
					cancel()
					a := answer{sent: sent, got: time.Now(), replica: r, revoked: tok == revoked, err: err}
					if err == nil {
						a.code = res.Code
					}
					mu.Lock()
					answers = append(answers, a)
					mu.Unlock()
					if err != nil {
						time.Sleep(10 * time.Millisecond) // a client's pause before retrying
					}
				}
			})
		}
		time.Sleep(time.Second)
		if err := pg.Stop(); err != nil {
			t.Fatal(err)
		}
		stopped := time.Now()
		time.Sleep(3 * time.Second)
		starting := time.Now() // PostgreSQL may answer before Start returns
		if err := pg.Start(); err != nil {
			t.Fatal(err)
		}
		started := time.Now()
		back := map[string]time.Time{}
		deadline := started.Add(30 * time.Second)
		for len(back) < 2 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
			mu.Lock()
			for _, a := range answers {
				if a.sent.After(started) && !a.revoked && a.code == keys.Valid && back[a.replica].IsZero() {
					back[a.replica] = a.got
				}
			}
			mu.Unlock()
		}
		stop.Store(true)
		wg.Wait()

		var down, validDown int
		for _, a := range answers {
			if a.revoked && a.code == keys.Valid {
				t.Fatalf("a revoked key was VALID at %s, %s after PostgreSQL stopped", a.replica, a.sent.Sub(stopped))
			}
			// Fail closed: nothing is VALID while PostgreSQL is down, past
			// the cache's documented bound (postgres.DefaultStaleAfter).
			if a.sent.After(stopped.Add(postgres.DefaultStaleAfter)) && a.got.Before(starting) {
				if a.code == keys.Valid {
					validDown++
				}
				if unavailable(a.err) {
					down++
				}
			}
			if a.err != nil && !unavailable(a.err) && a.sent.After(stopped) {
				t.Errorf("at %s, %s after the stop: %v, want 503 unavailable", a.replica, a.sent.Sub(stopped), a.err)
			}
		}
		if validDown > 0 || down == 0 {
			t.Fatalf("while PostgreSQL was down: %d VALID, %d answered 503", validDown, down)
		}
		for _, r := range []string{"A", "B"} {
			if back[r].IsZero() {
				t.Fatalf("replica %s did not answer VALID within 30s of PostgreSQL's return", r)
			}
			t.Logf("replica %s answered again %s after PostgreSQL returned", r, back[r].Sub(started))
			if back[r].Sub(started) > 10*time.Second {
				t.Errorf("replica %s took %s to answer again; want seconds", r, back[r].Sub(started))
			}
		}
	})
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func sum(t *tally) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, c := range t.codes {
		n += c
	}
	return n
}
