package storetest

import (
	"time"

	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/keys"
)

func testBatchVerifier(h *H) {
	bv, ok := h.A.(store.BatchVerifier)
	if !ok {
		h.Skip("the store is not a store.BatchVerifier")
	}
	_, q := h.create(keys.CreateParams{Name: "q", Quota: ptr(int64(3))})
	_, plain := h.create(keys.CreateParams{Name: "plain", Scopes: []string{"sdk"}})
	req := func(tok string, cost int64, scopes ...string) keys.VerifyRequest {
		return keys.VerifyRequest{Token: tok, Cost: cost, Scopes: scopes}
	}
	// Each request is decided as if verified alone, in order: the batch's
	// earlier uses spend what the later ones see.
	reqs := []keys.VerifyRequest{req(q, 1), req(q, 1), req("sk_live_bad", 1), req(plain, 1, "sdk"),
		req(q, 2), req(q, 1), req(apikeyNew(h), 1), req(plain, 1, "admin"), req(q, 0)}
	want := []keys.Code{keys.Valid, keys.Valid, keys.Malformed, keys.Valid, keys.QuotaExceeded, keys.Valid,
		keys.NotFound, keys.Forbidden, keys.Valid}
	res, err := bv.VerifyBatch(h.ctx, reqs)
	if err != nil {
		h.Fatal(err)
	}
	if len(res) != len(reqs) {
		h.Fatalf("%d results for %d requests", len(res), len(reqs))
	}
	for i, r := range res {
		if r.Code != want[i] {
			h.Errorf("request %d: %s, want %s", i, r.Code, want[i])
		}
	}
	h.settle()
	if k := h.get(h.B, "q"); *k.QuotaRemaining != 0 || k.UsageCount != 5 {
		h.Fatalf("quota remaining %d, usage %d; want 0 and 5", *k.QuotaRemaining, k.UsageCount)
	}
	// A request the store cannot accept fails the whole batch, which then
	// records nothing.
	_, err = bv.VerifyBatch(h.ctx, []keys.VerifyRequest{req(plain, 1), req(plain, -1)})
	h.wantErr("a negative cost in a batch", err, keys.ErrInvalid)
	h.settle()
	if k := h.get(h.B, "plain"); k.UsageCount != 2 {
		h.Fatalf("a refused batch recorded uses: %d", k.UsageCount)
	}
}

func fastOf(h *H, s store.Store) store.FastVerifier {
	fv, ok := s.(store.FastVerifier)
	if !ok {
		h.Skip("the store is not a store.FastVerifier")
	}
	return fv
}

