package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"

	"github.com/keyctl/keyctl/store/chain"
	"github.com/keyctl/keyctl/store/keys"
)

// appendAudit adds an entry to the chain inside the change's transaction, so
// that a change and its record happen together or not at all.
func (s *SQLite) appendAudit(ctx context.Context, tx *sql.Tx, action string, k *keys.Key, changes map[string]keys.Change) error {
	var seq int64
	var prev string
	err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&seq, &prev)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	c := chain.NewContent(seq, s.now(), keys.ActorFrom(ctx), action, k, changes, keys.NoteFrom(ctx))
	content, err := json.Marshal(c)
	if err != nil {
		return err
	}
	hash := chain.Link(prev, content)
	if _, err := tx.ExecContext(ctx, `INSERT INTO audit (seq, content, prev_hash, hash) VALUES (?, ?, ?, ?)`,
		c.Seq, string(content), prev, hash); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?)
		ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash`, c.Seq, hash)
	return err
}

// RecordDenied audits an admin call refused for lack of scope.
func (s *SQLite) RecordDenied(ctx context.Context, attempted, ref, required string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		k, err := s.resolve(ctx, tx, ref)
		if err != nil && !errors.Is(err, keys.ErrNotFound) {
			return err
		}
		if k == nil && ref != "" {
			k = &keys.Key{ID: "", Name: ref}
		}
		return s.appendAudit(ctx, tx, keys.ActionDenied, k, map[string]keys.Change{
			"attempted":      {To: attempted},
			"required_scope": {To: required},
		})
	})
}

func (s *SQLite) auditRows(ctx context.Context, q querier, fn func(chain.Row) error) error {
	rows, err := q.QueryContext(ctx, `SELECT seq, content, prev_hash, hash FROM audit ORDER BY seq`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var r chain.Row
		if err := rows.Scan(&r.Seq, &r.Content, &r.PrevHash, &r.Hash); err != nil {
			return err
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return rows.Err()
}

// Audit returns the entries that match f, oldest first.
func (s *SQLite) Audit(ctx context.Context, f keys.AuditFilter) ([]*keys.AuditEntry, error) {
	out := []*keys.AuditEntry{}
	err := s.auditRows(ctx, s.db, func(r chain.Row) error {
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
	return out, err
}

// VerifyAudit walks the chain from the first entry and reports the first one
// that was edited, deleted or moved behind keyctl's back. The entries and
// the head are read in one read transaction, a snapshot: a change committed
// meanwhile is in both or in neither.
func (s *SQLite) VerifyAudit(ctx context.Context) (*keys.AuditCheck, error) {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true}) // a deferred BEGIN: no write lock
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	w := chain.NewWalker()
	err = s.auditRows(ctx, tx, func(r chain.Row) error {
		w.Next(r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	var headSeq int64
	var headHash string
	err = tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&headSeq, &headHash)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	return w.End(headSeq, headHash), nil
}
