package storetest

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/keys"
)

// callers is how many goroutines each concurrency test runs at once,
// alternating between the two handles.
const callers = 16

// verifyVia verifies req through s by one of the ways a store offers,
// chosen by n: Verify; VerifyBatch with the request twice; or a read that
// leaves exact verifications to Verify, as a server does.
func verifyVia(h *H, s store.Store, n int, req keys.VerifyRequest) ([]*keys.VerifyResult, error) {
	switch n % 3 {
	case 1:
		if bv, ok := s.(store.BatchVerifier); ok {
			return bv.VerifyBatch(h.ctx, []keys.VerifyRequest{req, req})
		}
	case 2:
		if fv, ok := s.(store.FastVerifier); ok {
			res, exact, err := fv.Check(h.ctx, req)
			if err != nil || !exact {
				return []*keys.VerifyResult{res}, err
			}
		}
	}
	res, err := s.Verify(h.ctx, req)
	return []*keys.VerifyResult{res}, err
}

// tally verifies req rounds times from each caller and counts the codes.
func tally(h *H, rounds int, req keys.VerifyRequest) (map[keys.Code]int, []*keys.VerifyResult) {
	var mu sync.Mutex
	counts := map[keys.Code]int{}
	var all []*keys.VerifyResult
	parallel(callers, func(i int) {
		for r := range rounds {
			res, err := verifyVia(h, h.handle(i), i+r, req)
			if err != nil {
				h.Errorf("caller %d: %v", i, err)
				return
			}
			mu.Lock()
			for _, x := range res {
				counts[x.Code]++
				all = append(all, x)
			}
			mu.Unlock()
		}
	})
	if h.Failed() {
		h.FailNow()
	}
	return counts, all
}

func total(counts map[keys.Code]int) int {
	n := 0
	for _, c := range counts {
		n += c
	}
	return n
}

// testConcurrentQuota: a quota of N spent by many callers on two handles is
// VALID exactly as often as it allows, never more, never less.
func testConcurrentQuota(h *H) {
	_, one := h.create(keys.CreateParams{Name: "one", Quota: ptr(int64(40))})
	counts, _ := tally(h, 5, keys.VerifyRequest{Token: one, Cost: 1})
	uses := total(counts)
	if counts[keys.Valid] != 40 || counts[keys.QuotaExceeded] != total(counts)-40 {
		h.Fatalf("quota 40 at cost 1: %v", counts)
	}
	// Cost 3 on a quota of 40: 13 uses, one unit left over.
	_, three := h.create(keys.CreateParams{Name: "three", Quota: ptr(int64(40))})
	counts, _ = tally(h, 2, keys.VerifyRequest{Token: three, Cost: 3})
	if counts[keys.Valid] != 13 || counts[keys.QuotaExceeded] != total(counts)-13 {
		h.Fatalf("quota 40 at cost 3: %v", counts)
	}
	h.settle()
	for name, left := range map[string]int64{"one": 0, "three": 1} {
		k := h.get(h.B, name)
		if *k.QuotaRemaining != left {
			h.Errorf("%s: %d left, want %d", name, *k.QuotaRemaining, left)
		}
	}
	if k := h.get(h.A, "one"); k.UsageCount != int64(uses) {
		h.Errorf("one: usage %d, want %d: every use counts, refused or not", k.UsageCount, uses)
	}
}

// testConcurrentRateLimit: no token of a rate limit is spent twice, and a
// refused call spends none.
func testConcurrentRateLimit(h *H) {
	_, tok := h.create(keys.CreateParams{Name: "r", RateLimit: &keys.RateLimit{Count: 10, Unit: "minute"}})
	req := keys.VerifyRequest{Token: tok, Cost: 1}
	counts, _ := tally(h, 3, req)
	if counts[keys.Valid] != 10 || counts[keys.RateLimited] != total(counts)-10 {
		h.Fatalf("a burst of 10: %v", counts)
	}
	// One interval later, exactly one more token; the refused calls are
	// told when the next one comes.
	h.Clock.Advance(6 * time.Second)
	counts, all := tally(h, 1, req)
	if counts[keys.Valid] != 1 || counts[keys.RateLimited] != total(counts)-1 {
		h.Fatalf("one interval later: %v", counts)
	}
	next := h.Clock.Now().Add(6 * time.Second)
	for _, r := range all {
		if r.Code == keys.RateLimited && (r.RetryAt == nil || !r.RetryAt.Equal(next)) {
			h.Fatalf("retry at %v, want %v", r.RetryAt, next)
		}
	}
	// A whole idle window gives back the whole burst, and no more.
	h.Clock.Advance(2 * time.Minute)
	counts, _ = tally(h, 2, req)
	if counts[keys.Valid] != 10 {
		h.Fatalf("after an idle window: %v", counts)
	}
}

