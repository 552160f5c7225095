package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/keyctl/keyctl/apikey"
	"github.com/keyctl/keyctl/store/keys"
)

// A key's usage lives in its usage log: the count, time and last address
// are those of the log's last entry (n, at, last_ip), so that recording a
// use adds a log row and leaves the key's row alone. The keys table's own
// usage columns hold the usage as of schema version 5, for keys whose log
// was empty then; these expressions read both.
const (
	usageCountExpr = `max(coalesce(u.n, 0), k.usage_count)`
	lastUsedAtExpr = `CASE WHEN u.at IS NULL THEN k.last_used_at ELSE max(u.at / 1000, coalesce(k.last_used_at, 0)) END`
	lastUsedIPExpr = `CASE WHEN coalesce(u.last_ip, '') <> '' THEN u.last_ip ELSE k.last_used_ip END`
	// usageJoin joins the last entry of the log of the key k, as u.
	usageJoin = `LEFT JOIN usage_events u ON u.key_id = k.id
		AND u.n = (SELECT max(n) FROM usage_events WHERE key_id = k.id)`
)

// keyColumns are the columns scanKey reads, in its order, from keys as k
// and usageJoin.
var keyColumns = `k.id, k.name, k.description, k.prefix, k.env, k.start, k.status, k.scopes,
	k.allowed_ips, k.metadata, k.expires_at, k.quota, k.quota_remaining, k.rate_count, k.rate_unit, ` +
	usageCountExpr + `, ` + lastUsedAtExpr + `, ` + lastUsedIPExpr + `,
	k.created_at, k.created_by, k.updated_at, k.rotated_at, k.revoked_at, k.revoke_reason`

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

type scanner interface{ Scan(dest ...any) error }

func (s *SQLite) scanKey(row scanner) (*keys.Key, error) {
	var (
		k                               keys.Key
		scopes, ips, meta               string
		expires, last, rotated, revoked sql.NullInt64
		quota, remaining, rateCount     sql.NullInt64
		rateUnit                        sql.NullString
		created, updated                int64
	)
	err := row.Scan(&k.ID, &k.Name, &k.Description, &k.Prefix, &k.Env, &k.Start, &k.Status,
		&scopes, &ips, &meta, &expires, &quota, &remaining, &rateCount, &rateUnit,
		&k.UsageCount, &last, &k.LastUsedIP, &created, &k.CreatedBy, &updated, &rotated,
		&revoked, &k.RevokeReason)
	if err != nil {
		return nil, err
	}
	if err := errors.Join(unmarshalSet(scopes, &k.Scopes), unmarshalSet(ips, &k.AllowedIPs),
		unmarshalMap(meta, &k.Metadata)); err != nil {
		return nil, fmt.Errorf("key %s: corrupt column: %w", k.ID, err)
	}
	k.ExpiresAt, k.LastUsedAt = fromUnix(expires), fromUnix(last)
	k.RotatedAt, k.RevokedAt = fromUnix(rotated), fromUnix(revoked)
	k.CreatedAt, k.UpdatedAt = time.Unix(created, 0).UTC(), time.Unix(updated, 0).UTC()
	k.Quota, k.QuotaRemaining = nullInt(quota), nullInt(remaining)
	if rateCount.Valid && rateUnit.Valid {
		k.RateLimit = &keys.RateLimit{Count: rateCount.Int64, Unit: rateUnit.String}
	}
	k.Stored = k.Status
	k.Status = keys.StatusAt(k.Status, k.ExpiresAt, s.now())
	return &k, nil
}

// unmarshalSet and unmarshalMap decode the JSON columns, skipping the
// decoder for the common empty values: verification reads them every time.
func unmarshalSet(s string, v *[]string) error {
	if s == "[]" {
		*v = []string{}
		return nil
	}
	return json.Unmarshal([]byte(s), v)
}

func unmarshalMap(s string, v *map[string]string) error {
	if s == "{}" {
		*v = map[string]string{}
		return nil
	}
	return json.Unmarshal([]byte(s), v)
}

func fromUnix(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := time.Unix(v.Int64, 0).UTC()
	return &t
}

