package sqlite

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/keyctl/keyctl/store/keys"
)

func TestAuditRecordsEveryChange(t *testing.T) {
	c := newClock()
	s, _ := openTest(t, c)
	_, secret := create(t, s, keys.CreateParams{Name: "a", Scopes: []string{"sdk"}})
	// The actor is a real key: a store reads its authority by its id.
	ops, _ := create(t, s, keys.CreateParams{Name: "ops", Scopes: []string{keys.ScopeAdmin}})
	ctx := keys.WithActor(context.Background(), keys.Actor{Kind: "key", ID: ops.ID, Name: "ops", Address: "192.0.2.1"})
	s.Update(ctx, "a", keys.UpdateParams{AddScopes: []string{"proxy"}, Description: strp("x")})
	s.Update(ctx, "a", keys.UpdateParams{Description: strp("x")}) // no change: no entry
	_, rotated, _ := s.Rotate(ctx, "a", time.Hour)
	s.SetDisabled(ctx, "a", true)
	s.SetDisabled(ctx, "a", true) // no change
	s.SetDisabled(ctx, "a", false)
	s.Revoke(keys.WithNote(ctx, "leak response: found in app.env:3"), "a", "leaked")
	s.Revoke(ctx, "a", "again") // no change
	s.RecordDenied(ctx, keys.Denial{Route: "create", Required: "keyctl:owner"})

	entries, err := s.Audit(context.Background(), keys.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if entries[1].KeyName != "ops" {
		t.Fatalf("second entry: %+v", entries[1])
	}
	entries = append(entries[:1], entries[2:]...)
	var actions []string
	for _, e := range entries {
		actions = append(actions, e.Action)
		raw := strings.Join([]string{e.PrevHash, e.Hash, e.KeyName}, " ")
		for _, ch := range e.Changes {
			raw += " " + string(toJSON(t, ch))
		}
		if strings.Contains(raw, secret) || strings.Contains(raw, rotated) {
			t.Errorf("entry %d contains a secret", e.Seq)
		}
	}
	want := "create update rotate disable enable revoke denied"
	if got := strings.Join(actions, " "); got != want {
		t.Fatalf("actions = %q, want %q", got, want)
	}
	if entries[0].Actor.Kind != "user" || entries[1].Actor.Name != "ops" || entries[1].Actor.Address != "192.0.2.1" {
		t.Errorf("actors: %+v, %+v", entries[0].Actor, entries[1].Actor)
	}
	if _, ok := entries[1].Changes["scopes"]; !ok {
		t.Errorf("update changes = %v", entries[1].Changes)
	}
	if entries[2].Changes["grace"].To != "1h" {
		t.Errorf("rotate changes = %v", entries[2].Changes)
	}
	if entries[5].Note != "leak response: found in app.env:3" {
		t.Errorf("revoke note = %q", entries[5].Note)
	}
	if got, _ := s.Audit(context.Background(), keys.AuditFilter{Action: keys.ActionRotate}); len(got) != 1 {
		t.Errorf("filter by action: %d entries", len(got))
	}
	if got, _ := s.Audit(context.Background(), keys.AuditFilter{Actor: "ops"}); len(got) != 6 {
		t.Errorf("filter by actor: %d entries", len(got))
	}
	check, err := s.VerifyAudit(context.Background())
	if err != nil || !check.OK || check.Entries != 8 {
		t.Fatalf("VerifyAudit = %+v, %v", check, err)
	}
}

func toJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVerifyAuditFindsTampering(t *testing.T) {
	for _, tt := range []struct {
		name, sql string
		bad       int64
		problem   string
	}{
		{"edited", `UPDATE audit SET content = replace(content, '"a"', '"b"') WHERE seq = 2`, 2, "entry 2 was edited"},
		{"deleted", `DELETE FROM audit WHERE seq = 2`, 2, "entry 2 is missing"},
		{"deleted last", `DELETE FROM audit WHERE seq = 4`, 4, "entries 4 to 4 were deleted"},
		{"reordered", `UPDATE audit SET seq = seq + 10 WHERE seq IN (2, 3);
			UPDATE audit SET seq = 3 WHERE seq = 12; UPDATE audit SET seq = 2 WHERE seq = 13`, 2, "entries were reordered"},
		{"rehashed", `UPDATE audit SET content = replace(content, '"a"', '"b"'),
			hash = 'x' WHERE seq = 2`, 2, "entry 2 was edited"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openTest(t, newClock())
			ctx := context.Background()
			create(t, s, keys.CreateParams{Name: "a"})
			s.Update(ctx, "a", keys.UpdateParams{Description: strp("one")})
			s.Update(ctx, "a", keys.UpdateParams{Description: strp("two")})
			s.SetDisabled(ctx, "a", true)
			if _, err := s.db.Exec(tt.sql); err != nil {
				t.Fatal(err)
			}
			check, err := s.VerifyAudit(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if check.OK || check.BadSeq != tt.bad || !strings.Contains(check.Problem, tt.problem) {
				t.Fatalf("VerifyAudit = %+v; want entry %d: %s", check, tt.bad, tt.problem)
			}
		})
	}
}