// testConcurrentCreateOneName: many creates of one name yield one key; the
// others are refused with ErrConflict and leave nothing behind.
func testConcurrentCreateOneName(h *H) {
	before := len(h.audit(keys.AuditFilter{}))
	var mu sync.Mutex
	var made []*keys.Key
	conflicts := 0
	parallel(callers, func(i int) {
		k, secret, err := h.handle(i).Create(h.ctx, keys.CreateParams{Name: "same", Env: keys.Production, Prefix: "sk"})
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil && secret != "":
			made = append(made, k)
		case errors.Is(err, keys.ErrConflict) && secret == "":
			conflicts++
		default:
			h.Errorf("caller %d: %v", i, err)
		}
	})
	if len(made) != 1 || conflicts != callers-1 {
		h.Fatalf("%d keys made and %d conflicts, want 1 and %d", len(made), conflicts, callers-1)
	}
	list, err := h.B.List(h.ctx, keys.ListFilter{All: true})
	if err != nil {
		h.Fatal(err)
	}
	n := 0
	for _, k := range list {
		if k.Name == "same" {
			n++
		}
	}
	if n != 1 || h.get(h.A, "same").ID != made[0].ID {
		h.Fatalf("%d keys named same", n)
	}
	h.chainHolds(h.A, before+1)
}

// testConcurrentRenameOneName: many keys renamed to one name at once: one
// takes it.
func testConcurrentRenameOneName(h *H) {
	for i := range callers {
		h.create(keys.CreateParams{Name: fmt.Sprintf("k%d", i)})
	}
	before := len(h.audit(keys.AuditFilter{}))
	var mu sync.Mutex
	renamed, conflicts := 0, 0
	parallel(callers, func(i int) {
		_, err := h.handle(i).Update(h.ctx, fmt.Sprintf("k%d", i), keys.UpdateParams{Name: ptr("target")})
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil:
			renamed++
		case errors.Is(err, keys.ErrConflict):
			conflicts++
		default:
			h.Errorf("caller %d: %v", i, err)
		}
	})
	if renamed != 1 || conflicts != callers-1 {
		h.Fatalf("%d renamed and %d conflicts, want 1 and %d", renamed, conflicts, callers-1)
	}
	h.chainHolds(h.B, before+1)
}

// testConcurrentRotate: concurrent rotations each hand out a secret, and
// exactly one of them, the last, is the key's current secret.
func testConcurrentRotate(h *H) {
	k, first := h.create(keys.CreateParams{Name: "rot"})
	before := len(h.audit(keys.AuditFilter{}))
	secrets := make([]string, callers)
	parallel(callers, func(i int) {
		got, secret, err := h.handle(i).Rotate(h.ctx, "rot", 0)
		if err != nil || got.ID != k.ID || secret == "" {
			h.Errorf("caller %d: %v, %v", i, got, err)
		}
		secrets[i] = secret
	})
	if h.Failed() {
		h.FailNow()
	}
	valid := 0
	for _, s := range append(secrets, first) {
		switch code := h.code(s); code {
		case keys.Valid:
			valid++
		case keys.CodeRevoked:
		default:
			h.Fatalf("a rotated secret: %s", code)
		}
	}
	if valid != 1 {
		h.Fatalf("%d secrets are current, want 1", valid)
	}
	if got := h.get(h.B, "rot"); got.ID != k.ID || got.Status != keys.Active {
		h.Fatalf("after the rotations: %+v", got)
	}
	h.chainHolds(h.A, before+callers)
}

// testConcurrentRevoke: changes racing a revocation either happen before it
// or are refused; none happens after it, and it is recorded once.
func testConcurrentRevoke(h *H) {
	k, _ := h.create(keys.CreateParams{Name: "rv"})
	var mu sync.Mutex
	var secrets []string
	parallel(callers, func(i int) {
		s := h.handle(i)
		var err error
		switch i % 4 {
		case 0:
			_, err = s.Revoke(h.ctx, k.ID, fmt.Sprintf("caller %d", i))
		case 1:
			var secret string
			if _, secret, err = s.Rotate(h.ctx, k.ID, time.Hour); err == nil {
				mu.Lock()
				secrets = append(secrets, secret)
				mu.Unlock()
			}
		case 2:
			_, err = s.Update(h.ctx, k.ID, keys.UpdateParams{Description: ptr(fmt.Sprint(i))})
		case 3:
			_, err = s.SetDisabled(h.ctx, k.ID, i%8 == 3)
		}
		if err != nil && !errors.Is(err, keys.ErrRevoked) {
			h.Errorf("caller %d: %v", i, err)
		}
	})
	if got := h.get(h.B, k.ID); got.Status != keys.Revoked {
		h.Fatalf("status %s after a revocation", got.Status)
	}
	entries := h.audit(keys.AuditFilter{Key: k.ID})
	revokes := 0
	for _, e := range entries {
		if revokes > 0 {
			h.Fatalf("entry %d (%s) after the revocation", e.Seq, e.Action)
		}
		if e.Action == keys.ActionRevoke {
			revokes++
		}
	}
	if revokes != 1 {
		h.Fatalf("%d revocations recorded", revokes)
	}
	for _, s := range secrets {
		if h.code(s) != keys.CodeRevoked {
			h.Fatal("a secret handed out before the revocation still works")
		}
	}
}

