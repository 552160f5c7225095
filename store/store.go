// Package store is the one seam between what a user asks of keyctl and where
// keys live. Commands and the server talk only to the Store interface; Open
// picks the backend from the form of an address: a path (the embedded SQLite
// default), a postgres:// URL (a PostgreSQL database several servers share)
// or an http(s):// URL (a keyctl server, in remote mode).
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
//
// # Authorization
//
// In the transaction of each change the store reads the actor's authority
// (the acting key by its id, as it is then: its scopes, and whether it is
// still active) and decides with keys.Authorize, on the one key the change
// resolved its ref to, as it is and as it will be, whether the change may be
// made: keys.ErrForbidden when not. Every change, those added later
// included, goes through that one path, so that a check of one key cannot be
// followed by a change of another: a rename racing a rotation never hands an
// admin a management key's new secret. SQLite: the write lock, held from the
// first read; PostgreSQL: the target's row is locked FOR NO KEY UPDATE and
// the acting key's FOR SHARE before either is judged.
//
// A ref is an id or a name; a token-shaped ref finds the key of that secret,
// and is never shown whole in an error.
//
// # The contract under concurrency
//
// A Store may be one of many handles onto one backing store: several
// goroutines, processes, or machines (servers sharing a database). Every
// guarantee below holds across all of them, not only within one handle, and
// none rests on there being a single writer: each read that a write depends
// on is made under a mechanism the backend states. store/storetest checks
// every guarantee, with parallel callers on two handles.
//
// For SQLite (store/sqlite) the mechanisms are:
//
//   - the write lock: every transaction that writes begins with BEGIN
//     IMMEDIATE, which takes the database's one write lock before its first
//     read, so no other connection, process or machine sharing the file
//     writes between what the transaction reads and what it writes; others
//     queue on the busy timeout;
//   - the unique index keys_live_name, on name where status is not revoked;
//   - the primary keys usage_events(key_id, n) and audit(seq);
//   - a read transaction (a snapshot) where a read must see one state.
//
// A backend without a database-wide write lock must give each guarantee by
// a conditional write, a constraint or a row lock instead. For PostgreSQL
// (store/postgres) the mechanisms are:
//
//   - row locks: a change locks the key it changes FOR NO KEY UPDATE and
//     the acting key FOR SHARE, and a verification the keys it spends,
//     always in the order of their ids, so that no two transactions wait
//     on each other in a cycle; a ref that names another key once the lock
//     is held runs the change again;
//   - the unique index keys_live_name, as on SQLite;
//   - the audit chain's head row, locked FOR UPDATE by each change's last
//     statement, and the primary key audit(seq);
//   - a repeatable-read transaction (a snapshot) where a read must see one
//     state.
//
// Errors are the sentinel errors of store/keys, wrapped: ErrNotFound,
// ErrRevoked, ErrConflict, ErrInvalid, ErrForbidden, ErrClosed,
// ErrUnavailable.
type Store interface {
	// Create issues a new key and returns it with its plaintext secret,
	// which exists nowhere else afterwards. At most one key that is not
	// revoked has a given name: of concurrent creates of one name, one
	// succeeds and the others fail with ErrConflict, leaving nothing behind.
	// SQLite: the name is checked under the write lock, and the unique index
	// keys_live_name holds it whatever writes the file.
	Create(ctx context.Context, p keys.CreateParams) (*keys.Key, string, error)
	// Get resolves ref, an id or a name, to a key: by id first, else the
	// key of that name that is not revoked, else the one of that name
	// revoked most recently.
	Get(ctx context.Context, ref string) (*keys.Key, error)
	// List returns the keys that match f, newest first.
	List(ctx context.Context, f keys.ListFilter) ([]*keys.Key, error)
	// Update changes a key's settings. It resolves ref, checks and writes
	// in one transaction: a rename to a name another live key holds fails
	// with ErrConflict, whatever renames or creates race it (SQLite: the
	// write lock and keys_live_name); a revoked key is ErrRevoked. An update
	// that changes nothing is not audited. Setting a quota resets what
	// remains of it.
	Update(ctx context.Context, ref string, p keys.UpdateParams) (*keys.Key, error)
	// Rotate gives a key a new secret, keeping its id, name, settings and
	// usage. Every older secret stops working at the end of grace (at once
	// when grace is zero) or earlier if it was to end earlier: a rotation
	// never extends one. Of concurrent rotations each returns its secret
	// and exactly one secret, the last rotation's, is current afterwards.
	// SQLite: the write lock.
	Rotate(ctx context.Context, ref string, grace time.Duration) (*keys.Key, string, error)
	// SetDisabled disables or enables a key; asking for the state it is in
	// changes nothing and is not audited, so that concurrent calls record
	// only real transitions. SQLite: the write lock, and a write
	// conditional on the status it changes.
	SetDisabled(ctx context.Context, ref string, disabled bool) (*keys.Key, error)
	// Revoke revokes a key for good; revoking a revoked key changes
	// nothing and is not audited. A change racing a revocation happens
	// before it or fails with ErrRevoked: nothing changes a key after its
	// revocation, and no change of it is audited after the revocation's
	// entry. SQLite: the write lock.
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
	// Verify decides whether a key may be used (store/decide) and records
	// the use: usage for every found key, quota and rate limit for a valid
	// one only. A failure to decide is an error, never a result.
	//
	// Quota is exact: of any number of concurrent verifications, exactly
	// as many are VALID as the quota allows, and it never goes below zero.
	// No rate-limit token is spent twice, and a refused use spends none.
	// Each use gets its own number in the key's usage log and none is lost.
	// SQLite: the key's counters and last use are read and written under
	// the write lock (spending is a plain write of the new state, correct
	// only because the lock is held since the read); the primary key
	// usage_events(key_id, n) refuses a second use of one number. A backend
	// without the lock uses a conditional write (UPDATE ... WHERE
	// quota_remaining >= cost, or WHERE rate_tat = the value read) or a row
	// lock.
	//
	// The result's key counts this use and every use written before it. A
	// use recorded in the background (FastVerifier) is counted, and ordered
	// in the usage log, once it is written.
	Verify(ctx context.Context, req keys.VerifyRequest) (*keys.VerifyResult, error)
	// Find returns the key a plaintext token belongs to (any of its secrets,
	// current or not), without recording a use. ErrNotFound when none,
	// ErrInvalid for a token that is not a keyctl key.
	Find(ctx context.Context, token string) (*keys.Key, error)
	// FindSecret is Find, with the secret's own state: the key's current
	// secret, or an old one and when its grace ends (or ended).
	FindSecret(ctx context.Context, token string) (*keys.Key, keys.SecretState, error)
	// RevokeSecret kills one secret on the authority of whoever presents
	// it, in one transaction: a key's current secret revokes the key; an
	// old secret still in its grace stops working now (audited as
	// end-grace), and the key's current secret stays healthy; a secret that
	// works no more, or that no key has, changes nothing. The result says
	// which. It goes through the one authorization path, the holder's
	// authority reaching that secret's key and no other.
	RevokeSecret(ctx context.Context, token, reason string) (*keys.SecretRevocation, error)
	// Usage reports a key's recent verifications, newest written first,
	// and counts per day.
	Usage(ctx context.Context, ref string, q keys.UsageQuery) (*keys.UsageReport, error)
	// Audit returns the audit entries that match f, oldest first.
	Audit(ctx context.Context, f keys.AuditFilter) ([]*keys.AuditEntry, error)
	// VerifyAudit walks the audit chain and reports the first bad entry;
	// each checkpoint given must still be in the chain, unchanged.
	//
	// The chain is one: each change appends one entry numbered one past
	// the last, linked to it (store/chain), in the change's transaction, so
	// that concurrent changes from any number of handles leave a chain that
	// verifies, with no number used twice or skipped. With a pepper, each
	// link is an HMAC under a key derived from it, and each entry records
	// its scheme. SQLite: the head is read and the entry written under the
	// write lock, and the primary key audit(seq) refuses a second entry of
	// one number. VerifyAudit reads the entries and the head in one
	// snapshot (SQLite: a read transaction), so that a change committed
	// meanwhile is in both or in neither.
	VerifyAudit(ctx context.Context, checkpoints ...keys.Checkpoint) (*keys.AuditCheck, error)
	Close() error
}

