package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" driver

	"github.com/keyctl/keyctl/store/background"
)

// Options configure a SQLite store.
type Options struct {
	// Pepper, when set, makes stored digests HMAC-SHA256 under it. It lives
	// outside the database, so a stolen database cannot confirm a guess.
	Pepper []byte
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// UsageRetention is how long verifications stay in the usage log;
	// DefaultUsageRetention when zero.
	UsageRetention time.Duration
	// Readers is how many connections the fast path (Check) reads with,
	// beside the one writer; DefaultReaders when zero.
	Readers int
	// MustExist refuses to create the database when there is none at the
	// path (ErrNoDatabase): for commands that only read.
	MustExist bool
}

// DefaultReaders is how many connections the fast path reads with.
const DefaultReaders = 4

// DefaultUsageRetention is how long the usage log keeps verifications.
const DefaultUsageRetention = 30 * 24 * time.Hour

// SQLite is the local Store: one database file, safe for many keyctl
// processes at once.
type SQLite struct {
	db        *sql.DB
	pepper    []byte
	now       func() time.Time
	retention time.Duration
	stmts     driverStmts
	dsn       string
	path      string
	readers   int

	readOnly bool // the file cannot be written: every change is refused

	// The audit chain's key, derived from the pepper (nil without one),
	// and the first entry keyed with it; keyedProblem says why that could
	// not be trusted. Set at Open, or later by refreshPepper.
	pepperMu     sync.Mutex
	auditKey     []byte
	keyedFrom    int64
	keyedProblem string
	// pepperUnproven: the database had no record of its pepper at Open,
	// and held secrets; pepperFound: one was found with the configured
	// pepper, which may now be recorded (at Close).
	pepperUnproven, pepperFound atomic.Bool

	fastMu sync.Mutex
	fast   *checker // the fast path, once a check has opened it
	closed bool

	bg background.Tracker // the account of the uses the fast path records
}

// OnBackgroundError has fn called, from the background goroutine, with each
// failure of background work as it happens (store.Background).
func (s *SQLite) OnBackgroundError(fn func(err error, lost int)) { s.bg.OnBackgroundError(fn) }

// UsageRecorded says how many uses the background has written, how many it
// could not, and the failure of its last write (store.Background).
func (s *SQLite) UsageRecorded() (recorded, lost int64, failing error) { return s.bg.UsageRecorded() }

// ErrReadOnly: the database file cannot be written (a read-only file or
// mount, a forensic copy): it can be read, and nothing can be changed.
var ErrReadOnly = errors.New("the database is read-only")

// writable refuses a change to a read-only database.
func (s *SQLite) writable() error {
	if s.readOnly {
		return fmt.Errorf("%s: %w: it can be read (list, show, usage, audit), not changed", s.path, ErrReadOnly)
	}
	return nil
}

