package postgres

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keyctl/keyctl/apikey"
	"github.com/keyctl/keyctl/store/keys"
)

// UndoWindow is how long after a rotation UndoRotate may undo it, as on
// SQLite: long enough for the client that asked for it to find that it
// could not deliver the new secret, too short to bring an old secret back
// later.
const UndoWindow = 10 * time.Minute

// prevEnd is an older secret's end before a rotation cut it short.
type prevEnd struct {
	Digest string     `json:"digest"` // hex
	EndsAt *time.Time `json:"ends_at"`
}

// recordRotation keeps what rotating k to the secret digest is about to
// change (the secrets that end after end, and the key's start), and drops
// the records older than the undo window.
func recordRotation(ctx context.Context, tx pgx.Tx, k *keys.Key, digest []byte, end, now time.Time) error {
	rows, err := tx.Query(ctx, `SELECT digest, ends_at FROM secrets
		WHERE key_id = $1 AND (ends_at IS NULL OR ends_at > $2)`, k.ID, end)
	if err != nil {
		return err
	}
	ends := []prevEnd{}
	for rows.Next() {
		var d []byte
		var at *time.Time
		if err := rows.Scan(&d, &at); err != nil {
			rows.Close()
			return err
		}
		ends = append(ends, prevEnd{Digest: hex.EncodeToString(d), EndsAt: at})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM rotations WHERE at < $1`, now.Add(-UndoWindow)); err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO rotations (digest, key_id, at, prev_start, prev_rotated_at, prev_ends)
		VALUES ($1, $2, $3, $4, $5, $6)`, digest, k.ID, now, k.Start, k.RotatedAt, ends)
	return err
}

// UndoRotate undoes the rotation of the key ref names that issued secret,
// which must still be its current secret, within UndoWindow: the secret is
// deleted, and the older secrets end when they ended before it.
// ErrConflict when the rotation cannot be undone.
func (p *Postgres) UndoRotate(ctx context.Context, ref, secret string) (*keys.Key, error) {
	if _, err := apikey.Parse(secret); err != nil {
		return nil, fmt.Errorf("%w: the secret is not a keyctl key", keys.ErrInvalid)
	}
	digest := apikey.Digest(secret, p.pepper)
	m, err := p.mutate(ctx, mutation{
		ref:  ref,
		plan: fixed(keys.ActionUndoRotate, nil),
		write: func(tx pgx.Tx, c change) (string, error) {
			return c.before.ID, undoRotation(ctx, tx, c.before, digest, c.now)
		},
	})
	return m.key, err
}

// undoRotation restores what the rotation of k to the secret digest
// changed, if it can still be undone.
func undoRotation(ctx context.Context, tx pgx.Tx, k *keys.Key, digest []byte, now time.Time) error {
	var (
		stored, ends []byte
		at           time.Time
		prevStart    string
		prevRotated  *time.Time
	)
	err := tx.QueryRow(ctx, `SELECT r.digest, r.at, r.prev_start, r.prev_rotated_at, r.prev_ends
		FROM rotations r JOIN secrets sc ON sc.digest = r.digest
		WHERE r.digest = $1 AND r.key_id = $2 AND sc.ends_at IS NULL`, digest, k.ID).
		Scan(&stored, &at, &prevStart, &prevRotated, &ends)
	if errors.Is(err, pgx.ErrNoRows) || err == nil && !apikey.Equal(stored, digest) {
		return fmt.Errorf("key %q (%s): this secret is not the current secret of a rotation that can be undone: %w",
			k.Name, k.ID, keys.ErrConflict)
	}
	if err != nil {
		return err
	}
	if now.Sub(at) > UndoWindow {
		return fmt.Errorf("key %q (%s): the rotation was more than %s ago and can no longer be undone: %w",
			k.Name, k.ID, keys.FormatDuration(UndoWindow), keys.ErrConflict)
	}
	var prev []prevEnd
	if err := json.Unmarshal(ends, &prev); err != nil {
		return fmt.Errorf("rotation of key %s: corrupt record: %w", k.ID, err)
	}
	for _, pe := range prev {
		d, err := hex.DecodeString(pe.Digest)
		if err != nil {
			return fmt.Errorf("rotation of key %s: corrupt record: %w", k.ID, err)
		}
		if _, err := tx.Exec(ctx, `UPDATE secrets SET ends_at = $1 WHERE digest = $2 AND key_id = $3`,
			pe.EndsAt, d, k.ID); err != nil {
			return err
		}
	}
	if _, err := tx.Exec(ctx, `DELETE FROM rotations WHERE digest = $1`, digest); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM secrets WHERE digest = $1`, digest); err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `UPDATE keys SET start = $1, rotated_at = $2, updated_at = $3 WHERE id = $4`,
		prevStart, prevRotated, now, k.ID)
	return err
}

// EndGrace ends now every old secret of the key ref names that is still in
// a rotation's grace, and returns the key and how many secrets it ended.
// The current secret stays. A revoked key has none to end (ErrRevoked).
func (p *Postgres) EndGrace(ctx context.Context, ref string) (*keys.Key, int, error) {
	var ended int64
	m, err := p.mutate(ctx, mutation{
		ref:  ref,
		plan: fixed(keys.ActionEndGrace, nil),
		write: func(tx pgx.Tx, c change) (string, error) {
			id := c.before.ID
			tag, err := tx.Exec(ctx, `UPDATE secrets SET ends_at = $1 WHERE key_id = $2 AND ends_at > $1`, c.now, id)
			if err != nil {
				return "", err
			}
			if ended = tag.RowsAffected(); ended == 0 {
				return id, nil // nothing changed, nothing to audit
			}
			// An undone rotation would bring the ended secrets back.
			if _, err := tx.Exec(ctx, `DELETE FROM rotations WHERE key_id = $1`, id); err != nil {
				return "", err
			}
			c.extra["secrets_ended"] = keys.Change{To: ended}
			_, err = tx.Exec(ctx, `UPDATE keys SET updated_at = $1 WHERE id = $2`, c.now, id)
			return id, err
		},
	})
	if err != nil {
		return nil, 0, err
	}
	return m.key, int(ended), nil
}

// Secrets lists the live secrets of the key ref names, newest first: the
// current one and those still in a rotation's grace. A revoked key has
// none.
func (p *Postgres) Secrets(ctx context.Context, ref string) ([]keys.SecretInfo, error) {
	k, err := p.Get(ctx, ref)
	if err != nil {
		return nil, err
	}
	out := []keys.SecretInfo{}
	if k.Status == keys.Revoked {
		return out, nil
	}
	rows, err := p.pool.Query(ctx, `SELECT start, created_at, ends_at FROM secrets
		WHERE key_id = $1 AND (ends_at IS NULL OR ends_at > $2)
		ORDER BY ends_at IS NOT NULL, created_at DESC, ends_at DESC`, k.ID, p.now())
	if err != nil {
		return nil, classify(err)
	}
	defer rows.Close()
	for rows.Next() {
		var si keys.SecretInfo
		if err := rows.Scan(&si.Start, &si.CreatedAt, &si.EndsAt); err != nil {
			return nil, err
		}
		si.CreatedAt, si.Current = si.CreatedAt.UTC(), si.EndsAt == nil
		if si.EndsAt != nil {
			*si.EndsAt = si.EndsAt.UTC()
		}
		out = append(out, si)
	}
	return out, classify(rows.Err())
}
