package storetest

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/keyctl/keyctl/store/keys"
)

func testAudit(h *H) {
	base := h.audit(keys.AuditFilter{})
	k, _ := h.create(keys.CreateParams{Name: "a", Scopes: []string{"sdk"}})
	h.Clock.Advance(time.Second)
	steps := []struct {
		action string
		do     func() error
		field  string // a field the entry's changes must hold
	}{
		{keys.ActionUpdate, func() error {
			return second(h.B.Update(h.ctx, "a", keys.UpdateParams{AddScopes: []string{"proxy"}}))
		}, "scopes"},
		{keys.ActionRotate, func() error { return third(h.A.Rotate(h.ctx, "a", time.Hour)) }, "grace"},
		{keys.ActionDisable, func() error { return second(h.B.SetDisabled(h.ctx, "a", true)) }, "status"},
		{keys.ActionEnable, func() error { return second(h.A.SetDisabled(h.ctx, "a", false)) }, "status"},
		{keys.ActionRevoke, func() error {
			return second(h.B.Revoke(keys.WithNote(h.ctx, "leak response: found in app.env:3"), "a", "leaked"))
		}, "revoke_reason"},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			h.Fatalf("%s: %v", s.action, err)
		}
		h.Clock.Advance(time.Second)
	}
	entries := h.audit(keys.AuditFilter{})
	if len(entries) != len(base)+1+len(steps) {
		h.Fatalf("%d entries, want %d", len(entries)-len(base), 1+len(steps))
	}
	mine := entries[len(base):]
	if e := mine[0]; e.Action != keys.ActionCreate || e.KeyID != k.ID || e.KeyName != "a" || e.Changes["name"].To == nil {
		h.Errorf("create entry: %+v", e)
	}
	for i, s := range steps {
		e := mine[i+1]
		if e.Action != s.action || e.KeyID != k.ID || e.KeyName != "a" {
			h.Errorf("entry %d: %s on %s (%s), want %s on a", e.Seq, e.Action, e.KeyName, e.KeyID, s.action)
		}
		if _, ok := e.Changes[s.field]; !ok {
			h.Errorf("%s entry's changes %v lack %s", e.Action, e.Changes, s.field)
		}
		if !e.At.Equal(Epoch.Add(time.Duration(i+1) * time.Second)) {
			h.Errorf("%s entry at %v", e.Action, e.At)
		}
	}
	if mine[5].Note != "leak response: found in app.env:3" || mine[4].Note != "" {
		h.Errorf("notes: %q, %q", mine[5].Note, mine[4].Note)
	}
	// One chain: consecutive numbers, each linked to the one before.
	for i, e := range entries {
		if e.Seq != int64(i+1) || e.Hash == "" || i > 0 && e.PrevHash != entries[i-1].Hash || i == 0 && e.PrevHash != "" {
			h.Fatalf("entry %d: seq %d, prev %q, hash %q", i, e.Seq, e.PrevHash, e.Hash)
		}
		if e.Actor.Kind == "" || e.Actor.Name == "" {
			h.Errorf("entry %d has no actor: %+v", e.Seq, e.Actor)
		}
	}
	check, err := h.B.VerifyAudit(h.ctx)
	if err != nil {
		h.Fatal(err)
	}
	if !check.OK || check.Entries != int64(len(entries)) || check.Head != entries[len(entries)-1].Hash || check.BadSeq != 0 {
		h.Fatalf("verify audit: %+v", check)
	}
	// Refused changes leave no entry.
	_, err = h.A.Update(h.ctx, k.ID, keys.UpdateParams{Description: ptr("x")})
	h.wantErr("update a revoked key", err, keys.ErrRevoked)
	h.chainHolds(h.A, len(entries))
}

