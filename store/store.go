// Package store is the one seam between what a user asks of keyctl and where
// keys live. Commands and the server talk only to the Store interface; Open
// picks the backend from the form of an address: a path (the embedded SQLite
// default) or an http(s):// URL (a keyctl server, in remote mode).
//
// What a key is, and the errors every store returns, are in store/keys; the
// rules of a verification in store/decide; the audit chain's arithmetic in
// store/chain. A backend persists what those pure packages decide.
package store

import (
	"context"
	"iter"
	"time"

	"github.com/keyctl/keyctl/store/dump"
	"github.com/keyctl/keyctl/store/keys"
)

// Store holds keys. Who acts is carried by the context (keys.WithActor), and
// so is a note for the audit trail (keys.WithNote). Every method that
// changes something does so in one transaction: it either happens whole or
// not at all, and its audit entry with it.
type Store interface {
	// Create issues a new key and returns it with its plaintext secret,
	// which exists nowhere else afterwards.
	Create(ctx context.Context, p keys.CreateParams) (*keys.Key, string, error)
	// Get resolves ref, an id or a name, to a key.
	Get(ctx context.Context, ref string) (*keys.Key, error)
	// List returns the keys that match f, newest first.
	List(ctx context.Context, f keys.ListFilter) ([]*keys.Key, error)
	// Update changes a key's settings.
	Update(ctx context.Context, ref string, p keys.UpdateParams) (*keys.Key, error)
	// Rotate gives a key a new secret, keeping everything else. The old
	// secret stops working after grace (at once when grace is zero).
	Rotate(ctx context.Context, ref string, grace time.Duration) (*keys.Key, string, error)
	// SetDisabled disables or enables a key.
	SetDisabled(ctx context.Context, ref string, disabled bool) (*keys.Key, error)
	// Revoke revokes a key for good; revoking a revoked key changes nothing.
	Revoke(ctx context.Context, ref, reason string) (*keys.Key, error)
	// UndoRotate undoes a rotation whose new secret could not be delivered,
	// identified by that secret, which must still be the key's current one:
	// the secret is deleted and the older secrets work as before the
	// rotation. Only within a short window after the rotation
	// (sqlite.UndoWindow); keys.ErrConflict otherwise.
	UndoRotate(ctx context.Context, ref, secret string) (*keys.Key, error)
	// EndGrace ends now every old secret of a key still in a rotation's
	// grace, and says how many it ended; the current secret stays.
	EndGrace(ctx context.Context, ref string) (*keys.Key, int, error)
	// Secrets lists a key's live secrets (the current one, and those in a
	// rotation's grace), newest first, never the secrets themselves.
	Secrets(ctx context.Context, ref string) ([]keys.SecretInfo, error)
	// Verify decides whether a key may be used and records the use: usage
	// count and last use for every found key, quota and rate limit for a
	// valid one. A failure to decide is an error, never a result.
	Verify(ctx context.Context, req keys.VerifyRequest) (*keys.VerifyResult, error)
	// Find returns the key a plaintext token belongs to (any of its secrets,
	// current or not), without recording a use. ErrNotFound when none.
	Find(ctx context.Context, token string) (*keys.Key, error)
	// Usage reports a key's recent verifications and counts per day.
	Usage(ctx context.Context, ref string, q keys.UsageQuery) (*keys.UsageReport, error)
	// Audit returns the audit entries that match f, oldest first.
	Audit(ctx context.Context, f keys.AuditFilter) ([]*keys.AuditEntry, error)
	// VerifyAudit walks the audit chain and reports the first bad entry.
	VerifyAudit(ctx context.Context) (*keys.AuditCheck, error)
	Close() error
}

// The optional capabilities a backend may declare by implementing them.
// Callers check for them in one place each (the server, for the first
// three; keyctl copy, for Dumper and Loader).

// BatchVerifier verifies many requests in one transaction, each exactly as
// if verified alone, so that a server pays one commit for many.
type BatchVerifier interface {
	VerifyBatch(ctx context.Context, reqs []keys.VerifyRequest) ([]*keys.VerifyResult, error)
}

// FastVerifier decides most verifications without a write transaction, for
// a long-running server: a verification that changes nothing but a key's
// usage is decided on a read, and its use recorded in the background.
type FastVerifier interface {
	// Check verifies req when a read decides it; exact reports that it
	// spends quota or rate limit and must be verified with Verify or
	// VerifyBatch instead. keys.ErrClosed once the store is closing.
	Check(ctx context.Context, req keys.VerifyRequest) (res *keys.VerifyResult, exact bool, err error)
	// CheckToken is Check for a caller's own token, which comes again and
	// again: a valid verification may be reused for as long as nothing it
	// depends on has changed (its use is still recorded, and expiry,
	// address and grace are judged anew each time).
	CheckToken(ctx context.Context, req keys.VerifyRequest) (res *keys.VerifyResult, exact bool, err error)
	// CheckCall is CheckToken for a caller's token and then, if allow
	// permits its result, Check for req, with one read for both when it
	// can. It returns req's result (nil when the token does not allow it)
	// and the token's. exact with a token result means req must be verified
	// exactly; exact without one, that the token must be (and then req).
	CheckCall(ctx context.Context, token keys.VerifyRequest, allow func(*keys.VerifyResult) bool, req keys.VerifyRequest) (res, tokenRes *keys.VerifyResult, exact bool, err error)
	// Flush returns once every use checked so far is written, so that what
	// is read next sees them, and reports a failure to write them.
	Flush(ctx context.Context) error
}

// DenialRecorder audits an admin call refused for lack of scope.
type DenialRecorder interface {
	RecordDenied(ctx context.Context, attempted, ref, required string) error
}

// Migrator applies a database's pending schema migrations explicitly, for
// keyctl migrate, and says from which version to which.
type Migrator interface {
	Migrate(ctx context.Context) (from, to int, err error)
}

// Dumper reads a whole store, for keyctl copy: every key with its secrets'
// digests and state, the usage log and the audit chain, from one consistent
// snapshot, in the order package dump describes.
type Dumper interface {
	Dump(ctx context.Context) iter.Seq2[dump.Item, error]
}

// Loader fills an empty store with a dump, in one transaction: a failure
// half-way writes nothing. A store that holds keys or audit entries
// already is refused with ErrConflict.
type Loader interface {
	Load(ctx context.Context, items iter.Seq2[dump.Item, error]) error
}
