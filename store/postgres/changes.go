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
	c, err := c.Normalize(p.now())
	if err != nil {
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
	rateCount, rateUnit := rateParts(c.RateLimit)
	m, err := p.mutate(ctx, mutation{
		create: true,
		plan: func(*keys.Key, *secretRow, time.Time) (step, error) {
			return step{action: keys.ActionCreate, after: &keys.Key{Name: c.Name, Scopes: c.Scopes, Env: c.Env, Prefix: c.Prefix}}, nil
		},
		write: func(tx pgx.Tx, ch change) (string, error) {
			name := c.Name
			if name == "" {
				var err error
				if name, err = keys.GenerateName(func(n string) (bool, error) { return nameInUse(ctx, tx, n) }); err != nil {
					return "", err
				}
			} else if used, err := nameInUse(ctx, tx, name); err != nil {
				return "", err
			} else if used {
				return "", fmt.Errorf("name %q is already in use by another key: %w", name, keys.ErrConflict)
			}
			_, err := tx.Exec(ctx, `INSERT INTO keys (id, name, description, prefix, env, start, status,
				scopes, allowed_ips, metadata, expires_at, quota, quota_remaining, rate_count, rate_unit,
				created_at, created_by, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $8, $9, $10, $11, $11, $12, $13, $14, $15, $14)`,
				id, name, c.Description, c.Prefix, string(c.Env), start, c.Scopes, c.AllowedIPs, c.Metadata, c.ExpiresAt,
				c.Quota, rateCount, rateUnit, ch.now, c.CreatedBy)
			if err != nil {
				return "", nameTaken(err, name)
			}
			_, err = tx.Exec(ctx, `INSERT INTO secrets (digest, key_id, start, created_at) VALUES ($1, $2, $3, $4)`,
				digest, id, start, ch.now)
			return id, err
		},
		last: func(k *keys.Key) error { return deliver(k, token) },
	})
	if err != nil {
		return nil, err
	}
	return m.key, nil
}

