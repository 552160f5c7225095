package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
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
// that is not revoked, else the one of that name revoked most recently. A
// token-shaped ref is a secret given where a name was expected: it finds
// the key that secret belongs to, and is never shown whole.
func (s *SQLite) resolve(ctx context.Context, q querier, ref string) (*keys.Key, error) {
	if keys.LooksLikeToken(ref) {
		if k, _, err := s.bySecret(ctx, q, ref); !errors.Is(err, keys.ErrNotFound) {
			return k, err
		}
	}
	k, err := s.byID(ctx, q, ref)
	if errors.Is(err, keys.ErrNotFound) {
		k, err = s.scanKey(q.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM keys k `+usageJoin+` WHERE k.name = ?
			ORDER BY k.status = 'revoked', k.revoked_at DESC, k.rowid DESC LIMIT 1`, ref))
		if errors.Is(err, sql.ErrNoRows) {
			err = fmt.Errorf("key %q %w", keys.Redact(ref), keys.ErrNotFound)
		}
	}
	return k, err
}

// byID finds the key of an id, and no other.
func (s *SQLite) byID(ctx context.Context, q querier, id string) (*keys.Key, error) {
	k, err := s.scanKey(q.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM keys k `+usageJoin+` WHERE k.id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("key %q %w", keys.Redact(id), keys.ErrNotFound)
	}
	return k, err
}

// secretRow is a stored secret: its key, its display start, and when it
// ends (nil for the key's current secret).
type secretRow struct {
	digest []byte
	keyID  string
	start  string
	endsAt *time.Time
}

// bySecret finds the key a token is a secret of (any of its secrets, live
// or not), and that secret. A token that is not one is never shown whole.
func (s *SQLite) bySecret(ctx context.Context, q querier, token string) (*keys.Key, *secretRow, error) {
	notFound := fmt.Errorf("key %s %w", keys.Redact(token), keys.ErrNotFound)
	if _, err := apikey.Parse(token); err != nil {
		return nil, nil, notFound
	}
	digest := apikey.Digest(token, s.pepper)
	sec := &secretRow{}
	var ends sql.NullInt64
	err := q.QueryRowContext(ctx, `SELECT digest, key_id, start, ends_at FROM secrets WHERE digest = ?`, digest).
		Scan(&sec.digest, &sec.keyID, &sec.start, &ends)
	if errors.Is(err, sql.ErrNoRows) || err == nil && !apikey.Equal(sec.digest, digest) {
		return nil, nil, notFound
	}
	if err != nil {
		return nil, nil, err
	}
	sec.endsAt = fromUnix(ends)
	s.pepperProven()
	k, err := s.byID(ctx, q, sec.keyID)
	return k, sec, err
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

// Get resolves ref to a key.
func (s *SQLite) Get(ctx context.Context, ref string) (*keys.Key, error) {
	return s.resolve(ctx, s.reads(), ref)
}

// Find returns the key that token is a secret of.
func (s *SQLite) Find(ctx context.Context, token string) (*keys.Key, error) {
	k, _, err := s.FindSecret(ctx, token)
	return k, err
}

// FindSecret returns the key that token is a secret of, and the secret's own
// state: current, or old with the end of its grace.
func (s *SQLite) FindSecret(ctx context.Context, token string) (*keys.Key, keys.SecretState, error) {
	if _, err := apikey.Parse(token); err != nil {
		return nil, keys.SecretState{}, fmt.Errorf("%w: %w", keys.ErrInvalid, err)
	}
	k, sec, err := s.bySecret(ctx, s.reads(), token)
	if err != nil {
		return nil, keys.SecretState{}, err
	}
	return k, keys.SecretState{Current: sec.endsAt == nil, EndsAt: sec.endsAt}, nil
}

// List returns the keys that match f, newest first.
func (s *SQLite) List(ctx context.Context, f keys.ListFilter) ([]*keys.Key, error) {
	query := `SELECT ` + keyColumns + ` FROM keys k ` + usageJoin
	if !f.All && f.Status != keys.Revoked {
		query += ` WHERE k.status <> 'revoked'`
	}
	rows, err := s.reads().QueryContext(ctx, query+` ORDER BY k.created_at DESC, k.rowid DESC`)
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
