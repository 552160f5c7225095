package sqlite

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/keyctl/keyctl/store/keys"
)

// actorCtx is a context in which key k acts, as the service's would be.
func actorCtx(k *keys.Key) context.Context {
	return keys.WithActor(context.Background(), keys.Actor{Kind: keys.ActorKey, ID: k.ID, Name: k.Name})
}

// The acting key's authority is read in the change's transaction: a key
// that is no longer active, or does not exist, or an anonymous caller, may
// change nothing; an admin key may not touch a management key.
func TestAuthorityIsReadInTheTransaction(t *testing.T) {
	c := newClock()
	s, _ := openTest(t, c)
	admin, _ := create(t, s, keys.CreateParams{Name: "adm", Scopes: []string{keys.ScopeAdmin}})
	owner, _ := create(t, s, keys.CreateParams{Name: "own", Scopes: []string{keys.ScopeOwner}})
	create(t, s, keys.CreateParams{Name: "plain"})
	ctx := actorCtx(admin)

	if _, err := s.Update(ctx, "plain", keys.UpdateParams{Description: strp("ok")}); err != nil {
		t.Fatalf("an active admin key: %v", err)
	}
	for name, try := range map[string]func() error{
		"rotate an owner key":  func() error { _, _, err := s.Rotate(ctx, "own", 0); return err },
		"rename an owner key":  func() error { _, err := s.Update(ctx, "own", keys.UpdateParams{Name: strp("x")}); return err },
		"disable an owner key": func() error { _, err := s.SetDisabled(ctx, "own", true); return err },
		"revoke itself":        func() error { _, err := s.Revoke(ctx, "adm", ""); return err },
		"grant keyctl:read": func() error {
			_, err := s.Update(ctx, "plain", keys.UpdateParams{AddScopes: []string{keys.ScopeRead}})
			return err
		},
		"create an admin key": func() error { _, _, err := s.Create(ctx, newParams(keys.ScopeAdmin)); return err },
		"as an unknown key": func() error {
			_, err := s.SetDisabled(actorCtx(&keys.Key{ID: "key_nobody"}), "plain", true)
			return err
		},
		"as an anonymous actor": func() error { _, err := s.SetDisabled(anonymous(), "plain", true); return err },
	} {
		if err := try(); !errors.Is(err, keys.ErrForbidden) {
			t.Errorf("%s: %v, want ErrForbidden", name, err)
		}
	}
	if k, _ := s.Get(context.Background(), "own"); k.Name != "own" || k.Status != keys.Active || k.RotatedAt != nil {
		t.Fatalf("a refused change changed the owner key: %+v", k)
	}
	// Disabled, the admin key may do nothing, whatever it could before.
	if _, err := s.SetDisabled(actorCtx(owner), "adm", true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, "plain", keys.UpdateParams{Description: strp("no")}); !errors.Is(err, keys.ErrForbidden) {
		t.Fatalf("a disabled admin key: %v, want ErrForbidden", err)
	}
}

func newParams(scopes ...string) keys.CreateParams {
	return keys.CreateParams{Scopes: scopes, Env: keys.Production, Prefix: "sk"}
}

func anonymous() context.Context {
	return keys.WithActor(context.Background(), keys.Actor{Kind: keys.ActorAnonymous})
}

