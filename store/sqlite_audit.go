package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// auditedFields are the key fields whose changes the audit trail records.
// Digests and secrets are not among them, nor anything derived from them
// except the display start.
var auditedFields = []string{"name", "description", "prefix", "env", "start", "status", "scopes",
	"expires_at", "allowed_ips", "quota", "quota_remaining", "rate_limit", "metadata", "revoke_reason"}

func keyFields(k *Key) map[string]json.RawMessage {
	m := map[string]json.RawMessage{}
	if k == nil {
		return m
	}
	b, _ := json.Marshal(k)
	json.Unmarshal(b, &m)
	// Audit the stored status: disabling an expired key is a change even
	// though it still reads as expired.
	if k.stored != "" {
		m["status"], _ = json.Marshal(k.stored)
	}
	return m
}

// diffKeys returns the audited fields that differ between before and after;
// with before nil (a new key), the fields that are set.
func diffKeys(before, after *Key) map[string]Change {
	a, b := keyFields(before), keyFields(after)
	out := map[string]Change{}
	for _, f := range auditedFields {
		from, to := a[f], b[f]
		if before == nil {
			switch string(to) {
			case "", "null", "[]", "{}", `""`:
				continue
			}
			from = json.RawMessage("null")
		}
		if !bytes.Equal(from, to) {
			out[f] = Change{From: from, To: to}
		}
	}
	return out
}

// auditContent is what an entry's hash covers, in this order.
type auditContent struct {
	Seq     int64             `json:"seq"`
	At      string            `json:"at"`
	Actor   Actor             `json:"actor"`
	Action  string            `json:"action"`
	KeyID   string            `json:"key_id"`
	KeyName string            `json:"key_name"`
	Changes map[string]Change `json:"changes"`
	Note    string            `json:"note,omitempty"`
}

func chainHash(prev string, content []byte) string {
	h := sha256.New()
	h.Write([]byte(prev))
	h.Write([]byte{'\n'})
	h.Write(content)
	return hex.EncodeToString(h.Sum(nil))
}

// appendAudit adds an entry to the chain inside the change's transaction, so
// that a change and its record happen together or not at all.
func (s *SQLite) appendAudit(ctx context.Context, tx *sql.Tx, action string, k *Key, changes map[string]Change) error {
	var seq int64
	var prev string
	err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&seq, &prev)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	c := auditContent{
		Seq: seq + 1, At: s.now().UTC().Format(time.RFC3339Nano), Actor: ActorFrom(ctx), Action: action,
		Changes: changes, Note: NoteFrom(ctx),
	}
	if k != nil {
		c.KeyID, c.KeyName = k.ID, k.Name
	}
	if c.Changes == nil {
		c.Changes = map[string]Change{}
	}
	content, err := json.Marshal(c)
	if err != nil {
		return err
	}
	hash := chainHash(prev, content)
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
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if k == nil && ref != "" {
			k = &Key{ID: "", Name: ref}
		}
		return s.appendAudit(ctx, tx, ActionDenied, k, map[string]Change{
			"attempted":      {To: attempted},
			"required_scope": {To: required},
		})
	})
}

type auditRow struct {
	seq            int64
	content        string
	prevHash, hash string
}

func (s *SQLite) auditRows(ctx context.Context, fn func(auditRow) error) error {
	rows, err := s.db.QueryContext(ctx, `SELECT seq, content, prev_hash, hash FROM audit ORDER BY seq`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var r auditRow
		if err := rows.Scan(&r.seq, &r.content, &r.prevHash, &r.hash); err != nil {
			return err
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return rows.Err()
}

func (r auditRow) entry() (*AuditEntry, error) {
	var c auditContent
	if err := json.Unmarshal([]byte(r.content), &c); err != nil {
		return nil, fmt.Errorf("audit entry %d: %w", r.seq, err)
	}
	at, _ := time.Parse(time.RFC3339Nano, c.At)
	return &AuditEntry{Seq: c.Seq, At: at, Actor: c.Actor, Action: c.Action, KeyID: c.KeyID, KeyName: c.KeyName,
		Changes: c.Changes, Note: c.Note, PrevHash: r.prevHash, Hash: r.hash}, nil
}

// Audit returns the entries that match f, oldest first.
func (s *SQLite) Audit(ctx context.Context, f AuditFilter) ([]*AuditEntry, error) {
	out := []*AuditEntry{}
	err := s.auditRows(ctx, func(r auditRow) error {
		e, err := r.entry()
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
// that was edited, deleted or moved behind keyctl's back.
func (s *SQLite) VerifyAudit(ctx context.Context) (*AuditCheck, error) {
	check := &AuditCheck{OK: true}
	prev, want := "", int64(1)
	bad := func(seq int64, format string, a ...any) {
		if check.OK {
			check.OK, check.BadSeq, check.Problem = false, seq, fmt.Sprintf(format, a...)
		}
	}
	err := s.auditRows(ctx, func(r auditRow) error {
		check.Entries++
		var c auditContent
		switch {
		case !check.OK:
		case r.seq != want:
			bad(want, "entry %d is missing: the next entry is %d", want, r.seq)
		case json.Unmarshal([]byte(r.content), &c) != nil:
			bad(r.seq, "entry %d is not valid JSON: it was edited", r.seq)
		case c.Seq != r.seq:
			bad(r.seq, "entry %d holds the content of entry %d: entries were reordered", r.seq, c.Seq)
		case r.prevHash != prev:
			bad(r.seq, "entry %d does not follow entry %d: an entry before it was edited, deleted or moved", r.seq, r.seq-1)
		case chainHash(prev, []byte(r.content)) != r.hash:
			bad(r.seq, "entry %d was edited: its hash does not match its content", r.seq)
		}
		prev, want = r.hash, r.seq+1
		return nil
	})
	if err != nil {
		return nil, err
	}
	var headSeq int64
	var headHash string
	err = s.db.QueryRowContext(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&headSeq, &headHash)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	switch {
	case headSeq > want-1:
		bad(want, "entries %d to %d were deleted from the end", want, headSeq)
	case headSeq != want-1 || headHash != prev:
		bad(headSeq, "the chain's head does not match entry %d: entries were changed behind keyctl's back", want-1)
	}
	check.Head = prev
	return check, nil
}