func toUnix(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.Unix()
}

func nullInt(v sql.NullInt64) *int64 {
	if !v.Valid {
		return nil
	}
	return &v.Int64
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only slices and maps of strings are marshalled here
	}
	return string(b)
}

// resolve finds the key ref names: by id first, else the key of that name
// that is not revoked, else the one of that name revoked most recently.
func (s *SQLite) resolve(ctx context.Context, q querier, ref string) (*keys.Key, error) {
	k, err := s.scanKey(q.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM keys k `+usageJoin+` WHERE k.id = ?`, ref))
	if errors.Is(err, sql.ErrNoRows) {
		k, err = s.scanKey(q.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM keys k `+usageJoin+` WHERE k.name = ?
			ORDER BY k.status = 'revoked', k.revoked_at DESC, k.rowid DESC LIMIT 1`, ref))
	}
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("key %q %w", ref, keys.ErrNotFound)
	}
	return k, err
}

func (s *SQLite) nameInUse(ctx context.Context, tx *sql.Tx, name string) (bool, error) {
	var n int
	err := tx.QueryRowContext(ctx, `SELECT count(*) FROM keys WHERE name = ? AND status <> 'revoked'`, name).Scan(&n)
	return n > 0, err
}

func (s *SQLite) newSecret(prefix string, env keys.Env) (token string, digest []byte, start string, err error) {
	tok, err := apikey.New(prefix, env.Tag())
	if err != nil {
		return "", nil, "", fmt.Errorf("%w: %w", keys.ErrInvalid, err)
	}
	token = tok.String()
	return token, apikey.Digest(token, s.pepper), tok.Start(), nil
}

// Create issues a key.
func (s *SQLite) Create(ctx context.Context, p keys.CreateParams) (*keys.Key, string, error) {
	var token string
	k, err := s.CreateDelivered(ctx, p, func(_ *keys.Key, secret string) error {
		token = secret
		return nil
	})
	return k, token, err
}

