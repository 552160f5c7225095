package keys

import "time"

// Deliver hands a newly issued secret, with its key as it is about to be
// committed, to whoever asked for it: it writes the secret to a file or to
// stdout. An error means the secret did not arrive, and the store must not
// leave the key issued with it.
type Deliver func(k *Key, secret string) error

// SecretInfo is one live secret of a key, never the secret itself: its
// display start, when it was issued, and when it stops working. The current
// secret has no end; older ones live on in a rotation's grace.
type SecretInfo struct {
	Start     string     `json:"start"`
	CreatedAt time.Time  `json:"created_at"`
	EndsAt    *time.Time `json:"ends_at"`
	Current   bool       `json:"current"`
}

// SecretOutcome says what revoking one secret did.
type SecretOutcome string

const (
	// SecretRevoked: it was its key's current secret, and the key is
	// revoked.
	SecretRevoked SecretOutcome = "revoked"
	// SecretGraceEnded: it was an old secret still in its rotation grace;
	// it stopped working now, and the key's current secret still works.
	SecretGraceEnded SecretOutcome = "grace_ended"
	// SecretDead: it already worked no more (rotated out, or its key
	// revoked); nothing changed.
	SecretDead SecretOutcome = "dead"
	// SecretUnknown: no key has it; nothing changed.
	SecretUnknown SecretOutcome = "unknown"
	// SecretAccepted: a keyctl server took it, and says nothing more, so
	// that whoever presents a secret learns nothing about it.
	SecretAccepted SecretOutcome = "accepted"
)

// SecretRevocation is the result of revoking a secret: what it did, the
// secret's display start, when the secret stopped working, and its key
// (nil when unknown).
type SecretRevocation struct {
	Outcome SecretOutcome `json:"outcome"`
	Start   string        `json:"start"`
	EndedAt *time.Time    `json:"ended_at"`
	Key     *Key          `json:"key"`
}

// SecretState is a secret's own status, which may differ from its key's:
// an old secret rotated out is dead while its key is healthy.
type SecretState struct {
	// Current is true for the key's current secret.
	Current bool
	// EndsAt is when an old secret stops (or stopped) working; nil for
	// the current one.
	EndsAt *time.Time
}

// Live reports whether the secret still works at now, its key's status
// aside.
func (s SecretState) Live(now time.Time) bool {
	return s.Current || s.EndsAt != nil && now.Before(*s.EndsAt)
}
