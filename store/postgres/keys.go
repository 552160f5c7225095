package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keyctl/keyctl/apikey"
	"github.com/keyctl/keyctl/store/keys"
)

// keyColumns are the columns scanKey reads, in its order, from keys as k
// and key_usage as u.
const keyColumns = `k.id, k.name, k.description, k.prefix, k.env, k.start, k.status, k.scopes,
	k.allowed_ips, k.metadata, k.expires_at, k.quota, k.quota_remaining, k.rate_count, k.rate_unit,
	coalesce(u.count, 0), u.last_used_at, coalesce(u.last_used_ip, ''),
	k.created_at, k.created_by, k.updated_at, k.rotated_at, k.revoked_at, k.revoke_reason`

// keyFrom joins a key's usage to it.
const keyFrom = ` FROM keys k LEFT JOIN key_usage u ON u.key_id = k.id `

// querier is what the pool, a connection and a transaction have in common.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// keyDest returns the scan destinations of keyColumns for k, and a
// function that finishes k once they are filled.
func (p *Postgres) keyDest(k *keys.Key) ([]any, func()) {
	var rateCount *int64
	var rateUnit *string
	dest := []any{&k.ID, &k.Name, &k.Description, &k.Prefix, &k.Env, &k.Start, &k.Status,
		&k.Scopes, &k.AllowedIPs, &k.Metadata, &k.ExpiresAt, &k.Quota, &k.QuotaRemaining, &rateCount, &rateUnit,
		&k.UsageCount, &k.LastUsedAt, &k.LastUsedIP, &k.CreatedAt, &k.CreatedBy, &k.UpdatedAt, &k.RotatedAt,
		&k.RevokedAt, &k.RevokeReason}
	return dest, func() {
		if rateCount != nil && rateUnit != nil {
			k.RateLimit = &keys.RateLimit{Count: *rateCount, Unit: *rateUnit}
		}
		for _, t := range []*time.Time{k.ExpiresAt, k.LastUsedAt, k.RotatedAt, k.RevokedAt, &k.CreatedAt, &k.UpdatedAt} {
			if t != nil {
				*t = t.UTC()
			}
		}
		if k.Scopes == nil {
			k.Scopes = []string{}
		}
		if k.AllowedIPs == nil {
			k.AllowedIPs = []string{}
		}
		if k.Metadata == nil {
			k.Metadata = map[string]string{}
		}
		k.Stored = k.Status
		k.Status = keys.StatusAt(k.Status, k.ExpiresAt, p.now())
	}
}

func (p *Postgres) scanKey(row pgx.Row) (*keys.Key, error) {
	k := &keys.Key{}
	dest, finish := p.keyDest(k)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	finish()
	return k, nil
}

// Row locks a change takes: the key it changes, against any other change
// or spending of it; the acting key, against a change of its authority
// until the change commits.
const (
	lockUpdate = ` FOR NO KEY UPDATE OF k`
	lockShare  = ` FOR SHARE OF k`
)

// resolve finds the key ref names: by id first, else the key of that name
// that is not revoked, else the one of that name revoked most recently. A
// token-shaped ref is a secret given where a name was expected: it finds
// the key that secret belongs to, and is never shown whole. lock, when
// set, is the row lock to take on it.
func (p *Postgres) resolve(ctx context.Context, q querier, ref, lock string) (*keys.Key, error) {
	if keys.LooksLikeToken(ref) {
		if k, _, err := p.bySecret(ctx, q, ref); !errors.Is(err, keys.ErrNotFound) {
			if err == nil && lock != "" {
				return p.byID(ctx, q, k.ID, lock)
			}
			return k, err
		}
	}
	k, err := p.byID(ctx, q, ref, lock)
	if errors.Is(err, keys.ErrNotFound) {
		k, err = p.scanKey(q.QueryRow(ctx, `SELECT `+keyColumns+keyFrom+`WHERE k.name = $1
			ORDER BY k.status = 'revoked', k.revoked_at DESC NULLS LAST, k.seq DESC LIMIT 1`+lock, ref))
		if errors.Is(err, pgx.ErrNoRows) {
			err = fmt.Errorf("key %q %w", keys.Redact(ref), keys.ErrNotFound)
		}
	}
	return k, err
}

