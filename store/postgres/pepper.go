package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"

	"github.com/keyctl/keyctl/store/chain"
	"github.com/keyctl/keyctl/store/keys"
	"github.com/keyctl/keyctl/store/pepper"
)

// As on SQLite, the database records a fingerprint of the pepper it was
// made with (store/pepper) in its meta table, which every replica compares
// with its own pepper when it opens the database; and the audit chain is
// keyed with HMAC-SHA256 under a key derived from the pepper, from the
// entry recorded in audit_keyed_from on.

// Rows of the meta table.
const (
	metaPepper    = "pepper"           // pepper.New's record
	metaKeyedFrom = "audit_keyed_from" // pepper.KeyedFrom: the first audit entry keyed with the pepper
)

// pepperState is what a replica knows of the database's pepper.
type pepperState struct {
	mu           sync.Mutex
	auditKey     []byte // nil without a pepper
	keyedFrom    int64
	keyedProblem string
	// unproven: the database had no record of its pepper at Open, and held
	// secrets; found: one was found with the configured pepper, which may
	// now be recorded (at Close).
	unproven, found atomic.Bool
}

// checkPepper compares the configured pepper with the database's record,
// records it when there is none yet and no secret (see recordPepper), and
// takes the audit chain's key.
func (p *Postgres) checkPepper(ctx context.Context) error {
	rec, err := meta(ctx, p.pool, metaPepper)
	if err != nil {
		return err
	}
	if rec != "" {
		return p.usePepper(ctx, p.pool, rec)
	}
	var secrets bool
	if err := p.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM secrets)`).Scan(&secrets); err != nil {
		return err
	}
	if secrets {
		// Made before keyctl kept the record: it is written once a secret
		// is found with the configured pepper, which proves it the right
		// one; a wrong pepper on the first open must not lock the database
		// out of the right one.
		p.pep.unproven.Store(true)
		return nil
	}
	return p.recordPepper(ctx)
}

// usePepper checks the configured pepper against rec and takes the audit
// chain's key and where the chain became keyed.
func (p *Postgres) usePepper(ctx context.Context, q querier, rec string) error {
	key, err := pepper.Check(rec, p.pepper, "the database "+p.addr)
	if err != nil {
		return err
	}
	var from int64
	var problem string
	if key != nil {
		kf, err := meta(ctx, q, metaKeyedFrom)
		if err != nil {
			return err
		}
		from, problem = pepper.ParseKeyedFrom(key, kf)
	}
	p.pep.mu.Lock()
	p.pep.auditKey, p.pep.keyedFrom, p.pep.keyedProblem = key, from, problem
	p.pep.mu.Unlock()
	return nil
}

// recordPepper writes the configured pepper's record, and where the audit
// chain becomes keyed (the entry after the head, which it locks), unless
// another replica recorded them first.
func (p *Postgres) recordPepper(ctx context.Context) error {
	rec, key, err := pepper.New(p.pepper)
	if err != nil {
		return err
	}
	recorded := false
	var head int64
	err = p.tx(ctx, func(tx pgx.Tx) error {
		recorded = false
		if err := tx.QueryRow(ctx, `SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE`).Scan(&head); err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, metaPepper, rec)
		if err != nil || tag.RowsAffected() == 0 {
			return err // recorded meanwhile by another replica
		}
		recorded = true
		if key == nil {
			return nil
		}
		_, err = tx.Exec(ctx, `INSERT INTO meta (name, value) VALUES ($1, $2)
			ON CONFLICT (name) DO UPDATE SET value = excluded.value`, metaKeyedFrom, pepper.KeyedFrom(key, head+1))
		return err
	})
	if err != nil {
		return err
	}
	if !recorded {
		return p.checkPepper(ctx)
	}
	if key != nil {
		p.pep.mu.Lock()
		p.pep.auditKey, p.pep.keyedFrom, p.pep.keyedProblem = key, head+1, ""
		p.pep.mu.Unlock()
	}
	return nil
}

// refreshPepper takes the database's record of its pepper when it had none
// at Open and a replica wrote it since. q reads inside the caller's
// transaction, which holds the chain's head: the record was written before
// it, or is written after it with the entry after this transaction's.
func (p *Postgres) refreshPepper(ctx context.Context, q querier) error {
	if !p.pep.unproven.Load() || p.chainKey() != nil {
		return nil
	}
	rec, err := meta(ctx, q, metaPepper)
	if err != nil || rec == "" {
		return err
	}
	return p.usePepper(ctx, q, rec)
}

// pepperProven notes that a secret was found with the configured pepper.
func (p *Postgres) pepperProven() {
	if p.pep.unproven.Load() {
		p.pep.found.Store(true)
	}
}

// chainKey is the audit chain's key (nil without a pepper).
func (p *Postgres) chainKey() []byte {
	p.pep.mu.Lock()
	defer p.pep.mu.Unlock()
	return p.pep.auditKey
}

// chainOptions are what a walk of the chain checks beyond the links.
func (p *Postgres) chainOptions(checkpoints []keys.Checkpoint) chain.WalkOptions {
	p.pep.mu.Lock()
	defer p.pep.mu.Unlock()
	return chain.WalkOptions{Key: p.pep.auditKey, KeyedFrom: p.pep.keyedFrom, KeyedFromProblem: p.pep.keyedProblem,
		Checkpoints: checkpoints}
}

// meta reads one row of the meta table; "" when there is none.
func meta(ctx context.Context, q querier, name string) (string, error) {
	var v string
	err := q.QueryRow(ctx, `SELECT value FROM meta WHERE name = $1`, name).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return v, err
}

// CheckWritable commits a small write, so that a database that cannot be
// written (a standby, a role without the right, a full disk) is known
// before a server takes its first request.
func (p *Postgres) CheckWritable(ctx context.Context) error {
	_, err := p.pool.Exec(ctx, `INSERT INTO meta (name, value) VALUES ('write_checked_at', $1)
		ON CONFLICT (name) DO UPDATE SET value = excluded.value`, p.now().UTC().Format("2006-01-02T15:04:05Z"))
	if err != nil {
		return fmt.Errorf("%s cannot be written: %w", p.addr, classify(err))
	}
	return nil
}
