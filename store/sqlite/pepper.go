package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"github.com/keyctl/keyctl/store/chain"
	"github.com/keyctl/keyctl/store/keys"
	"github.com/keyctl/keyctl/store/pepper"
)

// The pepper lives outside the database, so a database records only a
// fingerprint of it (store/pepper), which every open compares with the
// configured pepper, so that a wrong pepper is said at once rather than
// making every key NOT_FOUND. The same derivation keys the audit chain from
// the moment the database has a pepper (metaKeyedFrom).

// ErrPepper: the configured pepper is not the one the database was made
// with (or there is one, and the database has none, or the other way).
var ErrPepper = keys.ErrPepper

// Rows of the meta table.
const (
	metaPepper    = "pepper"           // pepper.New's record
	metaKeyedFrom = "audit_keyed_from" // pepper.KeyedFrom: the first audit entry keyed with the pepper
)

// checkPepper compares the configured pepper with the database's record of
// its own, records it when there is none yet (see recordPepper), and
// derives the audit chain's key.
func (s *SQLite) checkPepper(ctx context.Context) error {
	rec, err := s.meta(ctx, s.db, metaPepper)
	if err != nil {
		return err
	}
	if rec == "" {
		return s.firstPepper(ctx)
	}
	return s.usePepper(ctx, s.db, rec)
}

// usePepper checks the configured pepper against rec, the database's
// record, and takes the audit chain's key and where the chain became keyed
// (a record that cannot be moved without the pepper).
func (s *SQLite) usePepper(ctx context.Context, q querier, rec string) error {
	key, err := pepper.Check(rec, s.pepper, "the database "+s.path)
	if err != nil {
		return err
	}
	var from int64
	var problem string
	if key != nil {
		kf, err := s.meta(ctx, q, metaKeyedFrom)
		if err != nil {
			return err
		}
		from, problem = pepper.ParseKeyedFrom(key, kf)
	}
	s.pepperMu.Lock()
	s.auditKey, s.keyedFrom, s.keyedProblem = key, from, problem
	s.pepperMu.Unlock()
	return nil
}

// refreshPepper takes the database's record of its pepper when it had none
// at Open and another process (or this one) wrote it since, so that the
// audit entries this one appends, and the chain it verifies, are keyed as
// the record says from then on. q reads inside the caller's transaction.
func (s *SQLite) refreshPepper(ctx context.Context, q querier) error {
	if !s.pepperUnproven.Load() || s.chainKey() != nil {
		return nil
	}
	rec, err := s.meta(ctx, q, metaPepper)
	if err != nil || rec == "" {
		return err
	}
	return s.usePepper(ctx, q, rec)
}

// chainKey is the audit chain's key (nil without a pepper).
func (s *SQLite) chainKey() []byte {
	s.pepperMu.Lock()
	defer s.pepperMu.Unlock()
	return s.auditKey
}

// chainOptions are what a walk of the chain checks beyond the links.
func (s *SQLite) chainOptions(checkpoints []keys.Checkpoint) chain.WalkOptions {
	s.pepperMu.Lock()
	defer s.pepperMu.Unlock()
	return chain.WalkOptions{Key: s.auditKey, KeyedFrom: s.keyedFrom, KeyedFromProblem: s.keyedProblem, Checkpoints: checkpoints}
}

// firstPepper handles a database without a record of its pepper: a new one,
// or one made before keyctl kept the record. When it holds no secret yet,
// the configured pepper is recorded at once (writable only). Otherwise the
// record waits until a secret is found with the configured pepper, which
// proves it the right one (recorded at Close): a wrong pepper on the first
// open must not lock the database out of the right one.
func (s *SQLite) firstPepper(ctx context.Context) error {
	if s.readOnly {
		return nil
	}
	var secrets int
	if err := s.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM secrets)`).Scan(&secrets); err != nil {
		return err
	}
	if secrets > 0 {
		s.pepperUnproven.Store(true)
		return nil
	}
	return s.recordPepper(ctx)
}

// recordPepper writes the configured pepper's fingerprint, and where the
// audit chain becomes keyed (the next entry), in one transaction, unless
// another process recorded them first.
func (s *SQLite) recordPepper(ctx context.Context) error {
	rec, key, err := pepper.New(s.pepper)
	if err != nil {
		return err
	}
	recorded := false
	var head int64
	err = s.tx(ctx, func(tx *sql.Tx) error {
		if have, err := s.meta(ctx, tx, metaPepper); err != nil || have != "" {
			return err // recorded meanwhile: checked at the next open
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO meta (name, value) VALUES (?, ?)`, metaPepper, rec); err != nil {
			return err
		}
		recorded = true
		if key == nil {
			return nil
		}
		if err := tx.QueryRowContext(ctx, `SELECT coalesce((SELECT seq FROM audit_head WHERE id = 1), 0)`).Scan(&head); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO meta (name, value) VALUES (?, ?)`, metaKeyedFrom, pepper.KeyedFrom(key, head+1))
		return err
	})
	if err != nil {
		return err
	}
	if !recorded {
		return s.checkPepper(ctx) // recorded meanwhile by another process
	}
	if key != nil {
		s.pepperMu.Lock()
		s.auditKey, s.keyedFrom, s.keyedProblem = key, head+1, ""
		s.pepperMu.Unlock()
	}
	return nil
}

// pepperProven notes that a secret was found with the configured pepper:
// the database's record of it, if it has none yet, can be written.
func (s *SQLite) pepperProven() {
	if s.pepperUnproven.Load() {
		s.pepperFound.Store(true)
	}
}

// meta reads one row of the meta table; "" when there is none.
func (s *SQLite) meta(ctx context.Context, q querier, name string) (string, error) {
	var v string
	err := q.QueryRowContext(ctx, `SELECT value FROM meta WHERE name = ?`, name).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return v, err
}
