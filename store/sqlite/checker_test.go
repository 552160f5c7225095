package sqlite

import (
	"context"
	"testing"
	"time"

	"github.com/keyctl/keyctl/store/keys"
)

// A reused token verification must never outlive a change to what it
// depends on, whether keyctl or the sqlite3 shell makes the change.
func TestCheckTokenSeesEveryChange(t *testing.T) {
	c := newClock()
	s, _ := openTest(t, c)
	ctx := context.Background()
	_, tok := create(t, s, keys.CreateParams{Name: "admin", Scopes: []string{"keyctl:admin"}})
	chk, err := s.newChecker(2)
	if err != nil {
		t.Fatal(err)
	}
	defer chk.Close()
	code := func() keys.Code {
		t.Helper()
		res, exact, err := chk.CheckToken(ctx, keys.VerifyRequest{Token: tok, Cost: 1})
		if err != nil || exact {
			t.Fatalf("CheckToken: %v, exact %v", err, exact)
		}
		return res.Code
	}
	if got := code(); got != keys.Valid {
		t.Fatalf("first check: %s", got)
	}
	if got := code(); got != keys.Valid {
		t.Fatalf("reused check: %s", got)
	}
	if _, err := s.SetDisabled(ctx, "admin", true); err != nil {
		t.Fatal(err)
	}
	if got := code(); got != keys.CodeDisabled {
		t.Fatalf("after disable: %s, want DISABLED", got)
	}
	s.SetDisabled(ctx, "admin", false)
	if got := code(); got != keys.Valid {
		t.Fatalf("after enable: %s", got)
	}
	// Behind keyctl's back.
	if _, err := s.db.Exec(`UPDATE keys SET status = 'revoked' WHERE name = 'admin'`); err != nil {
		t.Fatal(err)
	}
	if got := code(); got != keys.CodeRevoked {
		t.Fatalf("after a direct revoke: %s, want REVOKED", got)
	}
	s.db.Exec(`UPDATE keys SET status = 'active' WHERE name = 'admin'`)
	code()
	// Time still passes for a reused verification.
	s.db.Exec(`UPDATE keys SET expires_at = ? WHERE name = 'admin'`, c.t.Add(time.Minute).Unix())
	if got := code(); got != keys.Valid {
		t.Fatalf("before expiry: %s", got)
	}
	c.Advance(time.Minute)
	if got := code(); got != keys.CodeExpired {
		t.Fatalf("at expiry: %s, want EXPIRED", got)
	}
	// Every use counts, reused or not.
	if err := chk.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	k, _ := s.Get(ctx, "admin")
	if k.UsageCount != 8 {
		t.Fatalf("usage_count = %d, want 8", k.UsageCount)
	}
}
