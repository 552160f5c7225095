package postgres

import (
	"context"
	"errors"
	"fmt"
	"maps"
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

// resolve finds the key ref names: by id first, else the key of that name
// that is not revoked, else the one of that name revoked most recently.
// lock takes the key's row for the rest of the transaction.
func (p *Postgres) resolve(ctx context.Context, q querier, ref string, lock bool) (*keys.Key, error) {
	suffix := ""
	if lock {
		suffix = ` FOR NO KEY UPDATE OF k`
	}
	k, err := p.scanKey(q.QueryRow(ctx, `SELECT `+keyColumns+keyFrom+`WHERE k.id = $1`+suffix, ref))
	if errors.Is(err, pgx.ErrNoRows) {
		k, err = p.scanKey(q.QueryRow(ctx, `SELECT `+keyColumns+keyFrom+`WHERE k.name = $1
			ORDER BY k.status = 'revoked', k.revoked_at DESC NULLS LAST, k.seq DESC LIMIT 1`+suffix, ref))
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("key %q %w", ref, keys.ErrNotFound)
	}
	return k, err
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

// Create issues a key.
func (p *Postgres) Create(ctx context.Context, c keys.CreateParams) (*keys.Key, string, error) {
	var token string
	k, err := p.CreateDelivered(ctx, c, func(_ *keys.Key, secret string) error {
		token = secret
		return nil
	})
	return k, token, err
}

// CreateDelivered issues a key and calls deliver with its secret inside
// the transaction, after every write and before the commit: when deliver
// fails, nothing is committed. (A transaction that delivered is never run
// again: a deadlock then fails the call rather than deliver twice.)
func (p *Postgres) CreateDelivered(ctx context.Context, c keys.CreateParams, deliver keys.Deliver) (*keys.Key, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.CreatedBy == "" {
		c.CreatedBy = keys.ActorFrom(ctx).Name
	}
	id, err := keys.NewID()
	if err != nil {
		return nil, err
	}
	token, digest, start, err := p.newSecret(c.Prefix, c.Env)
	if err != nil {
		return nil, err
	}
	meta := c.Metadata
	if meta == nil {
		meta = map[string]string{}
	}
	rateCount, rateUnit := rateParts(c.RateLimit)
	var k *keys.Key
	err = p.txOnce(ctx, func(tx pgx.Tx) error {
		now := p.stamp()
		name := c.Name
		if name == "" {
			if name, err = keys.GenerateName(func(n string) (bool, error) { return nameInUse(ctx, tx, n) }); err != nil {
				return err
			}
		} else if used, err := nameInUse(ctx, tx, name); err != nil {
			return err
		} else if used {
			return fmt.Errorf("name %q is already in use by another key: %w", name, keys.ErrConflict)
		}
		_, err := tx.Exec(ctx, `INSERT INTO keys (id, name, description, prefix, env, start, status,
			scopes, allowed_ips, metadata, expires_at, quota, quota_remaining, rate_count, rate_unit,
			created_at, created_by, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $8, $9, $10, $11, $11, $12, $13, $14, $15, $14)`,
			id, name, c.Description, c.Prefix, string(c.Env), start, keys.NormalizeSet(c.Scopes),
			keys.NormalizeSet(c.AllowedIPs), meta, c.ExpiresAt, c.Quota, rateCount, rateUnit, now, c.CreatedBy)
		if err != nil {
			return nameTaken(err, name)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO secrets (digest, key_id, start, created_at) VALUES ($1, $2, $3, $4)`,
			digest, id, start, now); err != nil {
			return err
		}
		if k, err = p.resolve(ctx, tx, id, false); err != nil {
			return err
		}
		if err := p.appendAudit(ctx, tx, keys.ActionCreate, k, keys.Diff(nil, k)); err != nil {
			return err
		}
		return deliver(k, token)
	})
	if err != nil {
		return nil, err
	}
	return k, nil
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
	k, err := p.resolve(ctx, p.pool, ref, false)
	return k, classify(err)
}

// Find returns the key that token is a secret of.
func (p *Postgres) Find(ctx context.Context, token string) (*keys.Key, error) {
	if _, err := apikey.Parse(token); err != nil {
		return nil, fmt.Errorf("%w: %w", keys.ErrInvalid, err)
	}
	digest := apikey.Digest(token, p.pepper)
	var stored []byte
	var keyID string
	err := p.pool.QueryRow(ctx, `SELECT digest, key_id FROM secrets WHERE digest = $1`, digest).Scan(&stored, &keyID)
	if errors.Is(err, pgx.ErrNoRows) || err == nil && !apikey.Equal(stored, digest) {
		return nil, fmt.Errorf("key %w", keys.ErrNotFound)
	}
	if err != nil {
		return nil, classify(err)
	}
	return p.Get(ctx, keyID)
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

// change runs fn on the key ref resolves to, its row locked, inside one
// transaction, refusing revoked keys; audits what changed (with extra
// details), and returns the key as it is afterwards.
func (p *Postgres) change(ctx context.Context, ref, action string, extra map[string]keys.Change,
	fn func(tx pgx.Tx, k *keys.Key, now time.Time) error) (*keys.Key, error) {
	return p.changeThen(ctx, ref, action, extra, fn, nil)
}

// changeThen is change, calling last with the changed key as the
// transaction's last step before the commit (a secret's delivery); such a
// transaction is not run again after a deadlock.
func (p *Postgres) changeThen(ctx context.Context, ref, action string, extra map[string]keys.Change,
	fn func(tx pgx.Tx, k *keys.Key, now time.Time) error, last func(*keys.Key) error) (*keys.Key, error) {
	var out *keys.Key
	run := p.tx
	if last != nil {
		run = p.txOnce
	}
	err := run(ctx, func(tx pgx.Tx) error {
		k, err := p.resolve(ctx, tx, ref, true)
		if err != nil {
			return err
		}
		if k.Status == keys.Revoked {
			return fmt.Errorf("key %q (%s) %w", k.Name, k.ID, keys.ErrRevoked)
		}
		if err := fn(tx, k, p.stamp()); err != nil {
			return err
		}
		if out, err = p.resolve(ctx, tx, k.ID, false); err != nil {
			return err
		}
		changes := keys.Diff(k, out)
		if len(changes) > 0 { // nothing changed, nothing to audit
			maps.Copy(changes, extra)
			if err := p.appendAudit(ctx, tx, action, out, changes); err != nil {
				return err
			}
		}
		if last != nil {
			return last(out)
		}
		return nil
	})
	if err == nil {
		p.changed(out.ID)
	}
	return out, err
}

// Update changes a key's settings.
func (p *Postgres) Update(ctx context.Context, ref string, up keys.UpdateParams) (*keys.Key, error) {
	if err := up.Validate(); err != nil {
		return nil, err
	}
	return p.change(ctx, ref, keys.ActionUpdate, nil, func(tx pgx.Tx, k *keys.Key, now time.Time) error {
		if up.Name != nil && *up.Name != k.Name {
			if used, err := nameInUse(ctx, tx, *up.Name); err != nil {
				return err
			} else if used {
				return fmt.Errorf("name %q is already in use by another key: %w", *up.Name, keys.ErrConflict)
			}
		}
		u := up.Apply(k)
		rateCount, rateUnit := rateParts(u.RateLimit)
		_, err := tx.Exec(ctx, `UPDATE keys SET name = $1, description = $2, scopes = $3, expires_at = $4,
			allowed_ips = $5, quota = $6, quota_remaining = $7, rate_count = $8, rate_unit = $9, metadata = $10,
			updated_at = $11 WHERE id = $12`,
			u.Name, u.Description, u.Scopes, u.ExpiresAt, u.AllowedIPs, u.Quota, u.QuotaRemaining,
			rateCount, rateUnit, u.Metadata, now, k.ID)
		return nameTaken(err, u.Name)
	})
}

// Rotate gives a key a new secret. The current secret, and any still in a
// grace period, end at now+grace at the latest.
func (p *Postgres) Rotate(ctx context.Context, ref string, grace time.Duration) (*keys.Key, string, error) {
	var token string
	k, err := p.RotateDelivered(ctx, ref, grace, func(_ *keys.Key, secret string) error {
		token = secret
		return nil
	})
	return k, token, err
}

// RotateDelivered rotates a key and calls deliver with the new secret
// inside the transaction, before the commit: when deliver fails, the key
// keeps the secrets it had.
func (p *Postgres) RotateDelivered(ctx context.Context, ref string, grace time.Duration, deliver keys.Deliver) (*keys.Key, error) {
	if grace < 0 {
		return nil, fmt.Errorf("%w: grace period %s is negative", keys.ErrInvalid, grace)
	}
	var token string
	extra := map[string]keys.Change{"grace": {To: keys.FormatDuration(grace)}}
	return p.changeThen(ctx, ref, keys.ActionRotate, extra, func(tx pgx.Tx, k *keys.Key, now time.Time) error {
		var digest []byte
		var start string
		var err error
		if token, digest, start, err = p.newSecret(k.Prefix, k.Env); err != nil {
			return err
		}
		end := now.Add(grace.Truncate(time.Second))
		if err := recordRotation(ctx, tx, k, digest, end, now); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE secrets SET ends_at = $1
			WHERE key_id = $2 AND (ends_at IS NULL OR ends_at > $1)`, end, k.ID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO secrets (digest, key_id, start, created_at) VALUES ($1, $2, $3, $4)`,
			digest, k.ID, start, now); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE keys SET start = $1, rotated_at = $2, updated_at = $2 WHERE id = $3`, start, now, k.ID)
		return err
	}, func(k *keys.Key) error { return deliver(k, token) })
}

// SetDisabled disables or enables a key; asking for the state it is in
// changes nothing.
func (p *Postgres) SetDisabled(ctx context.Context, ref string, disabled bool) (*keys.Key, error) {
	from, to, action := keys.Disabled, keys.Active, keys.ActionEnable
	if disabled {
		from, to, action = keys.Active, keys.Disabled, keys.ActionDisable
	}
	return p.change(ctx, ref, action, nil, func(tx pgx.Tx, k *keys.Key, now time.Time) error {
		_, err := tx.Exec(ctx, `UPDATE keys SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4`,
			string(to), now, k.ID, string(from))
		return err
	})
}

// Revoke revokes a key for good. A revoked key is returned as it is.
func (p *Postgres) Revoke(ctx context.Context, ref, reason string) (*keys.Key, error) {
	var out *keys.Key
	err := p.tx(ctx, func(tx pgx.Tx) error {
		k, err := p.resolve(ctx, tx, ref, true)
		if err != nil {
			return err
		}
		if k.Status == keys.Revoked {
			out = k
			return nil
		}
		now := p.stamp()
		if _, err := tx.Exec(ctx, `UPDATE keys SET status = 'revoked', revoked_at = $1, revoke_reason = $2,
			updated_at = $1 WHERE id = $3`, now, reason, k.ID); err != nil {
			return err
		}
		if out, err = p.resolve(ctx, tx, k.ID, false); err != nil {
			return err
		}
		return p.appendAudit(ctx, tx, keys.ActionRevoke, out, keys.Diff(k, out))
	})
	if err == nil {
		p.changed(out.ID)
	}
	return out, err
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