func testFastVerifier(h *H) {
	fv := fastOf(h, h.A)
	exp := Epoch.Add(time.Hour)
	_, plain := h.create(keys.CreateParams{Name: "plain", Scopes: []string{"sdk"}, ExpiresAt: &exp})
	_, quota := h.create(keys.CreateParams{Name: "quota", Quota: ptr(int64(5))})
	_, limited := h.create(keys.CreateParams{Name: "limited", RateLimit: &keys.RateLimit{Count: 1, Unit: "second"}})
	// A read decides what spends nothing, and leaves exact (with no result)
	// what spends quota or rate limit. It may leave exact what it could have
	// decided (mayBeExact), never the reverse.
	uses := map[string]int64{}
	for _, c := range []struct {
		name, key  string
		req        keys.VerifyRequest
		code       keys.Code // "" when the read must not decide
		mayBeExact bool
	}{
		{"no limits", "plain", keys.VerifyRequest{Token: plain, Cost: 1}, keys.Valid, false},
		{"a refused scope", "plain", keys.VerifyRequest{Token: plain, Scopes: []string{"x"}, Cost: 1}, keys.Forbidden, false},
		{"malformed", "", keys.VerifyRequest{Token: "sk_live_x", Cost: 1}, keys.Malformed, false},
		{"not found", "", keys.VerifyRequest{Token: apikeyNew(h), Cost: 1}, keys.NotFound, false},
		{"quota at cost 1", "quota", keys.VerifyRequest{Token: quota, Cost: 1}, "", true},
		{"quota at cost 0", "quota", keys.VerifyRequest{Token: quota, Cost: 0}, keys.Valid, false},
		{"quota refused before spending", "quota", keys.VerifyRequest{Token: quota, Env: keys.Staging, Cost: 1}, keys.Forbidden, true},
		{"rate limit", "limited", keys.VerifyRequest{Token: limited, Cost: 1}, "", true},
	} {
		for _, check := range []func() (*keys.VerifyResult, bool, error){
			func() (*keys.VerifyResult, bool, error) { return fv.Check(h.ctx, c.req) },
			func() (*keys.VerifyResult, bool, error) { return fv.CheckToken(h.ctx, c.req) },
		} {
			res, exact, err := check()
			if err != nil {
				h.Fatalf("%s: %v", c.name, err)
			}
			switch {
			case exact && c.mayBeExact && res == nil:
			case !exact && c.code != "" && res != nil && res.Code == c.code:
				if c.key != "" {
					uses[c.key]++
				}
			default:
				h.Fatalf("%s: %+v, exact %v; want %q", c.name, res, exact, c.code)
			}
		}
	}
	if err := fv.Flush(h.ctx); err != nil {
		h.Fatal(err)
	}
	// Every use decided on a read is recorded; none that was left exact.
	for _, name := range []string{"plain", "quota", "limited"} {
		if k := h.get(h.B, name); k.UsageCount != uses[name] {
			h.Errorf("%s: usage %d, want %d", name, k.UsageCount, uses[name])
		}
	}
	if k := h.get(h.B, "quota"); *k.QuotaRemaining != 5 {
		h.Errorf("a read spent quota: %d left", *k.QuotaRemaining)
	}
	// A reused verification still judges expiry at the time of the call.
	if res, _, _ := fv.CheckToken(h.ctx, keys.VerifyRequest{Token: plain}); res.Code != keys.Valid {
		h.Fatalf("before expiry: %s", res.Code)
	}
	h.Clock.Advance(time.Hour)
	if res, _, _ := fv.CheckToken(h.ctx, keys.VerifyRequest{Token: plain}); res.Code != keys.CodeExpired {
		h.Fatalf("a reused verification at expiry: %s", res.Code)
	}

	// CheckCall: the token's result decides whether req is verified.
	h.Clock.Advance(-time.Hour)
	_, caller := h.create(keys.CreateParams{Name: "caller", Scopes: []string{"verify"}})
	allowVerify := func(r *keys.VerifyResult) bool {
		return r.Valid && len(r.Key.Scopes) == 1 && r.Key.Scopes[0] == "verify"
	}
	res, tokRes, exact, err := fv.CheckCall(h.ctx, keys.VerifyRequest{Token: caller, Cost: 1}, allowVerify, keys.VerifyRequest{Token: plain, Cost: 1})
	if err != nil || exact || res == nil || res.Code != keys.Valid || tokRes == nil || tokRes.Key.Name != "caller" {
		h.Fatalf("check call: %+v, %+v, %v, %v", res, tokRes, exact, err)
	}
	deny := func(*keys.VerifyResult) bool { return false }
	res, tokRes, _, err = fv.CheckCall(h.ctx, keys.VerifyRequest{Token: caller, Cost: 1}, deny, keys.VerifyRequest{Token: plain, Cost: 1})
	if err != nil || res != nil || tokRes == nil {
		h.Fatalf("a call its token does not allow: %+v, %+v, %v", res, tokRes, err)
	}
	res, tokRes, exact, err = fv.CheckCall(h.ctx, keys.VerifyRequest{Token: caller, Cost: 1}, allowVerify, keys.VerifyRequest{Token: quota, Cost: 1})
	if err != nil || !exact || res != nil || tokRes == nil || !tokRes.Valid {
		h.Fatalf("a call that must be exact: %+v, %+v, %v, %v", res, tokRes, exact, err)
	}
	if err := fv.Flush(h.ctx); err != nil {
		h.Fatal(err)
	}
	if k := h.get(h.B, "caller"); k.UsageCount != 3 {
		h.Fatalf("the caller's token was used %d times, want 3", k.UsageCount)
	}
}

// testFastVerifierSeesOtherHandles changes a key through one handle while
// the other reuses its verification: the change must be seen at the next
// use, however it was made.
func testFastVerifierSeesOtherHandles(h *H) {
	fv := fastOf(h, h.A)
	_, tok := h.create(keys.CreateParams{Name: "t", Scopes: []string{"a", "b"}})
	// A change through the other handle is seen by the next check, or, by
	// a store.Propagator, by the checks that start its bound after it.
	var bound time.Duration
	if p, ok := h.A.(store.Propagator); ok && h.A != h.B {
		bound = p.PropagationBound()
	}
	use := func(want keys.Code, scopes ...string) {
		h.Helper()
		deadline := time.Now().Add(bound)
		for {
			res, exact, err := fv.CheckToken(h.ctx, keys.VerifyRequest{Token: tok, Scopes: scopes, IP: mustAddr("192.0.2.1"), Cost: 1})
			if err == nil && !exact && res.Code == want {
				return
			}
			if err != nil || exact || time.Now().After(deadline) {
				h.Fatalf("check token: %+v, %v, %v; want %s (within %s)", res, exact, err, want, bound)
			}
			time.Sleep(time.Millisecond)
		}
	}
	use(keys.Valid, "a")
	use(keys.Valid, "a")
	steps := []struct {
		change func() error
		want   keys.Code
		scopes []string
	}{
		{func() error { return second(h.B.SetDisabled(h.ctx, "t", true)) }, keys.CodeDisabled, nil},
		{func() error { return second(h.B.SetDisabled(h.ctx, "t", false)) }, keys.Valid, nil},
		{func() error {
			return second(h.B.Update(h.ctx, "t", keys.UpdateParams{RemoveScopes: []string{"a"}}))
		}, keys.Forbidden, []string{"a"}},
		{func() error {
			return second(h.B.Update(h.ctx, "t", keys.UpdateParams{AddIPs: []string{"198.51.100.0/24"}}))
		}, keys.Forbidden, nil},
		{func() error {
			return second(h.B.Update(h.ctx, "t", keys.UpdateParams{RemoveIPs: []string{"198.51.100.0/24"}, Quota: ptr(int64(0))}))
		}, keys.QuotaExceeded, nil},
		{func() error { return second(h.B.Update(h.ctx, "t", keys.UpdateParams{ClearQuota: true})) }, keys.Valid, nil},
		{func() error { return third(h.B.Rotate(h.ctx, "t", 0)) }, keys.CodeRevoked, nil},
	}
	for i, s := range steps {
		if err := s.change(); err != nil {
			h.Fatalf("step %d: %v", i, err)
		}
		if s.want == keys.QuotaExceeded {
			// A quota makes the use exact: verify it so.
			res := h.verify(h.A, keys.VerifyRequest{Token: tok, Cost: 1})
			if res.Code != s.want {
				h.Fatalf("step %d: %s, want %s", i, res.Code, s.want)
			}
			continue
		}
		use(s.want, s.scopes...)
	}
}

