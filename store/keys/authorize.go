package keys

import (
	"fmt"
	"slices"
	"strings"
)

// keyctl's own scopes: what a key may do to other keys through the HTTP
// service. owner ⊇ admin ⊇ read; verify allows only verifications, which
// owner and admin may also make.
const (
	ScopeOwner  = "keyctl:owner"
	ScopeAdmin  = "keyctl:admin"
	ScopeRead   = "keyctl:read"
	ScopeVerify = "keyctl:verify"
	// ReservedScopePrefix marks keyctl's own scopes: a key that holds one
	// is a management key, within an owner's reach only.
	ReservedScopePrefix = "keyctl:"
)

// Reserved reports whether scope is one of keyctl's own (keyctl:*).
func Reserved(scope string) bool { return strings.HasPrefix(scope, ReservedScopePrefix) }

// Grants reports whether a key holding scopes may act with scope, through
// the hierarchy owner ⊇ admin ⊇ read, owner and admin also holding verify.
func Grants(scopes []string, scope string) bool {
	held := func(s string) bool { return slices.Contains(scopes, s) }
	switch scope {
	case ScopeOwner:
		return held(ScopeOwner)
	case ScopeAdmin:
		return held(ScopeAdmin) || held(ScopeOwner)
	case ScopeRead:
		return held(ScopeRead) || held(ScopeAdmin) || held(ScopeOwner)
	case ScopeVerify:
		return held(ScopeVerify) || held(ScopeAdmin) || held(ScopeOwner)
	}
	return false
}

// Management reports whether k holds any keyctl:* scope: such a key can
// act on other keys, so only an owner may create, change or hand out one.
func Management(k *Key) bool {
	return k != nil && slices.ContainsFunc(k.Scopes, Reserved)
}

// Authority is what an actor may change, as the store reads it inside the
// transaction of the change: never from what a request said, always from
// the acting key's row as it is at that moment.
type Authority struct {
	// Local is the OS user on the database file: access to the file is
	// ownership, and with it full authority.
	Local bool
	// Scopes are the acting key's scopes, read by its id in the
	// transaction; the key was active then.
	Scopes []string
	// HolderOf is the id of the key whose secret the actor presented: its
	// holder may kill that secret and nothing else.
	HolderOf string
}

// Authorize is the one rule every change passes, evaluated inside the
// change's transaction on the target as it is (before; nil for a key being
// created) and as it would be (after): the OS user may do anything; the
// holder of a secret may revoke it; an owner key may change any key; an
// admin key may change any key that is not a management key before or
// after the change; nothing else may change anything. The answer wraps
// ErrForbidden.
func Authorize(a Authority, action string, before, after *Key) error {
	switch {
	case a.Local:
		return nil
	case a.HolderOf != "":
		if before != nil && before.ID == a.HolderOf && (action == ActionRevoke || action == ActionEndGrace) {
			return nil
		}
		return fmt.Errorf("%w: the holder of a secret may only revoke it", ErrForbidden)
	case Grants(a.Scopes, ScopeOwner):
		return nil
	case !Grants(a.Scopes, ScopeAdmin):
		return fmt.Errorf("%w: %s needs a key that holds %s (or %s)", ErrForbidden, action, ScopeAdmin, ScopeOwner)
	}
	for _, k := range []*Key{before, after} {
		if !Management(k) {
			continue
		}
		if k == after && before != nil && !Management(before) {
			return fmt.Errorf("%w: only a %s key may grant keyctl:* scopes such as %q", ErrForbidden, ScopeOwner, firstReserved(after))
		}
		if before == nil {
			return fmt.Errorf("%w: only a %s key may create a key that holds keyctl:* scopes such as %q", ErrForbidden, ScopeOwner, firstReserved(after))
		}
		return fmt.Errorf("%w: key %q holds %s: only a %s key may %s it", ErrForbidden, before.Name, firstReserved(before), ScopeOwner, action)
	}
	return nil
}

func firstReserved(k *Key) string {
	if i := slices.IndexFunc(k.Scopes, Reserved); i >= 0 {
		return k.Scopes[i]
	}
	return ""
}
