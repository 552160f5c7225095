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
	"time"

	"github.com/keyctl/keyctl/store/keys"
)

// Store holds keys. Who acts is carried by the context (keys.WithActor), and
// so is a note for the audit trail (keys.WithNote). Every method that
// changes something does so in one transaction: it either happens whole or
// not at all, and its audit entry with it. In that same transaction the
// store reads the actor's authority (the acting key by its id, as it is
// then) and decides with keys.Authorize, on the key the change resolved to,
// whether the change may be made: keys.ErrForbidden when not. A ref is an
// id or a name; a token-shaped ref finds the key of that secret, and is
// never shown whole in an error.
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
	// Verify decides whether a key may be used and records the use: usage
	// count and last use for every found key, quota and rate limit for a
	// valid one. A failure to decide is an error, never a result.
	Verify(ctx context.Context, req keys.VerifyRequest) (*keys.VerifyResult, error)
	// Find returns the key a plaintext token belongs to (any of its secrets,
	// current or not), without recording a use. ErrNotFound when none.
	Find(ctx context.Context, token string) (*keys.Key, error)
	// FindSecret is Find, with the secret's own state: the key's current
	// secret, or an old one and when its grace ends (or ended).
	FindSecret(ctx context.Context, token string) (*keys.Key, keys.SecretState, error)
	// RevokeSecret kills one secret on the authority of whoever presents
	// it, in one transaction: a key's current secret revokes the key; an
	// old secret still in its grace stops working now, and the key's
	// current secret stays healthy; a secret that works no more, or that
	// no key has, changes nothing. The result says which.
	RevokeSecret(ctx context.Context, token, reason string) (*keys.SecretRevocation, error)
	// Usage reports a key's recent verifications and counts per day.
	Usage(ctx context.Context, ref string, q keys.UsageQuery) (*keys.UsageReport, error)
	// Audit returns the audit entries that match f, oldest first.
	Audit(ctx context.Context, f keys.AuditFilter) ([]*keys.AuditEntry, error)
	// VerifyAudit walks the audit chain and reports the first bad entry;
	// each checkpoint given must still be in the chain, unchanged.
	VerifyAudit(ctx context.Context, checkpoints ...keys.Checkpoint) (*keys.AuditCheck, error)
	Close() error
}

// The optional capabilities a backend may declare by implementing them.
// Callers check for them in one place each (the server, for all three).

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

// Background is implemented by a store that works behind the requests
// (recording the uses its FastVerifier checked, pruning the usage log), so
// that its failures are known when they happen, not only at Close.
type Background interface {
	// OnBackgroundError has fn called, from the background goroutine, with
	// each failure of background work as it happens: lost is how many uses
	// it could not record (0 for a failure that lost none).
	OnBackgroundError(fn func(err error, lost int))
	// UsageRecorded says how many uses the background has written, how
	// many it could not, and the failure of its last write (nil when it
	// succeeded): a store whose writes fail is degraded.
	UsageRecorded() (recorded, lost int64, failing error)
}

// Pager reads keys and audit entries a page at a time, each page a bounded
// amount of work: at most a few thousand rows are read for one page, so a
// page may be short, even empty, and still name a next one. A cursor is
// opaque, given by the store and handed back to it; "" starts at the
// beginning, and an empty next means there is no more. A backend without
// it gets one from PagerOf, which reads everything for every page.
type Pager interface {
	// ListPage returns up to limit keys that match f, newest first, after
	// the key cursor names.
	ListPage(ctx context.Context, f keys.ListFilter, cursor string, limit int) (page []*keys.Key, next string, err error)
	// AuditPage returns up to limit entries that match f, oldest first
	// within the page. With f.Limit zero, pages go forward from the oldest
	// entry (or from cursor); with f.Limit N, they go backward from the
	// newest, for the N most recent entries that match: a page holds the
	// newest ones before cursor, and limit is how many are still wanted.
	AuditPage(ctx context.Context, f keys.AuditFilter, cursor string, limit int) (page []*keys.AuditEntry, next string, err error)
}

// DenialRecorder audits admin calls refused for lack of authority: one
// entry stands for d.Count refusals of the actor in ctx. The caller bounds
// how often it records (the service: once per caller and minute).
type DenialRecorder interface {
	RecordDenied(ctx context.Context, d keys.Denial) error
}