func testAuditFilters(h *H) {
	h.create(keys.CreateParams{Name: "a"})
	h.Clock.Advance(time.Hour)
	h.create(keys.CreateParams{Name: "b"})
	if _, err := h.B.SetDisabled(h.ctx, "a", true); err != nil {
		h.Fatal(err)
	}
	h.Clock.Advance(time.Hour)
	k, _ := h.create(keys.CreateParams{Name: "c"})
	if _, err := h.A.Update(h.ctx, "c", keys.UpdateParams{Name: ptr("c2")}); err != nil {
		h.Fatal(err)
	}
	all := h.audit(keys.AuditFilter{})
	actor := all[len(all)-1].Actor
	summary := func(f keys.AuditFilter) string {
		h.Helper()
		var out []string
		for _, e := range h.audit(f) {
			if e.KeyName == "a" || e.KeyName == "b" || e.KeyName == "c" || e.KeyName == "c2" {
				out = append(out, e.Action+":"+e.KeyName)
			}
		}
		return strings.Join(out, " ")
	}
	for _, c := range []struct {
		f    keys.AuditFilter
		want string
	}{
		{keys.AuditFilter{}, "create:a create:b disable:a create:c update:c2"},
		{keys.AuditFilter{Key: "a"}, "create:a disable:a"},
		{keys.AuditFilter{Key: k.ID}, "create:c update:c2"},
		{keys.AuditFilter{Key: "c2"}, "update:c2"},
		{keys.AuditFilter{Action: keys.ActionCreate}, "create:a create:b create:c"},
		{keys.AuditFilter{Since: Epoch.Add(time.Hour)}, "create:b disable:a create:c update:c2"},
		{keys.AuditFilter{Since: Epoch.Add(time.Hour + time.Nanosecond)}, "create:c update:c2"},
		{keys.AuditFilter{Limit: 2}, "create:c update:c2"},
		{keys.AuditFilter{Action: keys.ActionCreate, Limit: 1}, "create:c"},
		{keys.AuditFilter{Actor: actor.Name, Key: "b"}, "create:b"},
		{keys.AuditFilter{Actor: "nobody-at-all"}, ""},
	} {
		if got := summary(c.f); got != c.want {
			h.Errorf("audit %+v: %q, want %q", c.f, got, c.want)
		}
	}
}

// testNoSecretShown checks that no secret a store issued appears in
// anything it returns afterwards.
func testNoSecretShown(h *H) {
	_, s1 := h.create(keys.CreateParams{Name: "s", Scopes: []string{"sdk"}})
	_, s2, err := h.A.Rotate(h.ctx, "s", time.Hour)
	if err != nil {
		h.Fatal(err)
	}
	h.verify(h.B, keys.VerifyRequest{Token: s1, Cost: 1})
	res := h.verify(h.A, keys.VerifyRequest{Token: s2, Scopes: []string{"x"}, Cost: 1})
	if _, err := h.B.Revoke(h.ctx, "s", "done"); err != nil {
		h.Fatal(err)
	}
	revoked := h.verify(h.A, keys.VerifyRequest{Token: s2, Cost: 1})
	h.settle()
	list, _ := h.A.List(h.ctx, keys.ListFilter{All: true})
	usage, _ := h.B.Usage(h.ctx, "s", keys.UsageQuery{})
	found, _ := h.A.Find(h.ctx, s1)
	check, _ := h.B.VerifyAudit(h.ctx)
	everything, err := json.Marshal([]any{list, usage, found, check, res, revoked, h.audit(keys.AuditFilter{})})
	if err != nil {
		h.Fatal(err)
	}
	for _, s := range []string{s1, s2} {
		// The display start is shown; no more of the secret than that.
		if strings.Contains(string(everything), s[len(s)-12:]) {
			h.Fatalf("a secret is shown: %s", everything)
		}
	}
	// Errors do not echo a token either.
	_, err = h.A.Find(h.ctx, s1[:len(s1)-1])
	if err == nil || strings.Contains(err.Error(), s1[:len(s1)-1]) {
		h.Fatalf("find a malformed token: %v", err)
	}
}

// testAuditCheckpoints: a head kept elsewhere (SEQ:DIGEST) still verifies
// while the chain holds that entry unchanged; a head the chain does not
// hold, or holds otherwise, fails the walk at its entry.
func testAuditCheckpoints(h *H) {
	h.create(keys.CreateParams{Name: "a"})
	check, err := h.A.VerifyAudit(h.ctx)
	if err != nil || !check.OK || check.HeadSeq != check.Entries || check.Head == "" {
		h.Fatalf("VerifyAudit = %+v, %v", check, err)
	}
	head := keys.Checkpoint{Seq: check.HeadSeq, Hash: check.Head}
	if _, err := h.A.Update(h.ctx, "a", keys.UpdateParams{Description: ptr("later")}); err != nil {
		h.Fatal(err)
	}
	if check, err := h.B.VerifyAudit(h.ctx, head); err != nil || !check.OK || check.HeadSeq != head.Seq+1 {
		h.Fatalf("VerifyAudit with a head the chain holds = %+v, %v", check, err)
	}
	other := keys.Checkpoint{Seq: head.Seq, Hash: strings.Repeat("0", 64)}
	if check, err := h.B.VerifyAudit(h.ctx, other); err != nil || check.OK || check.BadSeq != head.Seq {
		h.Fatalf("VerifyAudit with a head the chain holds otherwise = %+v, %v", check, err)
	}
	beyond := keys.Checkpoint{Seq: head.Seq + 5, Hash: head.Hash}
	if check, err := h.A.VerifyAudit(h.ctx, beyond); err != nil || check.OK {
		h.Fatalf("VerifyAudit with a head past the end = %+v, %v", check, err)
	}
}
