package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/keyctl/keyctl/store/chain"
	"github.com/keyctl/keyctl/store/dump"
	"github.com/keyctl/keyctl/store/keys"
	"github.com/keyctl/keyctl/store/pepper"
)

// Dump reads the whole database in one transaction, so that what it gives
// is one moment of the database.
func (s *SQLite) Dump(ctx context.Context) iter.Seq2[dump.Item, error] {
	return func(yield func(dump.Item, error) bool) {
		stop := errors.New("stopped")
		err := s.tx(ctx, func(tx *sql.Tx) error {
			emit := func(it dump.Item) error {
				if !yield(it, nil) {
					return stop
				}
				return nil
			}
			var m dump.Meta
			var err error
			if m.Pepper, err = s.meta(ctx, tx, metaPepper); err != nil {
				return err
			}
			if m.KeyedFrom, err = s.meta(ctx, tx, metaKeyedFrom); err != nil {
				return err
			}
			if err := emit(dump.Item{Meta: &m}); err != nil {
				return err
			}
			if err := s.dumpKeys(ctx, tx, emit); err != nil {
				return err
			}
			if err := dumpUses(ctx, tx, emit); err != nil {
				return err
			}
			if err := s.auditRows(ctx, tx, func(r chain.Row) error { return emit(dump.Item{Entry: &r}) }); err != nil {
				return err
			}
			var h dump.Head
			err = tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&h.Seq, &h.Hash)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			return emit(dump.Item{Head: &h})
		})
		if err != nil && !errors.Is(err, stop) {
			yield(dump.Item{}, err)
		}
	}
}