// The optional capabilities a backend may declare by implementing them.
// Callers check for them in one place each: the server for BatchVerifier,
// FastVerifier, Background, Pager (through PagerOf) and DenialRecorder;
// keyctl serve for WriteChecker and Background; keyctl create and rotate
// for DeliveringIssuer (deliver.go); keyctl migrate for Migrator; keyctl
// copy for Dumper and Loader. Propagator states a FastVerifier's bound, for
// the conformance suite and the README.

// BatchVerifier verifies many requests in one transaction, each exactly as
// if verified alone, so that a server pays one commit for many.
type BatchVerifier interface {
	VerifyBatch(ctx context.Context, reqs []keys.VerifyRequest) ([]*keys.VerifyResult, error)
}

// FastVerifier decides most verifications without a write transaction, for
// a long-running server: a verification that changes nothing but a key's
// usage is decided on a read, and its use recorded in the background.
// Because such a verification spends nothing, deciding it on a read takes
// no lock: it is the verification as of that read. Whatever spends quota or
// rate limit it leaves, as exact, to Verify or VerifyBatch. A change made
// through the same handle is seen by the next check after it commits, a
// reused verification included. So is a change made through any other
// handle on SQLite, or by another program (each reader compares PRAGMA
// data_version, which moves with every commit of any connection); a
// backend whose handles hear of each other's changes by notification
// (PostgreSQL) is a Propagator, and its checks see such a change once its
// bound has passed.
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

// Propagator is a FastVerifier whose handles hear of each other's changes
// by notification rather than on every read, so that most checks need not
// ask the database anything: a change made through another handle, or
// behind keyctl's back, is seen by every check that starts
// PropagationBound after it committed (PostgreSQL: in milliseconds, and
// within its cache's staleness bound whatever happens to the connection).
type Propagator interface {
	PropagationBound() time.Duration
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

// WriteChecker commits a small write, so that a database that cannot be
// written (a read-only file, mount or standby, a full disk) is known before
// a server takes its first request.
type WriteChecker interface {
	CheckWritable(ctx context.Context) error
}

// DenialRecorder audits admin calls refused for lack of authority: one
// entry stands for d.Count refusals of the actor in ctx. The caller bounds
// how often it records (the service: once per caller and minute).
type DenialRecorder interface {
	RecordDenied(ctx context.Context, d keys.Denial) error
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
