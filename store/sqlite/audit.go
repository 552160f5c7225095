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
	actor := keys.ActorFrom(ctx)
	actor.Name, actor.Address = keys.Escape(actor.Name, 128), keys.Escape(actor.Address, 64)
	note := keys.Escape(keys.NoteFrom(ctx), keys.MaxNote)
	c := chain.NewContent(seq, s.now(), actor, action, k, changes, note)
	content, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if err := s.refreshPepper(ctx, tx); err != nil {
		return err
	}
	key := s.chainKey()
	scheme := chain.SchemeSHA256
	if key != nil {
		scheme = chain.SchemeHMAC
	}
	hash := chain.Link(scheme, key, prev, content)
	if _, err := tx.ExecContext(ctx, `INSERT INTO audit (seq, content, prev_hash, hash, scheme) VALUES (?, ?, ?, ?, ?)`,
		c.Seq, string(content), prev, hash, scheme); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?)
		ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash`, c.Seq, hash)
	return err
}

// RecordDenied audits admin calls refused for lack of authority. The key
// the call named is recorded when it is one; else the caller's text, bounded
// and escaped, and never a secret.
func (s *SQLite) RecordDenied(ctx context.Context, d keys.Denial) error {
	if err := s.writable(); err != nil {
		return err
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		changes := map[string]keys.Change{
			"attempted":      {To: keys.Escape(d.Route, 64)},
			"required_scope": {To: keys.Escape(d.Required, 64)},
			"count":          {To: max(d.Count, 1)},
		}
		var k *keys.Key
		if d.Ref != "" && !keys.LooksLikeToken(d.Ref) {
			var err error
			k, err = s.resolve(ctx, tx, d.Ref)
			if err != nil && !errors.Is(err, keys.ErrNotFound) {
				return err
			}
		}
		if k == nil && d.Ref != "" {
			changes["ref"] = keys.Change{To: keys.Escape(d.Ref, 64)}
		}
		return s.appendAudit(ctx, tx, keys.ActionDenied, k, changes)
	})
}

func (s *SQLite) auditRows(ctx context.Context, q querier, fn func(chain.Row) error) error {
	rows, err := q.QueryContext(ctx, `SELECT seq, content, prev_hash, hash, scheme FROM audit ORDER BY seq`)
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
func (s *SQLite) Audit(ctx context.Context, f keys.AuditFilter) ([]*keys.AuditEntry, error) {
	out := []*keys.AuditEntry{}
	err := s.auditRows(ctx, s.reads(), func(r chain.Row) error {
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
// that was edited, deleted or moved behind keyctl's back: each entry's link
// by its own scheme, every entry from the one the pepper was first recorded
// at keyed with it, and each checkpoint still in the chain, unchanged. The
// entries and the head are read in one read transaction, a snapshot: a
// change committed meanwhile is in both or in neither.
func (s *SQLite) VerifyAudit(ctx context.Context, checkpoints ...keys.Checkpoint) (*keys.AuditCheck, error) {
	tx, err := s.reads().BeginTx(ctx, &sql.TxOptions{ReadOnly: true}) // a deferred BEGIN: no write lock
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	if err := s.refreshPepper(ctx, tx); err != nil {
		return nil, err
	}
	w := chain.NewWalker(s.chainOptions(checkpoints))
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
