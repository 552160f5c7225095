package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/keyctl/keyctl/apikey"
	"github.com/keyctl/keyctl/store/keys"
)

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
	p, err := p.Normalize(s.now())
	if err != nil {
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
	var rateCount, rateUnit any
	if p.RateLimit != nil {
		rateCount, rateUnit = p.RateLimit.Count, p.RateLimit.Unit
	}
	m, err := s.mutate(ctx, mutation{
		create: true,
		plan: func(*keys.Key, *secretRow, int64) (step, error) {
			return step{action: keys.ActionCreate, after: &keys.Key{Name: p.Name, Scopes: p.Scopes, Env: p.Env, Prefix: p.Prefix}}, nil
		},
		write: func(tx *sql.Tx, c change) (string, error) {
			name := p.Name
			if name == "" {
				if name, err = s.generateName(ctx, tx); err != nil {
					return "", err
				}
			} else if used, err := s.nameInUse(ctx, tx, name); err != nil {
				return "", err
			} else if used {
				return "", fmt.Errorf("name %q is already in use by another key: %w", name, keys.ErrConflict)
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO keys (id, name, description, prefix, env, start, status,
				scopes, allowed_ips, metadata, expires_at, quota, quota_remaining, rate_count, rate_unit,
				created_at, created_by, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'active', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				id, name, p.Description, p.Prefix, p.Env, start, mustJSON(p.Scopes), mustJSON(p.AllowedIPs),
				mustJSON(p.Metadata), toUnix(p.ExpiresAt), ptrValue(p.Quota), ptrValue(p.Quota), rateCount, rateUnit,
				c.now, p.CreatedBy, c.now)
			if err != nil {
				return "", err
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO secrets (digest, key_id, start, created_at) VALUES (?, ?, ?, ?)`,
				digest, id, start, c.now)
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
func (s *SQLite) Update(ctx context.Context, ref string, p keys.UpdateParams) (*keys.Key, error) {
	p, err := p.Normalize(s.now())
	if err != nil {
		return nil, err
	}
	m, err := s.mutate(ctx, mutation{
		ref: ref,
		plan: func(before *keys.Key, _ *secretRow, _ int64) (step, error) {
			after := p.Apply(before)
			return step{action: keys.ActionUpdate, after: &after}, after.CheckLimits()
		},
		write: func(tx *sql.Tx, c change) (string, error) {
			before, u := c.before, c.after
			if u.Name != before.Name {
				if used, err := s.nameInUse(ctx, tx, u.Name); err != nil {
					return "", err
				} else if used {
					return "", fmt.Errorf("name %q is already in use by another key: %w", u.Name, keys.ErrConflict)
				}
			}
			var rateCount, rateUnit any
			if u.RateLimit != nil {
				rateCount, rateUnit = u.RateLimit.Count, u.RateLimit.Unit
			}
			_, err := tx.ExecContext(ctx, `UPDATE keys SET name = ?, description = ?, scopes = ?, expires_at = ?,
				allowed_ips = ?, quota = ?, quota_remaining = ?, rate_count = ?, rate_unit = ?, metadata = ?,
				updated_at = ? WHERE id = ?`,
				u.Name, u.Description, mustJSON(u.Scopes), toUnix(u.ExpiresAt), mustJSON(u.AllowedIPs),
				ptrValue(u.Quota), ptrValue(u.QuotaRemaining), rateCount, rateUnit, mustJSON(u.Metadata), c.now, before.ID)
			return before.ID, err
		},
	})
	return m.key, err
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
	if grace < 0 || grace > keys.MaxGrace {
		return nil, fmt.Errorf("%w: grace period %s is not from 0 to %s", keys.ErrInvalid, grace, keys.FormatDuration(keys.MaxGrace))
	}
	var token string
	m, err := s.mutate(ctx, mutation{
		ref:  ref,
		plan: fixed(keys.ActionRotate, map[string]keys.Change{"grace": {To: keys.FormatDuration(grace)}}),
		write: func(tx *sql.Tx, c change) (string, error) {
			k, now := c.before, c.now
			var digest []byte
			var start string
			var err error
			if token, digest, start, err = s.newSecret(k.Prefix, k.Env); err != nil {
				return "", err
			}
			end := now + int64(grace/time.Second)
			if err := s.recordRotation(ctx, tx, k, digest, end, now); err != nil {
				return "", err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE secrets SET ends_at = ?
				WHERE key_id = ? AND (ends_at IS NULL OR ends_at > ?)`, end, k.ID, end); err != nil {
				return "", err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO secrets (digest, key_id, start, created_at) VALUES (?, ?, ?, ?)`,
				digest, k.ID, start, now); err != nil {
				return "", err
			}
			_, err = tx.ExecContext(ctx, `UPDATE keys SET start = ?, rotated_at = ?, updated_at = ? WHERE id = ?`,
				start, now, now, k.ID)
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
func (s *SQLite) SetDisabled(ctx context.Context, ref string, disabled bool) (*keys.Key, error) {
	from, to, action := keys.Disabled, keys.Active, keys.ActionEnable
	if disabled {
		from, to, action = keys.Active, keys.Disabled, keys.ActionDisable
	}
	m, err := s.mutate(ctx, mutation{
		ref:  ref,
		plan: fixed(action, nil),
		write: func(tx *sql.Tx, c change) (string, error) {
			_, err := tx.ExecContext(ctx, `UPDATE keys SET status = ?, updated_at = ? WHERE id = ? AND status = ?`,
				to, c.now, c.before.ID, from)
			return c.before.ID, err
		},
	})
	return m.key, err
}

// Revoke revokes a key for good. A revoked key is returned as it is.
func (s *SQLite) Revoke(ctx context.Context, ref, reason string) (*keys.Key, error) {
	if err := keys.CheckText("revoke reason", reason, keys.MaxReason); err != nil {
		return nil, err
	}
	m, err := s.mutate(ctx, mutation{ref: ref, plan: fixed(keys.ActionRevoke, nil), write: s.revoke(ctx, reason)})
	return m.key, err
}

// revoke writes a key's revocation, unless it is revoked already.
func (s *SQLite) revoke(ctx context.Context, reason string) func(*sql.Tx, change) (string, error) {
	return func(tx *sql.Tx, c change) (string, error) {
		_, err := tx.ExecContext(ctx, `UPDATE keys SET status = 'revoked', revoked_at = ?, revoke_reason = ?,
			updated_at = ? WHERE id = ? AND status <> 'revoked'`, c.now, reason, c.now, c.before.ID)
		return c.before.ID, err
	}
}

// RevokeSecret kills one secret, on the authority of whoever presents it: a
// key's current secret revokes the key; an old secret still in its grace
// stops working now, and the key's current secret stays healthy; a secret
// that works no more, or that no key has, changes nothing.
func (s *SQLite) RevokeSecret(ctx context.Context, token, reason string) (*keys.SecretRevocation, error) {
	if err := keys.CheckText("revoke reason", reason, keys.MaxReason); err != nil {
		return nil, err
	}
	if _, err := apikey.Parse(token); err != nil {
		return nil, fmt.Errorf("%w: %w", keys.ErrInvalid, err)
	}
	m, err := s.mutate(ctx, mutation{
		ref: token, bySecret: true,
		plan: func(k *keys.Key, sec *secretRow, now int64) (step, error) {
			switch {
			case k.Stored == keys.Revoked:
				return step{}, nil
			case sec.endsAt == nil:
				return step{action: keys.ActionRevoke, after: k}, nil
			case sec.endsAt.Unix() > now:
				return step{action: keys.ActionEndGrace, after: k, extra: map[string]keys.Change{
					"secret":         {From: sec.start, To: nil},
					"secret_ends_at": {From: sec.endsAt.Format(time.RFC3339), To: time.Unix(now, 0).UTC().Format(time.RFC3339)},
				}}, nil
			}
			return step{}, nil // rotated out: it works no more
		},
		write: func(tx *sql.Tx, c change) (string, error) {
			if c.action == keys.ActionEndGrace {
				if _, err := tx.ExecContext(ctx, `UPDATE secrets SET ends_at = ? WHERE digest = ?`, c.now, c.sec.digest); err != nil {
					return "", err
				}
				// An undone rotation would bring the ended secret back.
				_, err := tx.ExecContext(ctx, `DELETE FROM rotations WHERE key_id = ?`, c.before.ID)
				return c.before.ID, err
			}
			return s.revoke(ctx, reason)(tx, c)
		},
	})
	if errors.Is(err, keys.ErrNotFound) {
		tok, _ := apikey.Parse(token)
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
		r.EndedAt = timeAt(s.now())
	default:
		r.Outcome = keys.SecretDead
		if m.key.Stored == keys.Revoked && (r.EndedAt == nil || m.key.RevokedAt.Before(*r.EndedAt)) {
			r.EndedAt = m.key.RevokedAt
		}
	}
	return r, nil
}

func timeAt(t time.Time) *time.Time {
	t = t.UTC().Truncate(time.Second)
	return &t
}
