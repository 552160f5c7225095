package storetest

import (
	"errors"
	"strings"
	"time"

	"github.com/keyctl/keyctl/store/keys"
)

// testFindSecret: a secret finds its key, with the secret's own state: the
// current one, or an old one and when its grace ends (or ended).
func testFindSecret(h *H) {
	k, s1 := h.create(keys.CreateParams{Name: "k"})
	_, s2, err := h.A.Rotate(h.ctx, "k", time.Hour)
	if err != nil {
		h.Fatal(err)
	}
	ends := Epoch.Add(time.Hour)
	for _, s := range []int{0, 1} {
		st := h.handle(s)
		got, state, err := st.FindSecret(h.ctx, s1)
		if err != nil || got.ID != k.ID || state.Current || !eqTime(state.EndsAt, &ends) || !state.Live(h.Clock.Now()) {
			h.Fatalf("the old secret: %+v %+v %v", got, state, err)
		}
		got, state, err = st.FindSecret(h.ctx, s2)
		if err != nil || got.ID != k.ID || !state.Current || state.EndsAt != nil {
			h.Fatalf("the current secret: %+v %+v %v", got, state, err)
		}
	}
	h.Clock.Advance(2 * time.Hour)
	if _, state, err := h.B.FindSecret(h.ctx, s1); err != nil || state.Live(h.Clock.Now()) {
		h.Fatalf("the old secret after its grace: %+v %v", state, err)
	}
	_, _, err = h.A.FindSecret(h.ctx, apikeyNew(h))
	h.wantErr("an unknown secret", err, keys.ErrNotFound)
	_, _, err = h.A.FindSecret(h.ctx, "sk_live_nope")
	h.wantErr("a malformed secret", err, keys.ErrInvalid)
}

// testSecretAsRef: a secret given where a key is expected finds its key,
// and an unknown one is never repeated whole in the error.
func testSecretAsRef(h *H) {
	k, secret := h.create(keys.CreateParams{Name: "k"})
	if got := h.get(h.B, secret); got.ID != k.ID {
		h.Fatalf("Get by secret: %s, want %s", got.ID, k.ID)
	}
	if got, err := h.A.SetDisabled(h.ctx, secret, true); err != nil || got.ID != k.ID || got.Status != keys.Disabled {
		h.Fatalf("SetDisabled by secret: %+v %v", got, err)
	}
	unknown := apikeyNew(h)
	_, err := h.A.Get(h.ctx, unknown)
	h.wantErr("Get by an unknown secret", err, keys.ErrNotFound)
	if strings.Contains(err.Error(), unknown[12:]) {
		h.Fatalf("the error repeats the secret: %v", err)
	}
}

