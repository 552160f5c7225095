package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/keyctl/keyctl/store/keys"
	"github.com/keyctl/keyctl/store/postgres"
	"github.com/keyctl/keyctl/store/postgres/pgtest"
)

// Two stores on one database are two replicas: each has its own pool, as
// it would on its own machine.

func TestQuotaIsExactAcrossReplicas(t *testing.T) {
	addr := pgtest.NewDatabase(t)
	a, b := open(t, addr, nil), open(t, addr, nil)
	_, secret := create(t, a, keys.CreateParams{Name: "metered", Quota: int64p(300)})
	var valid, exceeded atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		s := []*postgres.Postgres{a, b}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 30 {
				var res *keys.VerifyResult
				var err error
				if i%4 < 2 {
					res, err = s.Verify(context.Background(), keys.VerifyRequest{Token: secret, Cost: 1})
				} else {
					var rs []*keys.VerifyResult
					rs, err = s.VerifyBatch(context.Background(), []keys.VerifyRequest{{Token: secret, Cost: 1}, {Token: secret, Cost: 1}})
					if err == nil {
						count(rs[0], &valid, &exceeded)
						res = rs[1]
					}
				}
				if err != nil {
					errs <- err
					return
				}
				count(res, &valid, &exceeded)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if valid.Load() != 300 || exceeded.Load() != 16*30+8*30-300 {
		t.Fatalf("VALID %d, QUOTA_EXCEEDED %d; want exactly 300 VALID of %d", valid.Load(), exceeded.Load(), 16*30+8*30)
	}
	k, _ := b.Get(context.Background(), "metered")
	if *k.QuotaRemaining != 0 || k.UsageCount != 16*30+8*30 {
		t.Errorf("quota_remaining %d, usage_count %d", *k.QuotaRemaining, k.UsageCount)
	}
}

func count(res *keys.VerifyResult, valid, exceeded *atomic.Int64) {
	switch res.Code {
	case keys.Valid:
		valid.Add(1)
	case keys.QuotaExceeded:
		exceeded.Add(1)
	}
}

func TestRateLimitIsSharedAcrossReplicas(t *testing.T) {
	addr := pgtest.NewDatabase(t)
	c := newClock() // frozen: GCRA admits exactly the burst, N
	a, b := open(t, addr, c), open(t, addr, c)
	_, secret := create(t, a, keys.CreateParams{Name: "limited", RateLimit: &keys.RateLimit{Count: 25, Unit: "second"}})
	var valid, limited atomic.Int64
	var wg sync.WaitGroup
	for i := range 8 {
		s := []*postgres.Postgres{a, b}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				res, err := s.Verify(context.Background(), keys.VerifyRequest{Token: secret, Cost: 1})
				if err != nil {
					t.Error(err)
					return
				}
				switch res.Code {
				case keys.Valid:
					valid.Add(1)
				case keys.RateLimited:
					limited.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if valid.Load() != 25 || limited.Load() != 55 {
		t.Fatalf("VALID %d, RATE_LIMITED %d; want 25 and 55", valid.Load(), limited.Load())
	}
}

func TestAuditChainHasOneLineAcrossReplicas(t *testing.T) {
	addr := pgtest.NewDatabase(t)
	a, b := open(t, addr, nil), open(t, addr, nil)
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 8 {
		s := []*postgres.Postgres{a, b}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, _ := create(t, s, keys.CreateParams{Name: fmt.Sprintf("k%d", i)})
			for j := range 5 {
				d := fmt.Sprintf("change %d", j)
				if _, err := s.Update(ctx, k.ID, keys.UpdateParams{Description: &d}); err != nil {
					t.Error(err)
				}
			}
			s.RecordDenied(ctx, keys.Denial{Route: "revoke", Ref: k.ID, Required: "keyctl:admin", Count: 1})
		}()
	}
	wg.Wait()
	for _, s := range []*postgres.Postgres{a, b} {
		check, err := s.VerifyAudit(ctx)
		if err != nil || !check.OK || check.Entries != 8*7 {
			t.Fatalf("VerifyAudit = %+v, %v; want an intact chain of %d entries", check, err, 8*7)
		}
	}
}

func TestOneNameAcrossReplicas(t *testing.T) {
	addr := pgtest.NewDatabase(t)
	a, b := open(t, addr, nil), open(t, addr, nil)
	var created, conflicts atomic.Int64
	var wg sync.WaitGroup
	for i := range 8 {
		s := []*postgres.Postgres{a, b}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := s.Create(context.Background(), keys.CreateParams{Name: "shared", Env: keys.Production, Prefix: "sk"})
			switch {
			case err == nil:
				created.Add(1)
			case errors.Is(err, keys.ErrConflict):
				conflicts.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if created.Load() != 1 || conflicts.Load() != 7 {
		t.Fatalf("created %d, conflicts %d; want 1 and 7", created.Load(), conflicts.Load())
	}
}
