package sqlite

import (
	"context"
	"database/sql"
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

// Another program's edit of any column is seen at the next check, however
// small: PRAGMA data_version tells the readers that something was
// committed. (quota_remaining once escaped the triggers that told before.)
func TestCheckTokenSeesOutsideEdits(t *testing.T) {
	c := newClock()
	s, path := openTest(t, c)
	ctx := context.Background()
	_, tok := create(t, s, keys.CreateParams{Name: "admin", Scopes: []string{"keyctl:admin"}})
	chk, err := s.newChecker(1)
	if err != nil {
		t.Fatal(err)
	}
	defer chk.Close()
	check := func() (keys.Code, bool) {
		t.Helper()
		res, exact, err := chk.CheckToken(ctx, keys.VerifyRequest{Token: tok, Cost: 1})
		if err != nil {
			t.Fatal(err)
		}
		if exact {
			return "", true
		}
		return res.Code, false
	}
	if code, _ := check(); code != keys.Valid {
		t.Fatalf("first check: %s", code)
	}
	// The sqlite3 shell, in effect: a connection of another program.
	shell, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer shell.Close()
	if _, err := shell.Exec(`UPDATE keys SET quota_remaining = 0 WHERE name = 'admin'`); err != nil {
		t.Fatal(err)
	}
	if _, exact := check(); !exact {
		t.Fatal("a spent quota set behind keyctl's back was not seen: the old verification was reused")
	}
	if _, err := shell.Exec(`UPDATE keys SET quota_remaining = NULL, description = 'x' WHERE name = 'admin'`); err != nil {
		t.Fatal(err)
	}
	if code, exact := check(); exact || code != keys.Valid {
		t.Fatalf("after the quota is lifted again: %s, %v", code, exact)
	}
}