// testConcurrentDisableEnable: disables and enables racing each other are
// recorded only when they change the state, so the record alternates.
func testConcurrentDisableEnable(h *H) {
	k, _ := h.create(keys.CreateParams{Name: "de"})
	parallel(callers, func(i int) {
		for r := range 4 {
			if _, err := h.handle(i).SetDisabled(h.ctx, k.ID, (i+r)%2 == 0); err != nil {
				h.Errorf("caller %d: %v", i, err)
				return
			}
		}
	})
	want := keys.ActionDisable
	for _, e := range h.audit(keys.AuditFilter{Key: k.ID})[1:] {
		if e.Action != want {
			h.Fatalf("entry %d is %s, want %s: a change of nothing was recorded", e.Seq, e.Action, want)
		}
		if want == keys.ActionDisable {
			want = keys.ActionEnable
		} else {
			want = keys.ActionDisable
		}
	}
	h.chainHolds(h.A, len(h.audit(keys.AuditFilter{})))
}

// testConcurrentAuditChain: changes from many callers on two handles leave
// one chain that verifies, with every change in it once; and the chain
// verifies at every moment while they are made.
func testConcurrentAuditChain(h *H) {
	before := len(h.audit(keys.AuditFilter{}))
	for i := range 4 {
		h.create(keys.CreateParams{Name: fmt.Sprintf("c%d", i)})
	}
	var changes sync.WaitGroup
	var mu sync.Mutex
	made := 4
	stop := make(chan struct{})
	var checking sync.WaitGroup
	checking.Go(func() {
		for {
			for _, s := range []store.Store{h.A, h.B} {
				check, err := s.VerifyAudit(h.ctx)
				if err != nil || !check.OK {
					h.Errorf("verify audit while changes are made: %+v, %v", check, err)
					return
				}
			}
			select {
			case <-stop:
				return
			default:
			}
		}
	})
	changes.Go(func() {
		parallel(callers, func(i int) {
			s, ref := h.handle(i), fmt.Sprintf("c%d", i%4)
			for r := range 6 {
				var err error
				switch r % 3 {
				case 0:
					_, err = s.Update(h.ctx, ref, keys.UpdateParams{Description: ptr(fmt.Sprintf("%d.%d", i, r))})
				case 1:
					_, _, err = s.Rotate(h.ctx, ref, time.Minute)
				case 2:
					_, _, err = s.Create(h.ctx, keys.CreateParams{Env: keys.Production, Prefix: "sk"})
				}
				if err != nil {
					h.Errorf("caller %d: %v", i, err)
					return
				}
				mu.Lock()
				made++
				mu.Unlock()
			}
		})
	})
	changes.Wait()
	close(stop)
	checking.Wait()
	if h.Failed() {
		h.FailNow()
	}
	entries := h.audit(keys.AuditFilter{})
	if len(entries) != before+made {
		h.Fatalf("%d entries, want %d", len(entries), before+made)
	}
	for i, e := range entries {
		if e.Seq != int64(i+1) {
			h.Fatalf("entry %d has seq %d", i+1, e.Seq)
		}
	}
	h.chainHolds(h.A, before+made)
	h.chainHolds(h.B, before+made)
}

// testConcurrentUsage: every verification of a key, from many callers on
// two handles by every way the store offers, is kept, once.
func testConcurrentUsage(h *H) {
	_, tok := h.create(keys.CreateParams{Name: "u"})
	counts, _ := tally(h, 20, keys.VerifyRequest{Token: tok, Cost: 1})
	n := total(counts)
	if counts[keys.Valid] != n {
		h.Fatalf("codes %v", counts)
	}
	h.settle()
	for _, s := range []store.Store{h.A, h.B} {
		rep, err := s.Usage(h.ctx, "u", keys.UsageQuery{Limit: 10000})
		if err != nil {
			h.Fatal(err)
		}
		if rep.Key.UsageCount != int64(n) || len(rep.Events) != n || len(rep.Daily) != 1 || rep.Daily[0].Total != int64(n) {
			h.Fatalf("usage: count %d, %d events, daily %+v; want %d", rep.Key.UsageCount, len(rep.Events), rep.Daily, n)
		}
	}
}