// testDenialRecorder: a denial names the key the refused call named, when
// it is one, else keeps the caller's text, bounded and escaped, and never a
// secret; one entry stands for the count of refusals it says.
func testDenialRecorder(h *H) {
	dr, ok := h.A.(store.DenialRecorder)
	if !ok {
		h.Skip("the store is not a store.DenialRecorder")
	}
	k, _ := h.create(keys.CreateParams{Name: "target"})
	base := len(h.audit(keys.AuditFilter{}))
	token := "sk_live_AbCd1234efGH5678ijKL9012mnOP34562CohsL"
	refs := []string{"target", k.ID, "nobody", "", "a\nforged line\x1b[8m", token}
	for i, ref := range refs {
		d := keys.Denial{Route: "POST /v1/keys/{id}/rotate", Required: keys.ScopeOwner, Ref: ref, Count: int64(i + 1)}
		if err := dr.RecordDenied(h.ctx, d); err != nil {
			h.Fatalf("record denied %q: %v", ref, err)
		}
	}
	entries := h.audit(keys.AuditFilter{})[base:]
	if len(entries) != len(refs) {
		h.Fatalf("%d entries, want %d", len(entries), len(refs))
	}
	wants := []struct{ id, name, ref string }{
		{k.ID, "target", ""}, {k.ID, "target", ""}, {"", "", "nobody"}, {"", "", ""},
		{"", "", `a\nforged line\x1b[8m`}, {"", "", "sk_live_AbCd1234…"},
	}
	for i, want := range wants {
		e := entries[i]
		ref, _ := e.Changes["ref"].To.(string)
		count, _ := e.Changes["count"].To.(float64)
		if e.Action != keys.ActionDenied || e.KeyID != want.id || e.KeyName != want.name || ref != want.ref ||
			e.Changes["attempted"].To != "POST /v1/keys/{id}/rotate" || e.Changes["required_scope"].To != keys.ScopeOwner ||
			int(count) != i+1 {
			h.Errorf("entry %d: %+v", i, e)
		}
	}
	h.chainHolds(h.B, base+len(refs))
	if k := h.get(h.B, "target"); k.Status != keys.Active {
		h.Fatalf("a denial changed the key: %s", k.Status)
	}
}

// testBackground: a store that records uses in the background counts what
// it wrote, and says it is not failing while its writes succeed.
func testBackground(h *H) {
	bg, ok := h.A.(store.Background)
	if !ok {
		h.Skip("the store is not a store.Background")
	}
	fv := fastOf(h, h.A)
	var failures []error
	bg.OnBackgroundError(func(err error, _ int) { failures = append(failures, err) })
	_, tok := h.create(keys.CreateParams{Name: "busy"})
	before, lost, _ := bg.UsageRecorded()
	for range 25 {
		if res, _, err := fv.CheckToken(h.ctx, keys.VerifyRequest{Token: tok, Cost: 1}); err != nil || res == nil || res.Code != keys.Valid {
			h.Fatalf("check: %+v, %v", res, err)
		}
	}
	h.settle()
	recorded, lostAfter, failing := bg.UsageRecorded()
	if recorded-before != 25 || lostAfter != lost || failing != nil || len(failures) > 0 {
		h.Fatalf("recorded %d, lost %d, failing %v, failures %v; want 25 recorded and none lost", recorded-before, lostAfter-lost, failing, failures)
	}
	if k := h.get(h.B, "busy"); k.UsageCount != 25 {
		h.Fatalf("usage count %d, want 25", k.UsageCount)
	}
}