func (s *SQLite) dumpKeys(ctx context.Context, tx *sql.Tx, emit func(dump.Item) error) error {
	rows, err := tx.QueryContext(ctx, `SELECT k.rate_tat, `+keyColumns+` FROM keys k `+usageJoin+` ORDER BY k.rowid`)
	if err != nil {
		return err
	}
	var all []*dump.Key
	for rows.Next() {
		d := &dump.Key{}
		k, err := s.scanKey(scanFunc(func(dest ...any) error { return rows.Scan(append([]any{&d.RateTAT}, dest...)...) }))
		if err != nil {
			rows.Close()
			return err
		}
		k.Status = k.Stored
		d.Key = *k
		all = append(all, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, d := range all {
		if d.Secrets, err = dumpSecrets(ctx, tx, d.Key.ID); err != nil {
			return err
		}
		if err := emit(dump.Item{Key: d}); err != nil {
			return err
		}
	}
	return nil
}

func dumpSecrets(ctx context.Context, tx *sql.Tx, keyID string) ([]dump.Secret, error) {
	rows, err := tx.QueryContext(ctx, `SELECT digest, start, created_at, ends_at FROM secrets
		WHERE key_id = ? ORDER BY created_at, digest`, keyID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []dump.Secret
	for rows.Next() {
		var sec dump.Secret
		var created int64
		var ends sql.NullInt64
		if err := rows.Scan(&sec.Digest, &sec.Start, &created, &ends); err != nil {
			return nil, err
		}
		sec.CreatedAt, sec.EndsAt = time.Unix(created, 0).UTC(), fromUnix(ends)
		out = append(out, sec)
	}
	return out, rows.Err()
}

func dumpUses(ctx context.Context, tx *sql.Tx, emit func(dump.Item) error) error {
	rows, err := tx.QueryContext(ctx, `SELECT key_id, at, code, ip FROM usage_events ORDER BY at, key_id, n`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		u := &dump.Use{}
		var at int64
		if err := rows.Scan(&u.KeyID, &at, &u.Code, &u.IP); err != nil {
			return err
		}
		u.At = time.UnixMilli(at).UTC()
		if err := emit(dump.Item{Use: u}); err != nil {
			return err
		}
	}
	return rows.Err()
}

// Load fills an empty database with a dump, in one transaction. A key's
// usage goes in its row's usage columns, and its log is numbered from 1
// with each entry carrying the last address forward, so that the count,
// last use and last address read back as the dump gave them.
//
// The copy keeps the source's record of its pepper, once the configured
// pepper is found to be the same, so that its keyed audit entries verify
// under the key derived with the source's salt; a source without that record
// leaves the destination's own, keyed from the entry after those copied.
func (s *SQLite) Load(ctx context.Context, items iter.Seq2[dump.Item, error]) error {
	if err := s.writable(); err != nil {
		return err
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var used bool
		if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM keys) OR EXISTS (SELECT 1 FROM audit)
			OR EXISTS (SELECT 1 FROM audit_head WHERE seq <> 0)`).Scan(&used); err != nil {
			return err
		}
		if used {
			return fmt.Errorf("%w: the destination database already holds keys or audit entries", keys.ErrConflict)
		}
		type logged struct {
			n      int64
			lastIP string
		}
		logs := map[string]*logged{}
		adopted := false
		var head int64
		for it, err := range items {
			if err != nil {
				return err
			}
			switch {
			case it.Meta != nil:
				adopted, err = s.adoptMeta(ctx, tx, it.Meta)
			case it.Key != nil:
				err = loadKey(ctx, tx, it.Key)
			case it.Use != nil:
				u := it.Use
				l := logs[u.KeyID]
				if l == nil {
					l = &logged{}
					logs[u.KeyID] = l
				}
				l.n++
				if u.IP != "" {
					l.lastIP = u.IP
				}
				_, err = tx.ExecContext(ctx, `INSERT INTO usage_events (key_id, n, at, code, ip, last_ip) VALUES (?, ?, ?, ?, ?, ?)`,
					u.KeyID, l.n, u.At.UnixMilli(), u.Code, u.IP, l.lastIP)
			case it.Entry != nil:
				r := it.Entry
				_, err = tx.ExecContext(ctx, `INSERT INTO audit (seq, content, prev_hash, hash, scheme) VALUES (?, ?, ?, ?, ?)`,
					r.Seq, r.Content, r.PrevHash, r.Hash, schemeOf(r))
			case it.Head != nil:
				head = it.Head.Seq
				_, err = tx.ExecContext(ctx, `INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?)
					ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash`, it.Head.Seq, it.Head.Hash)
			}
			if err != nil {
				return err
			}
		}
		if key := s.chainKey(); !adopted && key != nil {
			_, err := tx.ExecContext(ctx, `INSERT INTO meta (name, value) VALUES (?, ?)
				ON CONFLICT (name) DO UPDATE SET value = excluded.value`, metaKeyedFrom, pepper.KeyedFrom(key, head+1))
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	return s.checkPepper(ctx)
}

// adoptMeta keeps a source's record of its pepper, when it has one and the
// configured pepper is the same, and reports whether it did.
func (s *SQLite) adoptMeta(ctx context.Context, tx *sql.Tx, m *dump.Meta) (bool, error) {
	if m.Pepper == "" {
		return false, nil
	}
	if _, err := pepper.Check(m.Pepper, s.pepper, "the source database"); err != nil {
		return false, err
	}
	for name, v := range map[string]string{metaPepper: m.Pepper, metaKeyedFrom: m.KeyedFrom} {
		var err error
		if v == "" {
			_, err = tx.ExecContext(ctx, `DELETE FROM meta WHERE name = ?`, name)
		} else {
			_, err = tx.ExecContext(ctx, `INSERT INTO meta (name, value) VALUES (?, ?)
				ON CONFLICT (name) DO UPDATE SET value = excluded.value`, name, v)
		}
		if err != nil {
			return false, err
		}
	}
	return true, nil
}

// schemeOf is a row's link scheme, SHA-256 when it names none.
func schemeOf(r *chain.Row) string {
	if r.Scheme == "" {
		return chain.SchemeSHA256
	}
	return r.Scheme
}

func loadKey(ctx context.Context, tx *sql.Tx, d *dump.Key) error {
	k := d.Key
	var rateCount, rateUnit any
	if k.RateLimit != nil {
		rateCount, rateUnit = k.RateLimit.Count, k.RateLimit.Unit
	}
	meta := k.Metadata
	if meta == nil {
		meta = map[string]string{}
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO keys (id, name, description, prefix, env, start, status, scopes,
		allowed_ips, metadata, expires_at, quota, quota_remaining, rate_count, rate_unit, rate_tat, usage_count,
		last_used_at, last_used_ip, created_at, created_by, updated_at, rotated_at, revoked_at, revoke_reason)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		k.ID, k.Name, k.Description, k.Prefix, k.Env, k.Start, k.Stored, mustJSON(keys.NormalizeSet(k.Scopes)),
		mustJSON(keys.NormalizeSet(k.AllowedIPs)), mustJSON(meta), toUnix(k.ExpiresAt), ptrValue(k.Quota),
		ptrValue(k.QuotaRemaining), rateCount, rateUnit, d.RateTAT, k.UsageCount, toUnix(k.LastUsedAt), k.LastUsedIP,
		k.CreatedAt.Unix(), k.CreatedBy, k.UpdatedAt.Unix(), toUnix(k.RotatedAt), toUnix(k.RevokedAt), k.RevokeReason)
	if err != nil {
		return err
	}
	for _, sec := range d.Secrets {
		if _, err := tx.ExecContext(ctx, `INSERT INTO secrets (digest, key_id, start, created_at, ends_at) VALUES (?, ?, ?, ?, ?)`,
			sec.Digest, k.ID, sec.Start, sec.CreatedAt.Unix(), toUnix(sec.EndsAt)); err != nil {
			return err
		}
	}
	return nil
}