// testRevokeSecret: whoever holds a secret may kill it. A key's current
// secret revokes the key; an old one still in its grace stops now, and the
// key's current secret stays healthy (an undone rotation does not bring it
// back); a secret that works no more, or that no key has, changes nothing.
// A keyctl server tells nothing back (SecretAccepted): what it did is seen
// in the store.
func testRevokeSecret(h *H) {
	_, live := h.create(keys.CreateParams{Name: "live"})
	_, old := h.create(keys.CreateParams{Name: "graced"})
	_, current, err := h.A.Rotate(h.ctx, "graced", time.Hour)
	if err != nil {
		h.Fatal(err)
	}
	_, gone := h.create(keys.CreateParams{Name: "rotated"})
	if _, _, err := h.A.Rotate(h.ctx, "rotated", 0); err != nil {
		h.Fatal(err)
	}
	outcome := func(what string, r *keys.SecretRevocation, want keys.SecretOutcome) {
		h.Helper()
		if r.Outcome != want && r.Outcome != keys.SecretAccepted {
			h.Fatalf("%s: outcome %s, want %s", what, r.Outcome, want)
		}
	}
	revoke := func(tok string) *keys.SecretRevocation {
		h.Helper()
		r, err := h.B.RevokeSecret(keys.WithNote(h.ctx, "found in a log"), tok, "leaked")
		if err != nil {
			h.Fatalf("revoke secret: %v", err)
		}
		return r
	}
	entries := len(h.audit(keys.AuditFilter{}))

	// An old secret in its grace: its grace ends, the key stays.
	outcome("an old secret in its grace", revoke(old), keys.SecretGraceEnded)
	if c := h.code(old); c != keys.CodeRevoked {
		h.Fatalf("the old secret after its grace ended: %s", c)
	}
	if c := h.code(current); c != keys.Valid {
		h.Fatalf("the key's current secret after an old one's grace ended: %s", c)
	}
	if k := h.get(h.A, "graced"); k.Status != keys.Active {
		h.Fatalf("ending an old secret's grace changed its key: %s", k.Status)
	}
	e := h.audit(keys.AuditFilter{})[entries:]
	if len(e) != 1 || e[0].Action != keys.ActionEndGrace || e[0].KeyName != "graced" || e[0].Note != "found in a log" {
		h.Fatalf("audit of an ended grace: %+v", e)
	}
	// A rotation undone later does not bring it back.
	_, newer, err := h.A.Rotate(h.ctx, "graced", time.Hour)
	if err != nil {
		h.Fatal(err)
	}
	outcome("the secret now in its grace", revoke(current), keys.SecretGraceEnded)
	if _, err := h.A.UndoRotate(h.ctx, "graced", newer); err == nil && h.code(current) != keys.CodeRevoked {
		h.Fatal("undoing a rotation brought back a secret its holder revoked")
	}
	entries = len(h.audit(keys.AuditFilter{}))

	// A secret rotated out, and one no key has: nothing changes.
	outcome("a secret rotated out", revoke(gone), keys.SecretDead)
	outcome("an unknown secret", revoke(apikeyNew(h)), keys.SecretUnknown)
	if n := len(h.audit(keys.AuditFilter{})); n != entries {
		h.Fatalf("revoking dead or unknown secrets left %d audit entries", n-entries)
	}
	if k := h.get(h.A, "rotated"); k.Status != keys.Active {
		h.Fatalf("revoking a secret rotated out changed its key: %s", k.Status)
	}

	// The current secret: the key is revoked, with the reason.
	r := revoke(live)
	outcome("a current secret", r, keys.SecretRevoked)
	if k := h.get(h.A, "live"); k.Status != keys.Revoked || k.RevokeReason == "" {
		h.Fatalf("revoking a key's current secret: %s (%q)", k.Status, k.RevokeReason)
	}
	if r.Outcome == keys.SecretRevoked && (r.Key == nil || r.Key.Name != "live" || r.EndedAt == nil) {
		h.Fatalf("the revocation's result: %+v", r)
	}
	outcome("a secret of a revoked key", revoke(live), keys.SecretDead)

	_, err = h.A.RevokeSecret(h.ctx, "sk_live_nope", "")
	h.wantErr("a malformed secret", err, keys.ErrInvalid)
	_, err = h.A.RevokeSecret(h.ctx, apikeyNew(h), strings.Repeat("r", keys.MaxReason+1))
	h.wantErr("a reason over its limit", err, keys.ErrInvalid)
	h.chainHolds(h.A, len(h.audit(keys.AuditFilter{})))
}

// testUndoRotate: a rotation whose secret was not delivered is undone by
// that secret, within the undo window: the secret is gone and the older
// ones work as before it.
func testUndoRotate(h *H) {
	k, s1 := h.create(keys.CreateParams{Name: "k"})
	if _, _, err := h.A.Rotate(h.ctx, "k", time.Hour); err != nil {
		h.Fatal(err)
	}
	graced := h.get(h.A, "k")
	_, s3, err := h.B.Rotate(h.ctx, "k", 0)
	if err != nil {
		h.Fatal(err)
	}
	h.Clock.Advance(time.Minute)
	_, err = h.A.UndoRotate(h.ctx, "k", s1)
	h.wantErr("undo by a secret that is not the rotation's", err, keys.ErrConflict)
	_, err = h.A.UndoRotate(h.ctx, "k", "sk_live_nope")
	h.wantErr("undo by a malformed secret", err, keys.ErrInvalid)
	got, err := h.A.UndoRotate(h.ctx, "k", s3)
	if err != nil {
		h.Fatal(err)
	}
	if got.ID != k.ID || got.Start != graced.Start || !eqTime(got.RotatedAt, graced.RotatedAt) {
		h.Fatalf("undone: %+v, want as after the first rotation %+v", got, graced)
	}
	if c := h.code(s3); c != keys.NotFound {
		h.Fatalf("the undone rotation's secret: %s", c)
	}
	if c := h.code(s1); c != keys.Valid {
		h.Fatalf("an old secret in its grace after the undo: %s", c)
	}
	if secrets, err := h.B.Secrets(h.ctx, "k"); err != nil || len(secrets) != 2 {
		h.Fatalf("secrets after the undo: %+v %v", secrets, err)
	}
	if e := h.audit(keys.AuditFilter{Key: k.ID, Action: keys.ActionUndoRotate}); len(e) != 1 {
		h.Fatalf("undo-rotate entries: %d", len(e))
	}
	// Twice, or after the window: a conflict.
	_, err = h.A.UndoRotate(h.ctx, "k", s3)
	h.wantErr("undo twice", err, keys.ErrConflict)
	_, s4, err := h.A.Rotate(h.ctx, "k", 0)
	if err != nil {
		h.Fatal(err)
	}
	h.Clock.Advance(time.Hour)
	_, err = h.B.UndoRotate(h.ctx, "k", s4)
	h.wantErr("undo after the window", err, keys.ErrConflict)
	if c := h.code(s4); c != keys.Valid {
		h.Fatalf("a refused undo changed the key: %s", c)
	}
	if _, err := h.A.Revoke(h.ctx, "k", ""); err != nil {
		h.Fatal(err)
	}
	h.create(keys.CreateParams{Name: "r"})
	_, s6, err := h.A.Rotate(h.ctx, "r", 0)
	if err != nil {
		h.Fatal(err)
	}
	if _, err := h.A.Revoke(h.ctx, "r", ""); err != nil {
		h.Fatal(err)
	}
	_, err = h.A.UndoRotate(h.ctx, "r", s6)
	h.wantErr("undo on a revoked key", err, keys.ErrRevoked)
}

