package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"

	"github.com/keyctl/keyctl/store/keys"
)

// Every change to a key goes through mutate, and mutate is the only code
// that writes a key: it resolves the target to one key once, reads the
// actor's authority by the actor's id, asks keys.Authorize about the key as
// it is and as it will be, writes, and audits, all in one transaction. A
// change added later states what it does (plan) and how (write); it cannot
// skip the check, nor check one key and change another.

// mutation is one change to one key.
type mutation struct {
	// ref names the key changed: an id, a name, or a secret; with create
	// there is none yet. With bySecret, ref is a secret, and presenting it
	// is the authority to revoke it (keys.Authority.HolderOf).
	ref      string
	create   bool
	bySecret bool
	// plan says, without writing, what the change will do to before (nil
	// for a new key), given the secret it was found by (bySecret).
	plan func(before *keys.Key, sec *secretRow, now int64) (step, error)
	// write makes the change c, and returns the id of the key it changed.
	// It may add to c.extra what only writing tells (how many secrets it
	// ended).
	write func(tx *sql.Tx, c change) (id string, err error)
	// last, when set, is the transaction's last step, after the audit
	// entry and before the commit, with the key as it is about to be
	// committed: a new secret's delivery, whose failure commits nothing.
	last func(after *keys.Key) error
}

// change is a change about to be written: the key as it is (nil when new)
// and as it will be, the secret it was found by (bySecret), the action, the
// audit entry's details beyond the key's fields, and the time, in Unix
// seconds.
type change struct {
	before, after *keys.Key
	sec           *secretRow
	action        string
	extra         map[string]keys.Change
	now           int64
}

// step is a change as planned: the action (empty: nothing to do), the key
// as it will be, and details for the audit entry beyond the key's fields.
type step struct {
	action string
	after  *keys.Key
	extra  map[string]keys.Change
}

// mutated is what a mutation did: the action taken (empty for none) and the
// key as it is afterwards.
type mutated struct {
	action string
	key    *keys.Key
	secret *secretRow
}

func (s *SQLite) mutate(ctx context.Context, m mutation) (mutated, error) {
	var out mutated
	if err := s.writable(); err != nil {
		return out, err
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		now := s.now().Unix()
		var before *keys.Key
		var sec *secretRow
		var auth keys.Authority
		var err error
		switch {
		case m.create:
		case m.bySecret:
			if before, sec, err = s.bySecret(ctx, tx, m.ref); err != nil {
				return err
			}
			auth = keys.Authority{HolderOf: before.ID}
		default:
			if before, err = s.resolve(ctx, tx, m.ref); err != nil {
				return err
			}
		}
		if !m.bySecret {
			if auth, err = s.authority(ctx, tx); err != nil {
				return err
			}
		}
		st, err := m.plan(before, sec, now)
		out = mutated{action: st.action, key: before, secret: sec}
		if err != nil || st.action == "" {
			return err
		}
		if err := keys.Authorize(auth, st.action, before, st.after); err != nil {
			return err
		}
		if before != nil && before.Stored == keys.Revoked && st.action != keys.ActionRevoke {
			return fmt.Errorf("key %q (%s) %w", before.Name, before.ID, keys.ErrRevoked)
		}
		if st.extra == nil {
			st.extra = map[string]keys.Change{}
		}
		id, err := m.write(tx, change{before: before, after: st.after, sec: sec, action: st.action, extra: st.extra, now: now})
		if err != nil {
			return err
		}
		if out.key, err = s.byID(ctx, tx, id); err != nil {
			return err
		}
		// A change that changed nothing is not audited.
		if changes := keys.Diff(before, out.key); len(changes) > 0 || len(st.extra) > 0 {
			maps.Copy(changes, st.extra)
			if err := s.appendAudit(ctx, tx, st.action, out.key, changes); err != nil {
				return err
			}
		}
		if m.last != nil {
			return m.last(out.key)
		}
		return nil
	})
	return out, err
}

// authority reads what the actor in ctx may do, inside the transaction of
// the change: the OS user may do anything; a key acts with its scopes as
// they are now, and only while it is active. Anything else may do nothing.
func (s *SQLite) authority(ctx context.Context, q querier) (keys.Authority, error) {
	a := keys.ActorFrom(ctx)
	switch a.Kind {
	case keys.ActorUser:
		return keys.Authority{Local: true}, nil
	case keys.ActorKey:
		k, err := s.byID(ctx, q, a.ID)
		if errors.Is(err, keys.ErrNotFound) {
			return keys.Authority{}, fmt.Errorf("%w: the acting key %s no longer exists", keys.ErrForbidden, a.ID)
		}
		if err != nil {
			return keys.Authority{}, err
		}
		if k.Status != keys.Active {
			return keys.Authority{}, fmt.Errorf("%w: the acting key %q is %s", keys.ErrForbidden, k.Name, k.Status)
		}
		return keys.Authority{Scopes: k.Scopes}, nil
	}
	return keys.Authority{}, fmt.Errorf("%w: an unauthenticated caller may change nothing", keys.ErrForbidden)
}

// fixed is a plan that always takes action, on a key it leaves as it is
// for the check (rotate, disable, enable, revoke: none changes scopes).
func fixed(action string, extra map[string]keys.Change) func(*keys.Key, *secretRow, int64) (step, error) {
	return func(before *keys.Key, _ *secretRow, _ int64) (step, error) {
		return step{action: action, after: before, extra: extra}, nil
	}
}