// CreateDelivered issues a key and calls deliver with its secret inside
// the transaction, after every write and before the commit: when deliver
// fails, nothing is committed.
func (s *SQLite) CreateDelivered(ctx context.Context, p keys.CreateParams, deliver keys.Deliver) (*keys.Key, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if p.CreatedBy == "" {
		p.CreatedBy = keys.ActorFrom(ctx).Name
	}
	id, err := NewID()
	if err != nil {
		return nil, err
	}
	token, digest, start, err := s.newSecret(p.Prefix, p.Env)
	if err != nil {
		return nil, err
	}
	now := s.now().Unix()
	var rateCount, rateUnit any
	if p.RateLimit != nil {
		rateCount, rateUnit = p.RateLimit.Count, p.RateLimit.Unit
	}
	var quota any
	if p.Quota != nil {
		quota = *p.Quota
	}
	meta := p.Metadata
	if meta == nil {
		meta = map[string]string{}
	}
	var k *keys.Key
	err = s.tx(ctx, func(tx *sql.Tx) error {
		name := p.Name
		if name == "" {
			if name, err = s.generateName(ctx, tx); err != nil {
				return err
			}
		} else if used, err := s.nameInUse(ctx, tx, name); err != nil {
			return err
		} else if used {
			return fmt.Errorf("name %q is already in use by another key: %w", name, keys.ErrConflict)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO keys (id, name, description, prefix, env, start, status,
			scopes, allowed_ips, metadata, expires_at, quota, quota_remaining, rate_count, rate_unit,
			created_at, created_by, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'active', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			id, name, p.Description, p.Prefix, p.Env, start, mustJSON(keys.NormalizeSet(p.Scopes)),
			mustJSON(keys.NormalizeSet(p.AllowedIPs)), mustJSON(meta), toUnix(p.ExpiresAt), quota, quota,
			rateCount, rateUnit, now, p.CreatedBy, now)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO secrets (digest, key_id, start, created_at) VALUES (?, ?, ?, ?)`,
			digest, id, start, now); err != nil {
			return err
		}
		if k, err = s.resolve(ctx, tx, id); err != nil {
			return err
		}
		if err := s.appendAudit(ctx, tx, keys.ActionCreate, k, keys.Diff(nil, k)); err != nil {
			return err
		}
		return deliver(k, token)
	})
	if err != nil {
		return nil, err
	}
	return k, nil
}

// Get resolves ref to a key.
func (s *SQLite) Get(ctx context.Context, ref string) (*keys.Key, error) {
	return s.resolve(ctx, s.db, ref)
}

// Find returns the key that token is a secret of.
func (s *SQLite) Find(ctx context.Context, token string) (*keys.Key, error) {
	if _, err := apikey.Parse(token); err != nil {
		return nil, fmt.Errorf("%w: %w", keys.ErrInvalid, err)
	}
	digest := apikey.Digest(token, s.pepper)
	var stored []byte
	var keyID string
	err := s.db.QueryRowContext(ctx, `SELECT digest, key_id FROM secrets WHERE digest = ?`, digest).Scan(&stored, &keyID)
	if errors.Is(err, sql.ErrNoRows) || err == nil && !apikey.Equal(stored, digest) {
		return nil, fmt.Errorf("key %w", keys.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return s.resolve(ctx, s.db, keyID)
}

// List returns the keys that match f, newest first.
func (s *SQLite) List(ctx context.Context, f keys.ListFilter) ([]*keys.Key, error) {
	query := `SELECT ` + keyColumns + ` FROM keys k ` + usageJoin
	if !f.All && f.Status != keys.Revoked {
		query += ` WHERE k.status <> 'revoked'`
	}
	rows, err := s.db.QueryContext(ctx, query+` ORDER BY k.created_at DESC, k.rowid DESC`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	now := s.now()
	keys := []*keys.Key{}
	for rows.Next() {
		k, err := s.scanKey(rows)
		if err != nil {
			return nil, err
		}
		if f.Match(k, now) {
			keys = append(keys, k)
		}
	}
	return keys, rows.Err()
}

// change runs fn on the key ref resolves to, inside one transaction, refusing
// revoked keys; audits what changed (with extra details), and returns the
// key as it is afterwards.
func (s *SQLite) change(ctx context.Context, ref, action string, extra map[string]keys.Change,
	fn func(tx *sql.Tx, k *keys.Key, now int64) error) (*keys.Key, error) {
	var out *keys.Key
	err := s.tx(ctx, func(tx *sql.Tx) error {
		k, err := s.resolve(ctx, tx, ref)
		if err != nil {
			return err
		}
		if k.Status == keys.Revoked {
			return fmt.Errorf("key %q (%s) %w", k.Name, k.ID, keys.ErrRevoked)
		}
		if err := fn(tx, k, s.now().Unix()); err != nil {
			return err
		}
		if out, err = s.resolve(ctx, tx, k.ID); err != nil {
			return err
		}
		changes := keys.Diff(k, out)
		if len(changes) == 0 {
			return nil // nothing changed, nothing to audit
		}
		maps.Copy(changes, extra)
		return s.appendAudit(ctx, tx, action, out, changes)
	})
	return out, err
}

// Update changes a key's settings.
func (s *SQLite) Update(ctx context.Context, ref string, p keys.UpdateParams) (*keys.Key, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return s.change(ctx, ref, keys.ActionUpdate, nil, func(tx *sql.Tx, k *keys.Key, now int64) error {
		if p.Name != nil && *p.Name != k.Name {
			if used, err := s.nameInUse(ctx, tx, *p.Name); err != nil {
				return err
			} else if used {
				return fmt.Errorf("name %q is already in use by another key: %w", *p.Name, keys.ErrConflict)
			}
		}
		u := p.Apply(k)
		var rateCount, rateUnit any
		if u.RateLimit != nil {
			rateCount, rateUnit = u.RateLimit.Count, u.RateLimit.Unit
		}
		_, err := tx.ExecContext(ctx, `UPDATE keys SET name = ?, description = ?, scopes = ?, expires_at = ?,
			allowed_ips = ?, quota = ?, quota_remaining = ?, rate_count = ?, rate_unit = ?, metadata = ?,
			updated_at = ? WHERE id = ?`,
			u.Name, u.Description, mustJSON(u.Scopes), toUnix(u.ExpiresAt), mustJSON(u.AllowedIPs),
			ptrValue(u.Quota), ptrValue(u.QuotaRemaining), rateCount, rateUnit, mustJSON(u.Metadata), now, k.ID)
		return err
	})
}

func ptrValue(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

// Rotate gives a key a new secret. The current secret, and any still in a
// grace period, end at now+grace at the latest.
func (s *SQLite) Rotate(ctx context.Context, ref string, grace time.Duration) (*keys.Key, string, error) {
	var token string
	k, err := s.RotateDelivered(ctx, ref, grace, func(_ *keys.Key, secret string) error {
		token = secret
		return nil
	})
	return k, token, err
}

// RotateDelivered rotates a key and calls deliver with the new secret
// inside the transaction, before the commit: when deliver fails, the key
// keeps the secrets it had.
func (s *SQLite) RotateDelivered(ctx context.Context, ref string, grace time.Duration, deliver keys.Deliver) (*keys.Key, error) {
	if grace < 0 {
		return nil, fmt.Errorf("%w: grace period %s is negative", keys.ErrInvalid, grace)
	}
	var token string
	extra := map[string]keys.Change{"grace": {To: keys.FormatDuration(grace)}}
	k, err := s.change(ctx, ref, keys.ActionRotate, extra, func(tx *sql.Tx, k *keys.Key, now int64) error {
		var digest []byte
		var start string
		var err error
		if token, digest, start, err = s.newSecret(k.Prefix, k.Env); err != nil {
			return err
		}
		end := now + int64(grace/time.Second)
		if err := s.recordRotation(ctx, tx, k, digest, end, now); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE secrets SET ends_at = ?
			WHERE key_id = ? AND (ends_at IS NULL OR ends_at > ?)`, end, k.ID, end); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO secrets (digest, key_id, start, created_at) VALUES (?, ?, ?, ?)`,
			digest, k.ID, start, now); err != nil {
			return err
		}
		if _, err = tx.ExecContext(ctx, `UPDATE keys SET start = ?, rotated_at = ?, updated_at = ? WHERE id = ?`,
			start, now, now, k.ID); err != nil {
			return err
		}
		rotated, err := s.resolve(ctx, tx, k.ID)
		if err != nil {
			return err
		}
		return deliver(rotated, token)
	})
	if err != nil {
		return nil, err
	}
	return k, nil
}

// SetDisabled disables or enables a key; asking for the state it is in
// changes nothing.
func (s *SQLite) SetDisabled(ctx context.Context, ref string, disabled bool) (*keys.Key, error) {
	from, to, action := keys.Disabled, keys.Active, keys.ActionEnable
	if disabled {
		from, to, action = keys.Active, keys.Disabled, keys.ActionDisable
	}
	return s.change(ctx, ref, action, nil, func(tx *sql.Tx, k *keys.Key, now int64) error {
		_, err := tx.ExecContext(ctx, `UPDATE keys SET status = ?, updated_at = ? WHERE id = ? AND status = ?`,
			to, now, k.ID, from)
		return err
	})
}

// Revoke revokes a key for good. A revoked key is returned as it is.
func (s *SQLite) Revoke(ctx context.Context, ref, reason string) (*keys.Key, error) {
	var out *keys.Key
	err := s.tx(ctx, func(tx *sql.Tx) error {
		k, err := s.resolve(ctx, tx, ref)
		if err != nil {
			return err
		}
		if k.Status == keys.Revoked {
			out = k
			return nil
		}
		now := s.now().Unix()
		if _, err := tx.ExecContext(ctx, `UPDATE keys SET status = 'revoked', revoked_at = ?, revoke_reason = ?,
			updated_at = ? WHERE id = ?`, now, reason, now, k.ID); err != nil {
			return err
		}
		if out, err = s.resolve(ctx, tx, k.ID); err != nil {
			return err
		}
		return s.appendAudit(ctx, tx, keys.ActionRevoke, out, keys.Diff(k, out))
	})
	return out, err
}
