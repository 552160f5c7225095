package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/keys"
)

// Authenticator is a handle that acts with the authority of the key whose
// secret it is given, as a keyctl server's client does: As returns a handle
// that authenticates with secret, closed when the test ends. A handle
// without it reads who acts from the context (keys.WithActor), as the local
// stores do.
type Authenticator interface {
	As(secret string) (store.Store, error)
}

// acting returns a handle onto s's store and a context in which key k,
// whose secret is secret, acts.
func (h *H) acting(s store.Store, k *keys.Key, secret string) (store.Store, context.Context) {
	h.Helper()
	if a, ok := s.(Authenticator); ok {
		as, err := a.As(secret)
		if err != nil {
			h.Fatalf("acting as %s: %v", k.Name, err)
		}
		return as, h.ctx
	}
	return s, keys.WithActor(h.ctx, keys.Actor{Kind: keys.ActorKey, ID: k.ID, Name: k.Name})
}

// authenticates reports whether s acts by a secret it is given rather than
// by the context.
func authenticates(s store.Store) bool {
	_, ok := s.(Authenticator)
	return ok
}

// testAuthorization: every change, whichever way it is asked for, is
// decided by keys.Authorize on the key it changes: an admin key may change
// ordinary keys, and no management key (one that holds a keyctl:* scope),
// nor make one; a read key may change nothing; an owner key may change any
// key. A refused change changes nothing and is not audited as made.
func testAuthorization(h *H) {
	owner, ownerSecret := h.create(keys.CreateParams{Name: "own", Scopes: []string{keys.ScopeOwner}})
	admin, adminSecret := h.create(keys.CreateParams{Name: "adm", Scopes: []string{keys.ScopeAdmin}})
	reader, readerSecret := h.create(keys.CreateParams{Name: "rd", Scopes: []string{keys.ScopeRead}})
	mgmt, _ := h.create(keys.CreateParams{Name: "mgmt", Scopes: []string{keys.ScopeVerify}})
	h.create(keys.CreateParams{Name: "plain", Scopes: []string{"sdk"}})
	// The management key has an old secret in its grace, and a rotation
	// that could be undone.
	if _, _, err := h.A.Rotate(h.ctx, "mgmt", time.Hour); err != nil {
		h.Fatal(err)
	}
	_, undoable, err := h.A.Rotate(h.ctx, "mgmt", time.Hour)
	if err != nil {
		h.Fatal(err)
	}
	mgmt = h.get(h.A, "mgmt")
	entries := len(h.audit(keys.AuditFilter{Key: mgmt.ID}))

	as, ctx := h.acting(h.B, admin, adminSecret)
	if _, err := as.Update(ctx, "plain", keys.UpdateParams{Description: ptr("an admin may")}); err != nil {
		h.Fatalf("an admin changing an ordinary key: %v", err)
	}
	if _, _, err := as.Rotate(ctx, "plain", 0); err != nil {
		h.Fatalf("an admin rotating an ordinary key: %v", err)
	}
	refused := map[string]func() error{
		"rotate a management key": func() error { return third(as.Rotate(ctx, "mgmt", 0)) },
		"update a management key": func() error {
			return second(as.Update(ctx, "mgmt", keys.UpdateParams{Description: ptr("no")}))
		},
		"rename a management key": func() error {
			return second(as.Update(ctx, "mgmt", keys.UpdateParams{Name: ptr("renamed")}))
		},
		"demote a management key": func() error {
			return second(as.Update(ctx, "mgmt", keys.UpdateParams{RemoveScopes: []string{keys.ScopeVerify}}))
		},
		"disable a management key":       func() error { return second(as.SetDisabled(ctx, "mgmt", true)) },
		"revoke a management key":        func() error { return second(as.Revoke(ctx, "mgmt", "")) },
		"end a management key's grace":   func() error { return third(as.EndGrace(ctx, "mgmt")) },
		"undo a management key's rotate": func() error { return second(as.UndoRotate(ctx, "mgmt", undoable)) },
		"revoke an owner key":            func() error { return second(as.Revoke(ctx, "own", "")) },
		"revoke itself":                  func() error { return second(as.Revoke(ctx, "adm", "")) },
		"grant a keyctl:* scope": func() error {
			return second(as.Update(ctx, "plain", keys.UpdateParams{AddScopes: []string{keys.ScopeRead}}))
		},
		"create a management key": func() error {
			return third(as.Create(ctx, keys.CreateParams{Name: "new-admin", Scopes: []string{keys.ScopeAdmin},
				Env: keys.Production, Prefix: "sk"}))
		},
	}
	rd, rctx := h.acting(h.A, reader, readerSecret)
	refused["a read key's update"] = func() error {
		return second(rd.Update(rctx, "plain", keys.UpdateParams{Description: ptr("no")}))
	}
	for name, try := range refused {
		h.wantErr(name, try(), keys.ErrForbidden)
	}
	got := h.get(h.A, "mgmt")
	if got.Name != "mgmt" || got.Description != "" || got.Status != keys.Active || got.Start != mgmt.Start ||
		!slices.Equal(got.Scopes, mgmt.Scopes) || !eqTime(got.RotatedAt, mgmt.RotatedAt) {
		h.Fatalf("refused changes changed the management key:\n got %+v\nwant %+v", got, mgmt)
	}
	if secrets, err := h.A.Secrets(h.ctx, "mgmt"); err != nil || len(secrets) != 3 {
		h.Fatalf("the management key's secrets after refusals: %d, %v; want 3", len(secrets), err)
	}
	for _, e := range h.audit(keys.AuditFilter{Key: mgmt.ID})[entries:] {
		if e.Action != keys.ActionDenied {
			h.Fatalf("a refused change was audited: %+v", e)
		}
	}
	if _, err := h.A.Get(h.ctx, "new-admin"); !errors.Is(err, keys.ErrNotFound) {
		h.Fatalf("a refused create made a key: %v", err)
	}

	// An owner key may change a management key.
	os, octx := h.acting(h.A, owner, ownerSecret)
	if _, err := os.Update(octx, "mgmt", keys.UpdateParams{Description: ptr("an owner may")}); err != nil {
		h.Fatalf("an owner changing a management key: %v", err)
	}
	// Authority is read when the change is made: a disabled admin key may
	// change nothing, whatever it could before.
	if _, err := os.SetDisabled(octx, "adm", true); err != nil {
		h.Fatal(err)
	}
	err = second(as.Update(ctx, "plain", keys.UpdateParams{Description: ptr("disabled")}))
	if err == nil || !authenticates(as) && !errors.Is(err, keys.ErrForbidden) {
		h.Fatalf("a disabled admin key's change: %v, want it refused", err)
	}
	if k := h.get(h.A, "plain"); k.Description != "an admin may" {
		h.Fatalf("a disabled admin key changed a key: %q", k.Description)
	}
	if authenticates(h.A) {
		return // a server tells who acts by the token alone
	}
	for name, actor := range map[string]keys.Actor{
		"a key that does not exist": {Kind: keys.ActorKey, ID: "key_0000000000000000", Name: "ghost"},
		"an anonymous caller":       {Kind: keys.ActorAnonymous},
	} {
		_, err := h.A.SetDisabled(keys.WithActor(h.ctx, actor), "plain", true)
		h.wantErr(name, err, keys.ErrForbidden)
	}
}

