package postgres_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/keyctl/keyctl/store/keys"
	"github.com/keyctl/keyctl/store/postgres"
	"github.com/keyctl/keyctl/store/postgres/pgtest"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *clock      { return &clock{t: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)} }
func int64p(v int64) *int64 { return &v }

// open opens a store on addr: each call is another pool, as another
// machine's replica would have.
func open(t testing.TB, addr string, c *clock) *postgres.Postgres {
	t.Helper()
	opts := postgres.Options{}
	if c != nil {
		opts.Now = c.Now
	}
	s, err := postgres.Open(context.Background(), addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func create(t testing.TB, s *postgres.Postgres, p keys.CreateParams) (*keys.Key, string) {
	t.Helper()
	if p.Env == "" {
		p.Env = keys.Production
	}
	if p.Prefix == "" {
		p.Prefix = "sk"
	}
	k, secret, err := s.Create(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	return k, secret
}

func TestKeyLifecycle(t *testing.T) {
	c := newClock()
	s := open(t, pgtest.NewDatabase(t), c)
	ctx := context.Background()
	exp := c.t.Add(48 * time.Hour)
	k, secret := create(t, s, keys.CreateParams{
		Name: "billing", Description: "billing service", Scopes: []string{"sdk", "proxy", "sdk"},
		ExpiresAt: &exp, AllowedIPs: []string{"10.0.0.0/8", "::1"}, Quota: int64p(5),
		RateLimit: &keys.RateLimit{Count: 100, Unit: "minute"}, Metadata: map[string]string{"team": "pay"},
		CreatedBy: "alice",
	})
	if k.Name != "billing" || !slices.Equal(k.Scopes, []string{"proxy", "sdk"}) || k.Env != keys.Production ||
		k.Status != keys.Active || !k.ExpiresAt.Equal(exp) || *k.QuotaRemaining != 5 || k.RateLimit.String() != "100/m" ||
		k.Metadata["team"] != "pay" || k.CreatedBy != "alice" || !k.CreatedAt.Equal(c.t) ||
		!slices.Equal(k.AllowedIPs, []string{"10.0.0.0/8", "::1"}) {
		t.Fatalf("created key = %+v", k)
	}
	if _, _, err := s.Create(ctx, keys.CreateParams{Name: "billing", Env: keys.Production, Prefix: "sk"}); !errors.Is(err, keys.ErrConflict) {
		t.Fatalf("second key named billing: err = %v, want ErrConflict", err)
	}
	if found, err := s.Find(ctx, secret); err != nil || found.ID != k.ID {
		t.Fatalf("Find = %v, %v", found, err)
	}

	c.Advance(time.Minute)
	u, err := s.Update(ctx, "billing", keys.UpdateParams{AddScopes: []string{"refunds"}, RemoveScopes: []string{"proxy"},
		ClearQuota: true, ClearRateLimit: true, SetMeta: map[string]string{"owner": "ana"}})
	if err != nil || !slices.Equal(u.Scopes, []string{"refunds", "sdk"}) || u.Quota != nil || u.RateLimit != nil ||
		u.Metadata["owner"] != "ana" || !u.UpdatedAt.Equal(c.t) {
		t.Fatalf("Update = %+v, %v", u, err)
	}

	r, newSecret, err := s.Rotate(ctx, k.ID, time.Hour)
	if err != nil || r.ID != k.ID || r.Start == k.Start || r.RotatedAt == nil {
		t.Fatalf("Rotate = %+v, %v", r, err)
	}
	for _, tok := range []string{secret, newSecret} {
		if res, err := s.Verify(ctx, keys.VerifyRequest{Token: tok, Cost: 1, IP: mustAddr("10.1.2.3")}); err != nil || res.Code != keys.Valid {
			t.Fatalf("Verify during grace = %+v, %v", res, err)
		}
	}
	c.Advance(time.Hour)
	if res, _ := s.Verify(ctx, keys.VerifyRequest{Token: secret, IP: mustAddr("10.1.2.3")}); res.Code != keys.CodeRevoked {
		t.Fatalf("old secret after grace: %s, want REVOKED", res.Code)
	}

	if d, err := s.SetDisabled(ctx, "billing", true); err != nil || d.Status != keys.Disabled {
		t.Fatalf("disable = %+v, %v", d, err)
	}
	if res, _ := s.Verify(ctx, keys.VerifyRequest{Token: newSecret, IP: mustAddr("10.1.2.3")}); res.Code != keys.CodeDisabled {
		t.Fatalf("disabled key: %s", res.Code)
	}
	if _, err := s.Revoke(ctx, "billing", "leaked"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, "billing", keys.UpdateParams{Description: new(string)}); !errors.Is(err, keys.ErrRevoked) {
		t.Fatalf("update of a revoked key: %v, want ErrRevoked", err)
	}
	if got, err := s.Get(ctx, "billing"); err != nil || got.Status != keys.Revoked || got.RevokeReason != "leaked" {
		t.Fatalf("Get after revoke = %+v, %v", got, err)
	}
	fresh, _ := create(t, s, keys.CreateParams{Name: "billing"})
	if got, _ := s.Get(ctx, "billing"); got.ID != fresh.ID {
		t.Errorf("Get(billing) = %s, want the live key %s", got.ID, fresh.ID)
	}
	if l, _ := s.List(ctx, keys.ListFilter{}); len(l) != 1 || l[0].ID != fresh.ID {
		t.Errorf("List = %d keys, want the live one", len(l))
	}
	if l, _ := s.List(ctx, keys.ListFilter{All: true}); len(l) != 2 || l[0].ID != fresh.ID {
		t.Errorf("List --all = %d keys, want 2, newest first", len(l))
	}

	rep, err := s.Usage(ctx, k.ID, keys.UsageQuery{})
	if err != nil || rep.Key.UsageCount != 4 || len(rep.Events) != 4 || rep.Events[0].Code != keys.CodeDisabled ||
		rep.Key.LastUsedIP != "10.1.2.3" || len(rep.Daily) != 1 || rep.Daily[0].Total != 4 {
		t.Fatalf("Usage = %+v, %v", rep, err)
	}
	entries, err := s.Audit(ctx, keys.AuditFilter{})
	var actions []string
	for _, e := range entries {
		actions = append(actions, e.Action)
	}
	if err != nil || !slices.Equal(actions, []string{"create", "update", "rotate", "disable", "revoke", "create"}) {
		t.Fatalf("audit actions = %v, %v", actions, err)
	}
	if check, err := s.VerifyAudit(ctx); err != nil || !check.OK || check.Entries != 6 {
		t.Fatalf("VerifyAudit = %+v, %v", check, err)
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
