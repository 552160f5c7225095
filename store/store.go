// Package store is the one seam between what a user asks of keyctl and where
// keys live. Commands talk only to the Store interface; SQLite is the local
// implementation.
package store

import (
	"context"
	"errors"
	"time"
)

// Errors every Store implementation returns, wrapped with %w. The command
// layer maps them to exit statuses in one place.
var (
	// ErrNotFound: no key has that id or name.
	ErrNotFound = errors.New("not found")
	// ErrRevoked: the key is revoked and the change is refused.
	ErrRevoked = errors.New("key is revoked")
	// ErrConflict: the change collides with another key (a name in use).
	ErrConflict = errors.New("conflict")
	// ErrInvalid: a value the store cannot accept.
	ErrInvalid = errors.New("invalid")
)

// Store holds keys. Who acts is carried by the context (WithActor). Every method that changes something does so in one
// transaction: it either happens whole or not at all.
type Store interface {
	// Create issues a new key and returns it with its plaintext secret,
	// which exists nowhere else afterwards.
	Create(ctx context.Context, p CreateParams) (*Key, string, error)
	// Get resolves ref, an id or a name, to a key.
	Get(ctx context.Context, ref string) (*Key, error)
	// List returns the keys that match f, newest first.
	List(ctx context.Context, f ListFilter) ([]*Key, error)
	// Update changes a key's settings.
	Update(ctx context.Context, ref string, p UpdateParams) (*Key, error)
	// Rotate gives a key a new secret, keeping everything else. The old
	// secret stops working after grace (at once when grace is zero).
	Rotate(ctx context.Context, ref string, grace time.Duration) (*Key, string, error)
	// SetDisabled disables or enables a key.
	SetDisabled(ctx context.Context, ref string, disabled bool) (*Key, error)
	// Revoke revokes a key for good; revoking a revoked key changes nothing.
	Revoke(ctx context.Context, ref, reason string) (*Key, error)
	// Verify decides whether a key may be used and records the use: usage
	// count and last use for every found key, quota and rate limit for a
	// valid one. A failure to decide is an error, never a result.
	Verify(ctx context.Context, req VerifyRequest) (*VerifyResult, error)
	// Find returns the key a plaintext token belongs to (any of its secrets,
	// current or not), without recording a use. ErrNotFound when none.
	Find(ctx context.Context, token string) (*Key, error)
	// Usage reports a key's recent verifications and counts per day.
	Usage(ctx context.Context, ref string, q UsageQuery) (*UsageReport, error)
	// Audit returns the audit entries that match f, oldest first.
	Audit(ctx context.Context, f AuditFilter) ([]*AuditEntry, error)
	// VerifyAudit walks the audit chain and reports the first bad entry.
	VerifyAudit(ctx context.Context) (*AuditCheck, error)
	Close() error
}
