package keys

import (
	"errors"
	"testing"
)

func TestAuthorize(t *testing.T) {
	plain := &Key{ID: "key_plain", Name: "plain", Scopes: []string{"sdk"}}
	owner := &Key{ID: "key_owner", Name: "owner", Scopes: []string{ScopeOwner}}
	admin := &Key{ID: "key_admin", Name: "admin", Scopes: []string{ScopeAdmin, "sdk"}}
	reader := &Key{ID: "key_read", Name: "read", Scopes: []string{ScopeRead}}
	granted := &Key{ID: "key_plain", Name: "plain", Scopes: []string{"sdk", ScopeRead}}
	demoted := &Key{ID: "key_owner", Name: "owner", Scopes: []string{}}
	renamed := &Key{ID: "key_owner", Name: "plain", Scopes: []string{ScopeOwner}}
	var (
		local   = Authority{Local: true}
		asOwner = Authority{Scopes: []string{ScopeOwner}}
		asAdmin = Authority{Scopes: []string{ScopeAdmin}}
		asRead  = Authority{Scopes: []string{ScopeRead, ScopeVerify}}
		none    = Authority{}
		holder  = Authority{HolderOf: "key_owner"}
	)
	cases := []struct {
		name          string
		a             Authority
		action        string
		before, after *Key
		ok            bool
	}{
		{"local creates a management key", local, ActionCreate, nil, owner, true},
		{"local rotates an owner key", local, ActionRotate, owner, owner, true},
		{"owner creates an owner key", asOwner, ActionCreate, nil, owner, true},
		{"owner grants", asOwner, ActionUpdate, plain, granted, true},
		{"owner demotes an owner", asOwner, ActionUpdate, owner, demoted, true},
		{"admin creates a plain key", asAdmin, ActionCreate, nil, plain, true},
		{"admin updates a plain key", asAdmin, ActionUpdate, plain, plain, true},
		{"admin rotates a plain key", asAdmin, ActionRotate, plain, plain, true},
		{"admin revokes a plain key", asAdmin, ActionRevoke, plain, plain, true},
		{"admin creates an admin key", asAdmin, ActionCreate, nil, admin, false},
		{"admin grants read", asAdmin, ActionUpdate, plain, granted, false},
		{"admin demotes an owner", asAdmin, ActionUpdate, owner, demoted, false},
		{"admin renames an owner", asAdmin, ActionUpdate, owner, renamed, false},
		{"admin rotates an owner", asAdmin, ActionRotate, owner, owner, false},
		{"admin rotates an admin", asAdmin, ActionRotate, admin, admin, false},
		{"admin disables an admin", asAdmin, ActionDisable, admin, admin, false},
		{"admin enables an owner", asAdmin, ActionEnable, owner, owner, false},
		{"admin revokes an owner", asAdmin, ActionRevoke, owner, owner, false},
		{"admin removes a read key's scope", asAdmin, ActionUpdate, reader, plain, false},
		{"read creates", asRead, ActionCreate, nil, plain, false},
		{"read revokes", asRead, ActionRevoke, plain, plain, false},
		{"no authority", none, ActionDisable, plain, plain, false},
		{"holder revokes its key", holder, ActionRevoke, owner, owner, true},
		{"holder ends its grace", holder, ActionEndGrace, owner, owner, true},
		{"holder revokes another key", holder, ActionRevoke, plain, plain, false},
		{"holder rotates its key", holder, ActionRotate, owner, owner, false},
		{"holder updates its key", holder, ActionUpdate, owner, demoted, false},
	}
	for _, c := range cases {
		err := Authorize(c.a, c.action, c.before, c.after)
		if c.ok && err != nil {
			t.Errorf("%s: %v, want allowed", c.name, err)
		}
		if !c.ok && !errors.Is(err, ErrForbidden) {
			t.Errorf("%s: %v, want ErrForbidden", c.name, err)
		}
	}
}

func TestGrants(t *testing.T) {
	for _, c := range []struct {
		held  string
		scope string
		ok    bool
	}{
		{ScopeOwner, ScopeOwner, true}, {ScopeOwner, ScopeAdmin, true}, {ScopeOwner, ScopeRead, true}, {ScopeOwner, ScopeVerify, true},
		{ScopeAdmin, ScopeOwner, false}, {ScopeAdmin, ScopeAdmin, true}, {ScopeAdmin, ScopeRead, true}, {ScopeAdmin, ScopeVerify, true},
		{ScopeRead, ScopeAdmin, false}, {ScopeRead, ScopeRead, true}, {ScopeRead, ScopeVerify, false},
		{ScopeVerify, ScopeRead, false}, {ScopeVerify, ScopeVerify, true},
		{"sdk", ScopeVerify, false}, {"keyctl:anything", ScopeRead, false},
	} {
		if got := Grants([]string{c.held}, c.scope); got != c.ok {
			t.Errorf("Grants(%s, %s) = %v", c.held, c.scope, got)
		}
	}
}

func TestEscapeAndRedact(t *testing.T) {
	tok := "sk_live_AbCd1234efGH5678ijKL9012mnOP3456QWERTY"
	for in, want := range map[string]string{
		"plain text":             "plain text",
		"line\nforged":           `line\nforged`,
		"\x1b[31mred":            `\x1b[31mred`,
		"back\\slash":            `back\\slash`,
		"bad \xff byte":          `bad \ufffd byte`,
		"key " + tok + " leaked": "key sk_live_AbCd1234… leaked",
		"über":                   "über",
	} {
		if got := Escape(in, 100); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
	if got := Escape("ééééé", 6); got != "é…" {
		t.Errorf("cut: %q", got)
	}
	if got := Redact(tok); got != "sk_live_AbCd1234…" {
		t.Errorf("Redact(token) = %q", got)
	}
	for _, s := range []string{"billing", "key_4f3GhT9kLmNpQr2s", "my_test_db", "sk_live_short"} {
		if Redact(s) != s || LooksLikeToken(s) {
			t.Errorf("Redact(%q) = %q", s, Redact(s))
		}
	}
}
