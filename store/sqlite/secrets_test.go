package sqlite

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keyctl/keyctl/apikey"
	"github.com/keyctl/keyctl/store/keys"
)

// TestRevokeSecret: the one operation behind `keyctl revoke --secret` and
// POST /v1/credentials/revoke acts on the secret presented, as its own
// status says, on the authority of whoever presents it.
func TestRevokeSecret(t *testing.T) {
	c := newClock()
	s, _ := openTest(t, c)
	ctx := anonymous() // no authority but the secret itself
	k, first := create(t, s, keys.CreateParams{Name: "svc"})
	c.Advance(time.Minute)
	_, second, _ := s.Rotate(context.Background(), "svc", time.Hour)
	c.Advance(time.Minute)
	_, third, _ := s.Rotate(context.Background(), "svc", 2*time.Hour)
	c.Advance(time.Minute)

	// first and second are in grace; third is current.
	r, err := s.RevokeSecret(ctx, second, "leaked")
	if err != nil || r.Outcome != keys.SecretGraceEnded || r.Key.ID != k.ID || r.Key.Status != keys.Active || !r.EndedAt.Equal(c.t) {
		t.Fatalf("a secret in grace: %+v, %v", r, err)
	}
	state := func(tok string) keys.SecretState {
		_, st, err := s.FindSecret(context.Background(), tok)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	if state(second).Live(c.t) || !state(first).Live(c.t) || !state(third).Current {
		t.Fatal("ending one secret's grace touched another secret")
	}
	if r, _ := s.RevokeSecret(ctx, second, ""); r.Outcome != keys.SecretDead {
		t.Fatalf("a dead secret: %+v", r)
	}
	c.Advance(time.Hour)
	if r, _ := s.RevokeSecret(ctx, first, ""); r.Outcome != keys.SecretDead || r.Key.Status != keys.Active {
		t.Fatalf("a secret past its grace: %+v", r)
	}
	r, err = s.RevokeSecret(ctx, third, "leaked in a log")
	if err != nil || r.Outcome != keys.SecretRevoked || r.Key.Status != keys.Revoked || r.Key.RevokeReason != "leaked in a log" {
		t.Fatalf("the current secret: %+v, %v", r, err)
	}
	if r, _ := s.RevokeSecret(ctx, third, ""); r.Outcome != keys.SecretDead {
		t.Fatalf("the secret of a revoked key: %+v", r)
	}
	unknown, _ := apikey.New("sk", apikey.TagLive)
	if r, err := s.RevokeSecret(ctx, unknown.String(), ""); err != nil || r.Outcome != keys.SecretUnknown || r.Key != nil || r.Start != unknown.Start() {
		t.Fatalf("an unknown secret: %+v, %v", r, err)
	}
	if _, err := s.RevokeSecret(ctx, "sk_live_nope", ""); !errors.Is(err, keys.ErrInvalid) {
		t.Fatalf("not a secret: %v", err)
	}
	entries, _ := s.Audit(context.Background(), keys.AuditFilter{Key: k.ID})
	var actions []string
	for _, e := range entries {
		actions = append(actions, e.Action)
	}
	if got := strings.Join(actions, " "); got != "create rotate rotate end-grace revoke" {
		t.Fatalf("audit: %s", got)
	}
}