// byID finds the key of an id, and no other, taking lock on it when set.
func (p *Postgres) byID(ctx context.Context, q querier, id, lock string) (*keys.Key, error) {
	k, err := p.scanKey(q.QueryRow(ctx, `SELECT `+keyColumns+keyFrom+`WHERE k.id = $1`+lock, id))
	if errors.Is(err, pgx.ErrNoRows) {
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
func (p *Postgres) bySecret(ctx context.Context, q querier, token string) (*keys.Key, *secretRow, error) {
	notFound := fmt.Errorf("key %s %w", keys.Redact(token), keys.ErrNotFound)
	if _, err := apikey.Parse(token); err != nil {
		return nil, nil, notFound
	}
	digest := apikey.Digest(token, p.pepper)
	sec := &secretRow{}
	err := q.QueryRow(ctx, `SELECT digest, key_id, start, ends_at FROM secrets WHERE digest = $1`, digest).
		Scan(&sec.digest, &sec.keyID, &sec.start, &sec.endsAt)
	if errors.Is(err, pgx.ErrNoRows) || err == nil && !apikey.Equal(sec.digest, digest) {
		return nil, nil, notFound
	}
	if err != nil {
		return nil, nil, err
	}
	if sec.endsAt != nil {
		*sec.endsAt = sec.endsAt.UTC()
	}
	p.pepperProven()
	k, err := p.byID(ctx, q, sec.keyID, "")
	return k, sec, err
}

func nameInUse(ctx context.Context, tx pgx.Tx, name string) (bool, error) {
	var used bool
	err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM keys WHERE name = $1 AND status <> 'revoked')`, name).Scan(&used)
	return used, err
}

func (p *Postgres) newSecret(prefix string, env keys.Env) (token string, digest []byte, start string, err error) {
	tok, err := apikey.New(prefix, env.Tag())
	if err != nil {
		return "", nil, "", fmt.Errorf("%w: %w", keys.ErrInvalid, err)
	}
	token = tok.String()
	return token, apikey.Digest(token, p.pepper), tok.Start(), nil
}

// stamp is the time a change is recorded at: whole seconds, as keys'
// times are shown.
func (p *Postgres) stamp() time.Time { return p.now().UTC().Truncate(time.Second) }

func rateParts(r *keys.RateLimit) (count *int64, unit *string) {
	if r == nil {
		return nil, nil
	}
	return &r.Count, &r.Unit
}

// nameTaken turns the unique index's refusal, when another replica took
// the name between the check and the insert, into the same conflict.
func nameTaken(err error, name string) error {
	if errors.Is(classify(err), keys.ErrConflict) {
		return fmt.Errorf("name %q is already in use by another key: %w", name, keys.ErrConflict)
	}
	return err
}

// Get resolves ref to a key.
func (p *Postgres) Get(ctx context.Context, ref string) (*keys.Key, error) {
	k, err := p.resolve(ctx, p.pool, ref, "")
	return k, classify(err)
}

// Find returns the key that token is a secret of.
func (p *Postgres) Find(ctx context.Context, token string) (*keys.Key, error) {
	k, _, err := p.FindSecret(ctx, token)
	return k, err
}

// FindSecret returns the key that token is a secret of, and the secret's own
// state: current, or old with the end of its grace.
func (p *Postgres) FindSecret(ctx context.Context, token string) (*keys.Key, keys.SecretState, error) {
	if _, err := apikey.Parse(token); err != nil {
		return nil, keys.SecretState{}, fmt.Errorf("%w: %w", keys.ErrInvalid, err)
	}
	k, sec, err := p.bySecret(ctx, p.pool, token)
	if err != nil {
		return nil, keys.SecretState{}, classify(err)
	}
	return k, keys.SecretState{Current: sec.endsAt == nil, EndsAt: sec.endsAt}, nil
}

// List returns the keys that match f, newest first.
func (p *Postgres) List(ctx context.Context, f keys.ListFilter) ([]*keys.Key, error) {
	query := `SELECT ` + keyColumns + keyFrom
	if !f.All && f.Status != keys.Revoked {
		query += ` WHERE k.status <> 'revoked'`
	}
	rows, err := p.pool.Query(ctx, query+` ORDER BY k.created_at DESC, k.seq DESC`)
	if err != nil {
		return nil, classify(err)
	}
	defer rows.Close()
	now := p.now()
	out := []*keys.Key{}
	for rows.Next() {
		k, err := p.scanKey(rows)
		if err != nil {
			return nil, err
		}
		if f.Match(k, now) {
			out = append(out, k)
		}
	}
	return out, classify(rows.Err())
}

// changed drops what this replica's cache holds of a key it has just
// changed, once the change is committed: its own next check sees the
// change without waiting for the notification, which tells the others.
func (p *Postgres) changed(keyID string) {
	p.fastMu.Lock()
	v := p.fast
	p.fastMu.Unlock()
	if v != nil {
		v.cache.changed(keyID)
	}
}