// CheckWritable commits a small write, so that a database that cannot be
// written (a read-only file or mount, a full disk) is known before a server
// takes its first request.
func (s *SQLite) CheckWritable(ctx context.Context) error {
	if err := s.writable(); err != nil {
		return err
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO meta (name, value) VALUES ('write_checked_at', ?)
			ON CONFLICT (name) DO UPDATE SET value = excluded.value`, s.now().UTC().Format(time.RFC3339))
		return err
	})
	if err != nil {
		return fmt.Errorf("%s cannot be written: %w", s.path, err)
	}
	return nil
}

// Close records every use the fast path checked, and closes the database.
func (s *SQLite) Close() error {
	s.fastMu.Lock()
	fast := s.fast
	s.closed, s.fast = true, nil
	s.fastMu.Unlock()
	var err error
	if fast != nil {
		err = fast.Close()
	}
	if s.pepperFound.Load() && !s.readOnly {
		err = errors.Join(err, s.recordPepper(context.Background()))
	}
	return errors.Join(err, s.stmts.close(s.db), s.db.Close())
}

// migrations bring the schema from version i to i+1. Append only: a
// released migration never changes.
var migrations = []string{
	`CREATE TABLE keys (
		id              TEXT PRIMARY KEY,
		name            TEXT NOT NULL,
		description     TEXT NOT NULL DEFAULT '',
		prefix          TEXT NOT NULL,
		env             TEXT NOT NULL,
		start           TEXT NOT NULL,
		status          TEXT NOT NULL CHECK (status IN ('active', 'disabled', 'revoked')),
		scopes          TEXT NOT NULL DEFAULT '[]',
		allowed_ips     TEXT NOT NULL DEFAULT '[]',
		metadata        TEXT NOT NULL DEFAULT '{}',
		expires_at      INTEGER,
		quota           INTEGER,
		quota_remaining INTEGER,
		rate_count      INTEGER,
		rate_unit       TEXT,
		usage_count     INTEGER NOT NULL DEFAULT 0,
		last_used_at    INTEGER,
		last_used_ip    TEXT NOT NULL DEFAULT '',
		created_at      INTEGER NOT NULL,
		created_by      TEXT NOT NULL DEFAULT '',
		updated_at      INTEGER NOT NULL,
		rotated_at      INTEGER,
		revoked_at      INTEGER,
		revoke_reason   TEXT NOT NULL DEFAULT ''
	);
	-- A name belongs to at most one key that is not revoked.
	CREATE UNIQUE INDEX keys_live_name ON keys(name) WHERE status <> 'revoked';
	CREATE INDEX keys_name ON keys(name);
	-- Each key has one current secret (ends_at NULL) and, after a rotation
	-- with a grace period, older ones that work until ends_at. Only digests
	-- are stored.
	CREATE TABLE secrets (
		digest     BLOB PRIMARY KEY,
		key_id     TEXT NOT NULL REFERENCES keys(id),
		start      TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		ends_at    INTEGER
	) WITHOUT ROWID;
	CREATE INDEX secrets_key ON secrets(key_id);`,

	// Verification: the rate limiter's state (GCRA's theoretical arrival
	// time, in Unix nanoseconds) and a bounded log of verifications.
	`ALTER TABLE keys ADD COLUMN rate_tat INTEGER NOT NULL DEFAULT 0;
	-- One row per verification, clustered by key so that logging touches
	-- one B-tree page and a key's history is one range. n is the key's
	-- usage_count after the verification.
	CREATE TABLE usage_events (
		key_id TEXT NOT NULL REFERENCES keys(id),
		n      INTEGER NOT NULL,
		at     INTEGER NOT NULL, -- Unix milliseconds
		code   TEXT NOT NULL,
		ip     TEXT NOT NULL DEFAULT '',
		PRIMARY KEY (key_id, n)
	) WITHOUT ROWID;`,

	// The audit trail: a hash chain of entries, each the JSON content it
	// hashes, and the chain's head kept apart so that deleting the last
	// entries shows.
	`CREATE TABLE audit (
		seq       INTEGER PRIMARY KEY,
		content   TEXT NOT NULL,
		prev_hash TEXT NOT NULL,
		hash      TEXT NOT NULL
	);
	CREATE TABLE audit_head (
		id   INTEGER PRIMARY KEY CHECK (id = 1),
		seq  INTEGER NOT NULL,
		hash TEXT NOT NULL
	);`,

	// A version of everything a verification depends on, raised by triggers
	// whenever it changes, however it changes (the sqlite3 shell included):
	// a server may reuse a token's verification while the version holds.
	`CREATE TABLE state (
		id      INTEGER PRIMARY KEY CHECK (id = 1),
		version INTEGER NOT NULL
	);
	INSERT INTO state (id, version) VALUES (1, 0);
	CREATE TRIGGER keys_state AFTER UPDATE OF name, status, expires_at, scopes, allowed_ips, env, quota,
		rate_count, rate_unit, revoked_at ON keys
		BEGIN UPDATE state SET version = version + 1; END;
	CREATE TRIGGER keys_state_delete AFTER DELETE ON keys
		BEGIN UPDATE state SET version = version + 1; END;
	CREATE TRIGGER secrets_state_insert AFTER INSERT ON secrets
		BEGIN UPDATE state SET version = version + 1; END;
	CREATE TRIGGER secrets_state_update AFTER UPDATE ON secrets
		BEGIN UPDATE state SET version = version + 1; END;
	CREATE TRIGGER secrets_state_delete AFTER DELETE ON secrets
		BEGIN UPDATE state SET version = version + 1; END;`,

	// A key's usage is read from its usage log's last entry, so that a
	// verification writes one row; each entry carries the last address
	// given so far. The keys table's usage columns keep what they held.
	`ALTER TABLE usage_events ADD COLUMN last_ip TEXT NOT NULL DEFAULT '';`,

	// What each recent rotation changed, so that it can be undone when its
	// new secret could not be delivered (a client in remote mode, after the
	// server committed): the key's start and rotation time before it, and
	// the ends of the older secrets it cut short. Rows live for the undo
	// window only.
	`CREATE TABLE rotations (
		digest          BLOB PRIMARY KEY, -- the new secret's
		key_id          TEXT NOT NULL REFERENCES keys(id),
		at              INTEGER NOT NULL,
		prev_start      TEXT NOT NULL,
		prev_rotated_at INTEGER,
		prev_ends       TEXT NOT NULL -- JSON: [{"digest": hex, "ends_at": n or null}]
	) WITHOUT ROWID;
	CREATE INDEX rotations_key ON rotations(key_id);`,

	// Pages of keys are read newest first along this index (and rowid);
	// the fast path learns of changes from PRAGMA data_version, which sees
	// every commit, so the version the triggers kept is gone.
	`CREATE INDEX keys_created ON keys(created_at);
	DROP TRIGGER keys_state;
	DROP TRIGGER keys_state_delete;
	DROP TRIGGER secrets_state_insert;
	DROP TRIGGER secrets_state_update;
	DROP TRIGGER secrets_state_delete;
	DROP TABLE state;`,

	// Facts about the database itself, kept beside the keys: the pepper's
	// fingerprint, where the audit chain became keyed, when a server last
	// proved it could write. And each audit entry's link scheme: SHA-256
	// for the entries before, HMAC-SHA256 under the pepper after.
	`CREATE TABLE meta (
		name  TEXT PRIMARY KEY,
		value TEXT NOT NULL
	) WITHOUT ROWID;
	ALTER TABLE audit ADD COLUMN scheme TEXT NOT NULL DEFAULT 'sha256';`,
}

// SchemaVersion is the schema version this build writes.
var SchemaVersion = len(migrations)

func (s *SQLite) migrate(ctx context.Context) error {
	var v, app int
	if err := s.db.QueryRowContext(ctx, "SELECT (SELECT user_version FROM pragma_user_version), (SELECT application_id FROM pragma_application_id)").Scan(&v, &app); err != nil {
		return err
	}
	if v == SchemaVersion && app == ApplicationID {
		return nil
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		// Another process may have migrated while this one waited.
		if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
			return err
		}
		if v > SchemaVersion {
			return fmt.Errorf("database schema version %d is newer than this keyctl (%d): upgrade keyctl", v, SchemaVersion)
		}
		for i := v; i < SchemaVersion; i++ {
			if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
				return fmt.Errorf("migration %d: %w", i+1, err)
			}
		}
		_, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d; PRAGMA application_id = %d", SchemaVersion, ApplicationID))
		return err
	})
}

// tx runs fn in one immediate transaction, committing when it returns nil.
func (s *SQLite) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		if rbErr := tx.Rollback(); rbErr != nil && !errors.Is(rbErr, sql.ErrTxDone) {
			return errors.Join(err, rbErr)
		}
		return err
	}
	return tx.Commit()
}