// testEndGrace: ending a key's grace stops every old secret now, says how
// many, and keeps the current one; with none to end it changes nothing.
func testEndGrace(h *H) {
	k, s1 := h.create(keys.CreateParams{Name: "k"})
	_, s2, err := h.A.Rotate(h.ctx, "k", time.Hour)
	if err != nil {
		h.Fatal(err)
	}
	_, s3, err := h.B.Rotate(h.ctx, "k", 2*time.Hour)
	if err != nil {
		h.Fatal(err)
	}
	got, n, err := h.B.EndGrace(h.ctx, "k")
	if err != nil || n != 2 || got.ID != k.ID {
		h.Fatalf("EndGrace = %+v, %d, %v; want 2 ended", got, n, err)
	}
	for _, s := range []string{s1, s2} {
		if c := h.code(s); c != keys.CodeRevoked {
			h.Fatalf("an old secret after its grace ended: %s", c)
		}
	}
	if c := h.code(s3); c != keys.Valid {
		h.Fatalf("the current secret after the grace ended: %s", c)
	}
	e := h.audit(keys.AuditFilter{Key: k.ID, Action: keys.ActionEndGrace})
	if len(e) != 1 || e[0].Changes["secrets_ended"].To != float64(2) {
		h.Fatalf("end-grace entries: %+v", e)
	}
	if _, n, err := h.A.EndGrace(h.ctx, "k"); err != nil || n != 0 {
		h.Fatalf("EndGrace with none in grace = %d, %v", n, err)
	}
	if e := h.audit(keys.AuditFilter{Key: k.ID, Action: keys.ActionEndGrace}); len(e) != 1 {
		h.Fatalf("an EndGrace that ended nothing was audited")
	}
	if _, err := h.A.Revoke(h.ctx, "k", ""); err != nil {
		h.Fatal(err)
	}
	_, _, err = h.A.EndGrace(h.ctx, "k")
	h.wantErr("EndGrace on a revoked key", err, keys.ErrRevoked)
	_, _, err = h.A.EndGrace(h.ctx, "nope")
	h.wantErr("EndGrace on no key", err, keys.ErrNotFound)
}

// testSecrets: a key's live secrets, newest first, the current one first;
// never the secrets themselves.
func testSecrets(h *H) {
	_, s1 := h.create(keys.CreateParams{Name: "k"})
	h.Clock.Advance(time.Minute)
	_, s2, err := h.A.Rotate(h.ctx, "k", time.Hour)
	if err != nil {
		h.Fatal(err)
	}
	secrets, err := h.B.Secrets(h.ctx, "k")
	if err != nil || len(secrets) != 2 {
		h.Fatalf("Secrets = %+v, %v", secrets, err)
	}
	ends := Epoch.Add(time.Minute + time.Hour)
	cur, old := secrets[0], secrets[1]
	if !cur.Current || cur.EndsAt != nil || !strings.HasPrefix(s2, cur.Start) || !cur.CreatedAt.Equal(Epoch.Add(time.Minute)) {
		h.Fatalf("the current secret: %+v", cur)
	}
	if old.Current || !eqTime(old.EndsAt, &ends) || !strings.HasPrefix(s1, old.Start) || !old.CreatedAt.Equal(Epoch) {
		h.Fatalf("the old secret: %+v", old)
	}
	if cur.Start == s2 || len(cur.Start) >= len(s2) {
		h.Fatalf("Secrets shows a secret whole")
	}
	h.Clock.Advance(2 * time.Hour)
	if secrets, err := h.A.Secrets(h.ctx, "k"); err != nil || len(secrets) != 1 || !secrets[0].Current {
		h.Fatalf("after the grace: %+v, %v", secrets, err)
	}
	if _, err := h.A.Revoke(h.ctx, "k", ""); err != nil {
		h.Fatal(err)
	}
	if secrets, err := h.A.Secrets(h.ctx, "k"); err != nil || len(secrets) != 0 {
		h.Fatalf("a revoked key's secrets: %+v, %v", secrets, err)
	}
	if _, err := h.A.Secrets(h.ctx, "nope"); !errors.Is(err, keys.ErrNotFound) {
		h.Fatalf("Secrets of no key: %v", err)
	}
}
