package keys

import "time"

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
