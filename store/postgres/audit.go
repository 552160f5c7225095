package postgres

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/keyctl/keyctl/store/chain"
	"github.com/keyctl/keyctl/store/keys"
)

// appendAudit adds an entry to the chain inside the change's transaction.
// The head row is locked first: a change on another replica waits for this
// transaction to end and then links its entry to this one, so the chain has
// one line whatever the number of replicas. It is the last thing a change
// does, so a transaction never holds the head while it waits for a key.
func (p *Postgres) appendAudit(ctx context.Context, tx pgx.Tx, action string, k *keys.Key, changes map[string]keys.Change) error {
	var seq int64
	var prev string
	err := tx.QueryRow(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE`).Scan(&seq, &prev)
	if errors.Is(err, pgx.ErrNoRows) {
		// The head row was deleted by hand: start it again, under the lock
		// its insertion takes.
		if _, err := tx.Exec(ctx, `INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '') ON CONFLICT DO NOTHING`); err != nil {
			return err
		}
		err = tx.QueryRow(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE`).Scan(&seq, &prev)
	}
	if err != nil {
		return err
	}
	actor := keys.ActorFrom(ctx)
	actor.Name, actor.Address = keys.Escape(actor.Name, 128), keys.Escape(actor.Address, 64)
	note := keys.Escape(keys.NoteFrom(ctx), keys.MaxNote)
	c := chain.NewContent(seq, p.now(), actor, action, k, changes, note)
	content, err := json.Marshal(c)
	if err != nil {
		return err
	}
	// The head is held: a replica that records the pepper meanwhile keys
	// the chain from the entry after this one.
	if err := p.refreshPepper(ctx, tx); err != nil {
		return err
	}
	key := p.chainKey()
	scheme := chain.SchemeSHA256
	if key != nil {
		scheme = chain.SchemeHMAC
	}
	hash := chain.Link(scheme, key, prev, content)
	if _, err := tx.Exec(ctx, `INSERT INTO audit (seq, content, prev_hash, hash, scheme) VALUES ($1, $2, $3, $4, $5)`,
		c.Seq, string(content), prev, hash, scheme); err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1`, c.Seq, hash)
	return err
}

// RecordDenied audits admin calls refused for lack of authority. The key
// the call named is recorded when it is one; else the caller's text, bounded
// and escaped, and never a secret.
func (p *Postgres) RecordDenied(ctx context.Context, d keys.Denial) error {
	return p.tx(ctx, func(tx pgx.Tx) error {
		changes := map[string]keys.Change{
			"attempted":      {To: keys.Escape(d.Route, 64)},
			"required_scope": {To: keys.Escape(d.Required, 64)},
			"count":          {To: max(d.Count, 1)},
		}
		var k *keys.Key
		if d.Ref != "" && !keys.LooksLikeToken(d.Ref) {
			var err error
			k, err = p.resolve(ctx, tx, d.Ref, "")
			if err != nil && !errors.Is(err, keys.ErrNotFound) {
				return err
			}
		}
		if k == nil && d.Ref != "" {
			changes["ref"] = keys.Change{To: keys.Escape(d.Ref, 64)}
		}
		return p.appendAudit(ctx, tx, keys.ActionDenied, k, changes)
	})
}

// auditRows calls fn with each entry in sequence order, from q: the pool,
// or a transaction that reads a consistent snapshot.
func auditRows(ctx context.Context, q querier, fn func(chain.Row) error) error {
	rows, err := q.Query(ctx, `SELECT seq, content, prev_hash, hash, scheme FROM audit ORDER BY seq`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var r chain.Row
		if err := rows.Scan(&r.Seq, &r.Content, &r.PrevHash, &r.Hash, &r.Scheme); err != nil {
			return err
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return rows.Err()
}

// Audit returns the entries that match f, oldest first.
func (p *Postgres) Audit(ctx context.Context, f keys.AuditFilter) ([]*keys.AuditEntry, error) {
	out := []*keys.AuditEntry{}
	err := auditRows(ctx, p.pool, func(r chain.Row) error {
		e, err := r.Entry()
		if err != nil {
			return err
		}
		if f.Match(e) {
			out = append(out, e)
		}
		return nil
	})
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[len(out)-f.Limit:]
	}
	return out, classify(err)
}

// VerifyAudit walks the chain from the first entry and reports the first one
// that was edited, deleted or moved behind keyctl's back: each entry's link
// by its own scheme, every entry from the one the pepper was first recorded
// at keyed with it, and each checkpoint still in the chain, unchanged. The
// entries and the head are read in one snapshot, so a change committed
// meanwhile on another replica is either wholly in the walk or wholly out
// of it.
func (p *Postgres) VerifyAudit(ctx context.Context, checkpoints ...keys.Checkpoint) (*keys.AuditCheck, error) {
	var check *keys.AuditCheck
	err := pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if err := p.refreshPepper(ctx, tx); err != nil {
			return err
		}
		w := chain.NewWalker(p.chainOptions(checkpoints))
		if err := auditRows(ctx, tx, func(r chain.Row) error { w.Next(r); return nil }); err != nil {
			return err
		}
		var headSeq int64
		var headHash string
		err := tx.QueryRow(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&headSeq, &headHash)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		check = w.End(headSeq, headHash)
		return nil
	})
	return check, classify(err)
}