// Update changes a key's settings.
func (p *Postgres) Update(ctx context.Context, ref string, up keys.UpdateParams) (*keys.Key, error) {
	up, err := up.Normalize(p.now())
	if err != nil {
		return nil, err
	}
	m, err := p.mutate(ctx, mutation{
		ref: ref,
		plan: func(before *keys.Key, _ *secretRow, _ time.Time) (step, error) {
			after := up.Apply(before)
			return step{action: keys.ActionUpdate, after: &after}, after.CheckLimits()
		},
		write: func(tx pgx.Tx, c change) (string, error) {
			before, u := c.before, c.after
			if u.Name != before.Name {
				if used, err := nameInUse(ctx, tx, u.Name); err != nil {
					return "", err
				} else if used {
					return "", fmt.Errorf("name %q is already in use by another key: %w", u.Name, keys.ErrConflict)
				}
			}
			rateCount, rateUnit := rateParts(u.RateLimit)
			_, err := tx.Exec(ctx, `UPDATE keys SET name = $1, description = $2, scopes = $3, expires_at = $4,
				allowed_ips = $5, quota = $6, quota_remaining = $7, rate_count = $8, rate_unit = $9, metadata = $10,
				updated_at = $11 WHERE id = $12`,
				u.Name, u.Description, u.Scopes, u.ExpiresAt, u.AllowedIPs, u.Quota, u.QuotaRemaining,
				rateCount, rateUnit, u.Metadata, c.now, before.ID)
			return before.ID, nameTaken(err, u.Name)
		},
	})
	return m.key, err
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
	if grace < 0 || grace > keys.MaxGrace {
		return nil, fmt.Errorf("%w: grace period %s is not from 0 to %s", keys.ErrInvalid, grace, keys.FormatDuration(keys.MaxGrace))
	}
	var token string
	m, err := p.mutate(ctx, mutation{
		ref:  ref,
		plan: fixed(keys.ActionRotate, map[string]keys.Change{"grace": {To: keys.FormatDuration(grace)}}),
		write: func(tx pgx.Tx, c change) (string, error) {
			k, now := c.before, c.now
			var digest []byte
			var start string
			var err error
			if token, digest, start, err = p.newSecret(k.Prefix, k.Env); err != nil {
				return "", err
			}
			end := now.Add(grace.Truncate(time.Second))
			if err := recordRotation(ctx, tx, k, digest, end, now); err != nil {
				return "", err
			}
			if _, err := tx.Exec(ctx, `UPDATE secrets SET ends_at = $1
				WHERE key_id = $2 AND (ends_at IS NULL OR ends_at > $1)`, end, k.ID); err != nil {
				return "", err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO secrets (digest, key_id, start, created_at) VALUES ($1, $2, $3, $4)`,
				digest, k.ID, start, now); err != nil {
				return "", err
			}
			_, err = tx.Exec(ctx, `UPDATE keys SET start = $1, rotated_at = $2, updated_at = $2 WHERE id = $3`, start, now, k.ID)
			return k.ID, err
		},
		last: func(k *keys.Key) error { return deliver(k, token) },
	})
	if err != nil {
		return nil, err
	}
	return m.key, nil
}

// SetDisabled disables or enables a key; asking for the state it is in
// changes nothing.
func (p *Postgres) SetDisabled(ctx context.Context, ref string, disabled bool) (*keys.Key, error) {
	from, to, action := keys.Disabled, keys.Active, keys.ActionEnable
	if disabled {
		from, to, action = keys.Active, keys.Disabled, keys.ActionDisable
	}
	m, err := p.mutate(ctx, mutation{
		ref:  ref,
		plan: fixed(action, nil),
		write: func(tx pgx.Tx, c change) (string, error) {
			_, err := tx.Exec(ctx, `UPDATE keys SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4`,
				string(to), c.now, c.before.ID, string(from))
			return c.before.ID, err
		},
	})
	return m.key, err
}

// Revoke revokes a key for good. A revoked key is returned as it is.
func (p *Postgres) Revoke(ctx context.Context, ref, reason string) (*keys.Key, error) {
	if err := keys.CheckText("revoke reason", reason, keys.MaxReason); err != nil {
		return nil, err
	}
	m, err := p.mutate(ctx, mutation{ref: ref, plan: fixed(keys.ActionRevoke, nil), write: p.revoke(ctx, reason)})
	return m.key, err
}

// revoke writes a key's revocation, unless it is revoked already.
func (p *Postgres) revoke(ctx context.Context, reason string) func(pgx.Tx, change) (string, error) {
	return func(tx pgx.Tx, c change) (string, error) {
		_, err := tx.Exec(ctx, `UPDATE keys SET status = 'revoked', revoked_at = $1, revoke_reason = $2,
			updated_at = $1 WHERE id = $3 AND status <> 'revoked'`, c.now, reason, c.before.ID)
		return c.before.ID, err
	}
}

// RevokeSecret kills one secret, on the authority of whoever presents it: a
// key's current secret revokes the key; an old secret still in its grace
// stops working now, and the key's current secret stays healthy; a secret
// that works no more, or that no key has, changes nothing.
func (p *Postgres) RevokeSecret(ctx context.Context, token, reason string) (*keys.SecretRevocation, error) {
	if err := keys.CheckText("revoke reason", reason, keys.MaxReason); err != nil {
		return nil, err
	}
	tok, err := apikey.Parse(token)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", keys.ErrInvalid, err)
	}
	m, err := p.mutate(ctx, mutation{
		ref: token, bySecret: true,
		plan: func(k *keys.Key, sec *secretRow, now time.Time) (step, error) {
			switch {
			case k.Stored == keys.Revoked:
				return step{}, nil
			case sec.endsAt == nil:
				return step{action: keys.ActionRevoke, after: k}, nil
			case sec.endsAt.After(now):
				return step{action: keys.ActionEndGrace, after: k, extra: map[string]keys.Change{
					"secret":         {From: sec.start, To: nil},
					"secret_ends_at": {From: sec.endsAt.Format(time.RFC3339), To: now.Format(time.RFC3339)},
				}}, nil
			}
			return step{}, nil // rotated out: it works no more
		},
		write: func(tx pgx.Tx, c change) (string, error) {
			if c.action == keys.ActionEndGrace {
				if _, err := tx.Exec(ctx, `UPDATE secrets SET ends_at = $1 WHERE digest = $2`, c.now, c.sec.digest); err != nil {
					return "", err
				}
				// An undone rotation would bring the ended secret back.
				_, err := tx.Exec(ctx, `DELETE FROM rotations WHERE key_id = $1`, c.before.ID)
				return c.before.ID, err
			}
			return p.revoke(ctx, reason)(tx, c)
		},
	})
	if errors.Is(err, keys.ErrNotFound) {
		return &keys.SecretRevocation{Outcome: keys.SecretUnknown, Start: tok.Start()}, nil
	}
	if err != nil {
		return nil, err
	}
	r := &keys.SecretRevocation{Key: m.key, Start: m.secret.start, EndedAt: m.secret.endsAt}
	switch m.action {
	case keys.ActionRevoke:
		r.Outcome, r.EndedAt = keys.SecretRevoked, m.key.RevokedAt
	case keys.ActionEndGrace:
		r.Outcome = keys.SecretGraceEnded
		now := p.stamp()
		r.EndedAt = &now
	default:
		r.Outcome = keys.SecretDead
		if m.key.Stored == keys.Revoked && (r.EndedAt == nil || m.key.RevokedAt.Before(*r.EndedAt)) {
			r.EndedAt = m.key.RevokedAt
		}
	}
	return r, nil
}