// TestRenameRacingRotateNeverEscapesTheCheck: an owner swaps the names of
// a management key and an ordinary one, thousands of times, through one
// handle on the database, while an admin key rotates and updates by those
// names through that handle and another (two processes, in effect). No
// admin call ever receives a management key's secret or changes a
// management key.
func TestRenameRacingRotateNeverEscapesTheCheck(t *testing.T) {
	c := newClock()
	s, path := openTest(t, c)
	other, err := Open(context.Background(), path, Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	owner, _ := create(t, s, keys.CreateParams{Name: "own", Scopes: []string{keys.ScopeOwner}})
	admin, _ := create(t, s, keys.CreateParams{Name: "adm", Scopes: []string{keys.ScopeAdmin}})
	mgmt, mgmtSecret := create(t, s, keys.CreateParams{Name: "alpha", Scopes: []string{keys.ScopeRead}})
	plain, _ := create(t, s, keys.CreateParams{Name: "beta", Scopes: []string{"sdk"}})

	swaps, calls := 1000, 2000
	if raceEnabled {
		swaps, calls = 300, 1000
	}
	if testing.Short() {
		swaps, calls = 100, 200
	}
	// The owner swaps until the admin is done, so that every admin call
	// races a rename.
	var adminsRunning atomic.Int32
	adminsRunning.Store(2)
	var wg sync.WaitGroup
	wg.Go(func() {
		ctx := actorCtx(owner)
		rename := func(id, name string) {
			if _, err := s.Update(ctx, id, keys.UpdateParams{Name: &name}); err != nil {
				t.Errorf("owner rename: %v", err)
			}
		}
		for i := 0; i < swaps || adminsRunning.Load() > 0; i++ {
			a, b := mgmt.ID, plain.ID
			if i%2 == 1 {
				a, b = b, a
			}
			rename(a, "swap")
			rename(b, "alpha")
			rename(a, "beta")
		}
	})
	type got struct {
		key    *keys.Key
		secret string
	}
	var mu sync.Mutex
	var issued []got
	refused := 0
	reasons := map[string]int{}
	adminCall := func(st *SQLite, i int) {
		ctx := actorCtx(admin)
		name := []string{"alpha", "beta"}[(i/2)%2]
		var k *keys.Key
		var secret string
		var err error
		if i%4 < 2 {
			k, secret, err = st.Rotate(ctx, name, 0)
		} else {
			k, err = st.Update(ctx, name, keys.UpdateParams{Description: strp(fmt.Sprint(i)), AddScopes: []string{"x"}})
		}
		switch {
		case errors.Is(err, keys.ErrForbidden), errors.Is(err, keys.ErrNotFound):
			mu.Lock()
			refused++
			reasons[strings.SplitN(err.Error(), ":", 2)[0]]++
			mu.Unlock()
		case err != nil:
			t.Errorf("admin call %d: %v", i, err)
		default:
			mu.Lock()
			issued = append(issued, got{k, secret})
			mu.Unlock()
		}
	}
	// One admin goroutine shares the owner's handle, the other has its
	// own: SQLite hands its lock between handles unfairly, so the first
	// keeps the interleaving varied.
	for g, st := range []*SQLite{s, other} {
		wg.Go(func() {
			defer adminsRunning.Add(-1)
			for i := g; i < 2*calls; i += 2 {
				adminCall(st, i)
			}
		})
	}
	wg.Wait()

	ctx := context.Background()
	for _, g := range issued {
		if g.key.ID != plain.ID || keys.Management(g.key) {
			t.Fatalf("an admin call changed a management key: %+v", g.key)
		}
		if g.secret == "" {
			continue
		}
		k, err := s.Find(ctx, g.secret)
		if err != nil || k.ID != plain.ID {
			t.Fatalf("an admin received the secret of %+v (%v)", k, err)
		}
	}
	if len(issued) == 0 || reasons["forbidden"] == 0 {
		t.Fatalf("%d admin calls succeeded and %d were refused (%v): the race was not run", len(issued), refused, reasons)
	}
	// The management key is as the owner left it: its one secret, its
	// scopes, no description, and no entry by the admin in the audit trail.
	k, state, err := s.FindSecret(ctx, mgmtSecret)
	if err != nil || !state.Current || k.ID != mgmt.ID || !slices.Equal(k.Scopes, mgmt.Scopes) || k.Description != "" || k.RotatedAt != nil {
		t.Fatalf("the management key changed: %+v %+v %v", k, state, err)
	}
	entries, err := s.Audit(ctx, keys.AuditFilter{Key: mgmt.ID})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Actor.ID == admin.ID {
			t.Fatalf("the admin changed the management key: %+v", e)
		}
	}
	t.Logf("at least %d owner renames; %d admin calls done on the ordinary key, %d refused", 3*swaps, len(issued), refused)
}