// testAuthorizationInTransaction: the check of the acting key's right and
// the change happen in one transaction, on the key the change resolved to.
// An owner swaps the names of a management key and an ordinary one, again
// and again, while an admin key rotates and updates by those names through
// both handles: no admin call ever receives a management key's secret or
// changes a management key.
func testAuthorizationInTransaction(h *H) {
	owner, ownerSecret := h.create(keys.CreateParams{Name: "own", Scopes: []string{keys.ScopeOwner}})
	admin, adminSecret := h.create(keys.CreateParams{Name: "adm", Scopes: []string{keys.ScopeAdmin}})
	mgmt, mgmtSecret := h.create(keys.CreateParams{Name: "alpha", Scopes: []string{keys.ScopeRead}})
	plain, _ := h.create(keys.CreateParams{Name: "beta", Scopes: []string{"sdk"}})

	calls := 400
	if raceEnabled || testing.Short() {
		calls = 120
	}
	os, octx := h.acting(h.A, owner, ownerSecret)
	// One admin caller shares the owner's handle and the other has the
	// second: a lock handed between handles unfairly could otherwise put
	// all of one handle's calls on one side of every swap.
	admins := []struct {
		s   store.Store
		ctx context.Context
	}{}
	for _, s := range []store.Store{h.A, h.B} {
		as, actx := h.acting(s, admin, adminSecret)
		admins = append(admins, struct {
			s   store.Store
			ctx context.Context
		}{as, actx})
	}
	var running atomic.Int32
	running.Store(int32(len(admins)))
	var wg sync.WaitGroup
	swaps := 0
	wg.Go(func() {
		rename := func(id, name string) {
			if _, err := os.Update(octx, id, keys.UpdateParams{Name: &name}); err != nil {
				h.Errorf("owner rename: %v", err)
			}
		}
		// The owner swaps until the admins are done, so that every admin
		// call races a rename.
		for i := 0; running.Load() > 0 && !h.Failed(); i++ {
			a, b := mgmt.ID, plain.ID
			if i%2 == 1 {
				a, b = b, a
			}
			rename(a, "swap")
			rename(b, "alpha")
			rename(a, "beta")
			swaps++
		}
	})
	type issued struct {
		key    *keys.Key
		secret string
	}
	var mu sync.Mutex
	var done []issued
	forbidden := 0
	for g, a := range admins {
		wg.Go(func() {
			defer running.Add(-1)
			for i := g; i < calls; i += len(admins) {
				name := []string{"alpha", "beta"}[(i/2)%2]
				var k *keys.Key
				var secret string
				var err error
				if i%4 < 2 {
					k, secret, err = a.s.Rotate(a.ctx, name, 0)
				} else {
					k, err = a.s.Update(a.ctx, name, keys.UpdateParams{Description: ptr(fmt.Sprint(i)), AddScopes: []string{"x"}})
				}
				mu.Lock()
				switch {
				case errors.Is(err, keys.ErrForbidden):
					forbidden++
				case errors.Is(err, keys.ErrNotFound), errors.Is(err, keys.ErrConflict):
					// the name was between keys, or moved under the lock
				case err != nil:
					h.Errorf("admin call %d: %v", i, err)
				default:
					done = append(done, issued{k, secret})
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if h.Failed() {
		h.FailNow()
	}
	for _, d := range done {
		if d.key.ID != plain.ID || keys.Management(d.key) {
			h.Fatalf("an admin call changed a management key: %+v", d.key)
		}
		if d.secret == "" {
			continue
		}
		k, err := h.A.Find(h.ctx, d.secret)
		if err != nil || k.ID != plain.ID {
			h.Fatalf("an admin received the secret of %+v (%v)", k, err)
		}
	}
	if len(done) == 0 || forbidden == 0 {
		h.Fatalf("%d admin calls succeeded and %d were forbidden: the race was not run", len(done), forbidden)
	}
	// The management key is as the owner left it: its one secret, its
	// scopes, no description, and no change by the admin in its trail.
	k, st, err := h.B.FindSecret(h.ctx, mgmtSecret)
	if err != nil || !st.Current || k.ID != mgmt.ID || !slices.Equal(k.Scopes, mgmt.Scopes) || k.Description != "" || k.RotatedAt != nil {
		h.Fatalf("the management key changed: %+v %+v %v", k, st, err)
	}
	for _, e := range h.audit(keys.AuditFilter{Key: mgmt.ID}) {
		if e.Actor.ID == admin.ID && e.Action != keys.ActionDenied {
			h.Fatalf("the admin changed the management key: %+v", e)
		}
	}
	h.Logf("%d owner swaps; %d admin calls done on the ordinary key, %d forbidden", swaps, len(done), forbidden)
}
