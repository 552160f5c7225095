package sqlite

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/keyctl/keyctl/apikey"
	"github.com/keyctl/keyctl/store/keys"
)

// UndoWindow is how long after a rotation UndoRotate may undo it: long
// enough for the client that asked for it to find that it could not deliver
// the new secret, too short to bring an old secret back later.
const UndoWindow = 10 * time.Minute

// prevEnd is an older secret's end before a rotation cut it short.
type prevEnd struct {
	Digest string `json:"digest"` // hex
	EndsAt *int64 `json:"ends_at"`
}

// recordRotation keeps what rotating k to the secret digest is about to
// change (the secrets that end after end, and the key's start), and drops
// the records older than the undo window.
func (s *SQLite) recordRotation(ctx context.Context, tx *sql.Tx, k *keys.Key, digest []byte, end, now int64) error {
	rows, err := tx.QueryContext(ctx, `SELECT digest, ends_at FROM secrets
		WHERE key_id = ? AND (ends_at IS NULL OR ends_at > ?)`, k.ID, end)
	if err != nil {
		return err
	}
	ends := []prevEnd{}
	for rows.Next() {
		var d []byte
		var at sql.NullInt64
		if err := rows.Scan(&d, &at); err != nil {
			rows.Close()
			return err
		}
		ends = append(ends, prevEnd{Digest: hex.EncodeToString(d), EndsAt: nullInt(at)})
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM rotations WHERE at < ?`, now-int64(UndoWindow/time.Second)); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO rotations (digest, key_id, at, prev_start, prev_rotated_at, prev_ends)
		VALUES (?, ?, ?, ?, ?, ?)`, digest, k.ID, now, k.Start, toUnix(k.RotatedAt), mustJSON(ends))
	return err
}

// UndoRotate undoes the rotation of the key ref names that issued secret,
// which must still be its current secret, within UndoWindow: the secret is
// deleted, and the older secrets end when they ended before it. It is for
// a client whose rotation committed on a server but whose new secret never
// reached its user. ErrConflict when the rotation cannot be undone.
func (s *SQLite) UndoRotate(ctx context.Context, ref, secret string) (*keys.Key, error) {
	if _, err := apikey.Parse(secret); err != nil {
		return nil, fmt.Errorf("%w: the secret is not a keyctl key", keys.ErrInvalid)
	}
	digest := apikey.Digest(secret, s.pepper)
	m, err := s.mutate(ctx, mutation{
		ref:  ref,
		plan: fixed(keys.ActionUndoRotate, nil),
		write: func(tx *sql.Tx, c change) (string, error) {
			return c.before.ID, s.undoRotation(ctx, tx, c.before, digest, c.now)
		},
	})
	return m.key, err
}

// undoRotation restores what the rotation of k to the secret digest
// changed, if it can still be undone.
func (s *SQLite) undoRotation(ctx context.Context, tx *sql.Tx, k *keys.Key, digest []byte, now int64) error {
	var (
		stored, ends []byte
		at           int64
		prevStart    string
		prevRotated  sql.NullInt64
	)
	err := tx.QueryRowContext(ctx, `SELECT r.digest, r.at, r.prev_start, r.prev_rotated_at, r.prev_ends
		FROM rotations r JOIN secrets sc ON sc.digest = r.digest
		WHERE r.digest = ? AND r.key_id = ? AND sc.ends_at IS NULL`, digest, k.ID).
		Scan(&stored, &at, &prevStart, &prevRotated, &ends)
	if errors.Is(err, sql.ErrNoRows) || err == nil && !apikey.Equal(stored, digest) {
		return fmt.Errorf("key %q (%s): this secret is not the current secret of a rotation that can be undone: %w",
			k.Name, k.ID, keys.ErrConflict)
	}
	if err != nil {
		return err
	}
	if now-at > int64(UndoWindow/time.Second) {
		return fmt.Errorf("key %q (%s): the rotation was more than %s ago and can no longer be undone: %w",
			k.Name, k.ID, keys.FormatDuration(UndoWindow), keys.ErrConflict)
	}
	var prev []prevEnd
	if err := json.Unmarshal(ends, &prev); err != nil {
		return fmt.Errorf("rotation of key %s: corrupt record: %w", k.ID, err)
	}
	for _, p := range prev {
		d, err := hex.DecodeString(p.Digest)
		if err != nil {
			return fmt.Errorf("rotation of key %s: corrupt record: %w", k.ID, err)
		}
		var endsAt any
		if p.EndsAt != nil {
			endsAt = *p.EndsAt
		}
		if _, err := tx.ExecContext(ctx, `UPDATE secrets SET ends_at = ? WHERE digest = ? AND key_id = ?`,
			endsAt, d, k.ID); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM rotations WHERE digest = ?`, digest); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM secrets WHERE digest = ?`, digest); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `UPDATE keys SET start = ?, rotated_at = ?, updated_at = ? WHERE id = ?`,
		prevStart, prevRotated, now, k.ID)
	return err
}

// EndGrace ends now every old secret of the key ref names that is still in
// a rotation's grace, and returns the key and how many secrets it ended.
// The current secret stays. A revoked key has none to end (ErrRevoked).
func (s *SQLite) EndGrace(ctx context.Context, ref string) (*keys.Key, int, error) {
	var ended int64
	m, err := s.mutate(ctx, mutation{
		ref:  ref,
		plan: fixed(keys.ActionEndGrace, nil),
		write: func(tx *sql.Tx, c change) (string, error) {
			id := c.before.ID
			res, err := tx.ExecContext(ctx, `UPDATE secrets SET ends_at = ? WHERE key_id = ? AND ends_at > ?`, c.now, id, c.now)
			if err != nil {
				return "", err
			}
			if ended, err = res.RowsAffected(); err != nil || ended == 0 {
				return id, err // nothing changed, nothing to audit
			}
			// An undone rotation would bring the ended secrets back.
			if _, err := tx.ExecContext(ctx, `DELETE FROM rotations WHERE key_id = ?`, id); err != nil {
				return "", err
			}
			c.extra["secrets_ended"] = keys.Change{To: ended}
			_, err = tx.ExecContext(ctx, `UPDATE keys SET updated_at = ? WHERE id = ?`, c.now, id)
			return id, err
		},
	})
	return m.key, int(ended), err
}

// Secrets lists the live secrets of the key ref names, newest first: the
// current one and those still in a rotation's grace. A revoked key has
// none.
func (s *SQLite) Secrets(ctx context.Context, ref string) ([]keys.SecretInfo, error) {
	q := s.reads()
	k, err := s.resolve(ctx, q, ref)
	if err != nil {
		return nil, err
	}
	out := []keys.SecretInfo{}
	if k.Status == keys.Revoked {
		return out, nil
	}
	rows, err := q.QueryContext(ctx, `SELECT start, created_at, ends_at FROM secrets
		WHERE key_id = ? AND (ends_at IS NULL OR ends_at > ?) ORDER BY ends_at IS NOT NULL, created_at DESC, ends_at DESC`,
		k.ID, s.now().Unix())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var si keys.SecretInfo
		var created int64
		var ends sql.NullInt64
		if err := rows.Scan(&si.Start, &created, &ends); err != nil {
			return nil, err
		}
		si.CreatedAt, si.EndsAt, si.Current = time.Unix(created, 0).UTC(), fromUnix(ends), !ends.Valid
		out = append(out, si)
	}
	return out, rows.Err()
}
