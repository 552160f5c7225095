package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/keys"
	"github.com/keyctl/keyctl/store/postgres/pgtest"
)

type clock struct{ t time.Time }

func (c *clock) Now() time.Time { return c.t }

// filled returns a SQLite store holding keys in every state a key can be
// in, with usage and an audit trail, and the secrets that were issued.
func filled(t *testing.T, c *clock) (store.Store, []string) {
	t.Helper()
	return filledWith(t, c, nil)
}

// filledWith is filled, on a database made with pepper.
func filledWith(t *testing.T, c *clock, pepper []byte) (store.Store, []string) {
	t.Helper()
	ctx := context.Background()
	src, err := store.Open(ctx, filepath.Join(t.TempDir(), "src.db"), store.Options{Now: c.Now, Pepper: pepper})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	var tokens []string
	mk := func(p keys.CreateParams) *keys.Key {
		p.Env, p.Prefix = keys.Production, "sk"
		k, tok, err := src.Create(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, tok)
		return k
	}
	verify := func(i int, ip string) {
		req := keys.VerifyRequest{Token: tokens[i], Cost: 1}
		if ip != "" {
			req.IP = netip.MustParseAddr(ip)
		}
		if _, err := src.Verify(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	exp := c.t.Add(90 * 24 * time.Hour)
	mk(keys.CreateParams{Name: "plain", Scopes: []string{"sdk", "proxy"}, Metadata: map[string]string{"team": "pay"},
		Description: "billing", ExpiresAt: &exp})
	mk(keys.CreateParams{Name: "metered", Quota: new(int64(5)), AllowedIPs: []string{"10.0.0.0/8"}})
	mk(keys.CreateParams{Name: "limited", RateLimit: &keys.RateLimit{Count: 2, Unit: "minute"}})
	rotated := mk(keys.CreateParams{Name: "rotated"})
	gone := mk(keys.CreateParams{Name: "gone"})
	off := mk(keys.CreateParams{Name: "off"})
	verify(0, "")
	verify(0, "192.0.2.1")
	verify(1, "10.1.1.1")
	verify(1, "10.1.1.2")
	verify(2, "")
	c.t = c.t.Add(time.Second)
	_, newTok, err := src.Rotate(ctx, rotated.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tokens = append(tokens, newTok)
	if _, err := src.Revoke(ctx, gone.ID, "leaked"); err != nil {
		t.Fatal(err)
	}
	if _, err := src.SetDisabled(ctx, off.ID, true); err != nil {
		t.Fatal(err)
	}
	if err := src.(store.DenialRecorder).RecordDenied(ctx, keys.Denial{Route: "revoke", Ref: "plain", Required: "keyctl:admin", Count: 1}); err != nil {
		t.Fatal(err)
	}
	verify(3, "")
	return src, tokens
}

// same checks that b holds what a holds, and then that both answer the
// same to every secret, twice (the second time after the first's use).
func same(t *testing.T, a, b store.Store, tokens []string) {
	t.Helper()
	ctx := context.Background()
	eq := func(what string, x, y any) {
		t.Helper()
		jx, _ := json.Marshal(x)
		jy, _ := json.Marshal(y)
		if string(jx) != string(jy) {
			t.Fatalf("%s differs:\n%s\n%s", what, jx, jy)
		}
	}
	la, err := a.List(ctx, keys.ListFilter{All: true})
	if err != nil {
		t.Fatal(err)
	}
	lb, err := b.List(ctx, keys.ListFilter{All: true})
	if err != nil {
		t.Fatal(err)
	}
	eq("the keys", la, lb)
	for _, k := range la {
		ua, _ := a.Usage(ctx, k.ID, keys.UsageQuery{})
		ub, _ := b.Usage(ctx, k.ID, keys.UsageQuery{})
		eq("the usage of "+k.Name, ua, ub)
	}
	aa, _ := a.Audit(ctx, keys.AuditFilter{})
	ab, _ := b.Audit(ctx, keys.AuditFilter{})
	eq("the audit trail", aa, ab)
	ca, _ := a.VerifyAudit(ctx)
	cb, err := b.VerifyAudit(ctx)
	if err != nil || !cb.OK {
		t.Fatalf("audit verify on the copy: %+v, %v", cb, err)
	}
	eq("audit verify", ca, cb)
	for range 2 {
		for _, tok := range tokens {
			req := keys.VerifyRequest{Token: tok, Cost: 1, IP: netip.MustParseAddr("10.2.2.2")}
			ra, err := a.Verify(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			rb, err := b.Verify(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			eq("a verification", ra, rb)
		}
	}
}

// TestCopyToPostgresAndBack: a whole store moves to PostgreSQL and back
// to SQLite, and at each step every secret keeps its answer, and the audit
// chain still verifies.
func TestCopyToPostgresAndBack(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
	src, tokens := filled(t, c)
	addr := pgtest.NewDatabase(t)
	pg, err := store.Open(ctx, addr, store.Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	n, err := store.Copy(ctx, src, pg)
	if err != nil {
		t.Fatal(err)
	}
	if n != (store.Copied{Keys: 6, Secrets: 7, Uses: 6, Entries: 10}) {
		t.Errorf("copied %+v", n)
	}
	same(t, src, pg, tokens)

	back, err := store.Open(ctx, filepath.Join(t.TempDir(), "back.db"), store.Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	if _, err := store.Copy(ctx, pg, back); err != nil {
		t.Fatal(err)
	}
	same(t, pg, back, tokens)
}

// TestCopyRefusesAStoreInUse: a destination that holds keys or an audit
// trail is refused and left as it was.
func TestCopyRefusesAStoreInUse(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
	src, _ := filled(t, c)
	dsts := map[string]string{"sqlite": filepath.Join(t.TempDir(), "dst.db")}
	if os.Getenv(pgtest.Var) != "" {
		dsts["postgres"] = pgtest.NewDatabase(t)
	}
	for name, addr := range dsts {
		t.Run(name, func(t *testing.T) {
			dst, err := store.Open(ctx, addr, store.Options{Now: c.Now})
			if err != nil {
				t.Fatal(err)
			}
			defer dst.Close()
			if _, _, err := dst.Create(ctx, keys.CreateParams{Name: "mine", Env: keys.Development, Prefix: "sk"}); err != nil {
				t.Fatal(err)
			}
			if _, err := store.Copy(ctx, src, dst); !errors.Is(err, keys.ErrConflict) {
				t.Fatalf("copy into a store in use: %v, want ErrConflict", err)
			}
			if l, _ := dst.List(ctx, keys.ListFilter{All: true}); len(l) != 1 || l[0].Name != "mine" {
				t.Fatalf("the destination changed: %d keys", len(l))
			}
		})
	}
}

// TestCopyUnderAPepper: a store made with a pepper is copied to one opened
// with the same pepper, and its keyed audit chain verifies there, the copy
// keeping the source's record of the pepper; a destination with another
// pepper is refused and left empty.
func TestCopyUnderAPepper(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
	pepper := []byte("the pepper")
	src, tokens := filledWith(t, c, pepper)
	dsts := map[string]func() string{"sqlite": func() string { return filepath.Join(t.TempDir(), "dst.db") }}
	if os.Getenv(pgtest.Var) != "" {
		dsts["postgres"] = func() string { return pgtest.NewDatabase(t) }
	}
	for name, addr := range dsts {
		t.Run(name, func(t *testing.T) {
			dst, err := store.Open(ctx, addr(), store.Options{Now: c.Now, Pepper: pepper})
			if err != nil {
				t.Fatal(err)
			}
			defer dst.Close()
			if _, err := store.Copy(ctx, src, dst); err != nil {
				t.Fatal(err)
			}
			same(t, src, dst, tokens)
			// The copy keys what it appends with the source's key.
			if _, err := dst.Update(ctx, "plain", keys.UpdateParams{Description: new("after the copy")}); err != nil {
				t.Fatal(err)
			}
			if check, err := dst.VerifyAudit(ctx); err != nil || !check.OK {
				t.Fatalf("the copy's chain after a change: %+v, %v", check, err)
			}

			other, err := store.Open(ctx, addr(), store.Options{Now: c.Now, Pepper: []byte("another pepper")})
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			if _, err := store.Copy(ctx, src, other); !errors.Is(err, keys.ErrPepper) {
				t.Fatalf("a copy under another pepper: %v, want ErrPepper", err)
			}
			if l, _ := other.List(ctx, keys.ListFilter{All: true}); len(l) != 0 {
				t.Fatalf("a refused copy wrote %d keys", len(l))
			}
		})
	}
}
