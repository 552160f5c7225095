package postgres

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keyctl/keyctl/store/keys"
)

// Every change to a key goes through mutate, as on SQLite (see
// store/sqlite/mutate.go): it resolves the target to one key, reads the
// actor's authority from the acting key's row, asks keys.Authorize about
// the key as it is and as it will be, writes, and audits, all in one
// transaction. A change states what it does (plan) and how (write), and
// cannot skip the check.
//
// PostgreSQL has no database-wide write lock, so the rows are locked: the
// key changed FOR NO KEY UPDATE, the acting key FOR SHARE (its scopes and
// status cannot change until the change commits), in the order of their
// ids, as verifications lock keys, so that no two transactions wait on each
// other in a cycle. The target is found before it is locked; a ref that
// names another key once the lock is held (a rename raced it) runs the
// transaction again, so the check and the change are always of the key the
// ref names then.

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
	plan func(before *keys.Key, sec *secretRow, now time.Time) (step, error)
	// write makes the change c, and returns the id of the key it changed.
	// It may add to c.extra what only writing tells.
	write func(tx pgx.Tx, c change) (id string, err error)
	// last, when set, is the transaction's last step, with the key as it
	// is about to be committed: a new secret's delivery, whose failure
	// commits nothing. A transaction that delivered is never run again.
	last func(after *keys.Key) error
}

// change is a change about to be written.
type change struct {
	before, after *keys.Key
	sec           *secretRow
	action        string
	extra         map[string]keys.Change
	now           time.Time
}

// step is a change as planned: the action (empty: nothing to do), the key
// as it will be, and details for the audit entry beyond the key's fields.
type step struct {
	action string
	after  *keys.Key
	extra  map[string]keys.Change
}

// mutated is what a mutation did: the action taken (empty for none), the
// key as it is afterwards, and the secret it was found by.
type mutated struct {
	action string
	key    *keys.Key
	secret *secretRow
}

// errMoved: the ref named another key once its row was locked.
var errMoved = errors.New("the key moved while it was being changed")

func (p *Postgres) mutate(ctx context.Context, m mutation) (mutated, error) {
	var out mutated
	delivered := false
	run := func(tx pgx.Tx) error {
		out = mutated{}
		now := p.stamp()
		before, sec, auth, err := p.target(ctx, tx, m)
		if err != nil {
			return err
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
		if out.key, err = p.byID(ctx, tx, id, ""); err != nil {
			return err
		}
		// A change that changed nothing is not audited.
		if changes := keys.Diff(before, out.key); len(changes) > 0 || len(st.extra) > 0 {
			maps.Copy(changes, st.extra)
			if err := p.appendAudit(ctx, tx, st.action, out.key, changes); err != nil {
				return err
			}
		}
		if m.last != nil {
			delivered = true
			return m.last(out.key)
		}
		return nil
	}
	var err error
	for range 5 {
		err = pgx.BeginFunc(ctx, p.pool, run)
		if delivered || !retryable(err) && !errors.Is(err, errMoved) {
			break
		}
	}
	if errors.Is(err, errMoved) {
		err = fmt.Errorf("%w: %w: try again", keys.ErrConflict, err)
	}
	if err == nil && out.action != "" && out.key != nil {
		p.changed(out.key.ID)
	}
	return out, classify(err)
}

// target finds and locks the key m changes (none for a create) and the
// acting key, and returns the key, the secret it was found by (bySecret),
// and the actor's authority.
func (p *Postgres) target(ctx context.Context, tx pgx.Tx, m mutation) (*keys.Key, *secretRow, keys.Authority, error) {
	var none keys.Authority
	targetID := ""
	switch {
	case m.create:
	case m.bySecret:
		k, _, err := p.bySecret(ctx, tx, m.ref)
		if err != nil {
			return nil, nil, none, err
		}
		targetID = k.ID
	default:
		k, err := p.resolve(ctx, tx, m.ref, "")
		if err != nil {
			return nil, nil, none, err
		}
		targetID = k.ID
	}
	actor := keys.ActorFrom(ctx)
	actorID := ""
	if !m.bySecret && actor.Kind == keys.ActorKey {
		actorID = actor.ID
	}
	before, acting, err := p.lockKeys(ctx, tx, targetID, actorID)
	if err != nil {
		return nil, nil, none, err
	}
	if m.bySecret {
		// The secret's state is read under its key's lock: no rotation
		// can change it now.
		k, sec, err := p.bySecret(ctx, tx, m.ref)
		if err != nil {
			return nil, nil, none, err
		}
		return k, sec, keys.Authority{HolderOf: k.ID}, nil
	}
	if targetID != "" {
		if again, err := p.resolve(ctx, tx, m.ref, ""); err != nil || again.ID != targetID {
			return nil, nil, none, errMoved
		}
	}
	auth, err := authority(actor, acting)
	return before, nil, auth, err
}

// lockKeys locks the key changed (FOR NO KEY UPDATE) and the acting key
// (FOR SHARE), either of which may be absent, in the order of their ids,
// and reads them as they are under the locks.
func (p *Postgres) lockKeys(ctx context.Context, tx pgx.Tx, targetID, actorID string) (target, acting *keys.Key, err error) {
	ids := []string{}
	for _, id := range []string{targetID, actorID} {
		if id != "" && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		lock := lockShare
		if id == targetID {
			lock = lockUpdate
		}
		k, err := p.byID(ctx, tx, id, lock)
		switch {
		case errors.Is(err, keys.ErrNotFound) && id != targetID:
			continue // the acting key is gone: authority says so
		case err != nil:
			return nil, nil, err
		}
		if id == targetID {
			target = k
		}
		if id == actorID {
			acting = k
		}
	}
	return target, acting, nil
}

// authority is what the actor may do, read from the acting key as it is
// under its lock: the OS user may do anything; a key acts with its scopes
// as they are now, and only while it is active. Anything else may do
// nothing.
func authority(a keys.Actor, acting *keys.Key) (keys.Authority, error) {
	switch a.Kind {
	case keys.ActorUser:
		return keys.Authority{Local: true}, nil
	case keys.ActorKey:
		if acting == nil {
			return keys.Authority{}, fmt.Errorf("%w: the acting key %s no longer exists", keys.ErrForbidden, a.ID)
		}
		if acting.Status != keys.Active {
			return keys.Authority{}, fmt.Errorf("%w: the acting key %q is %s", keys.ErrForbidden, acting.Name, acting.Status)
		}
		return keys.Authority{Scopes: acting.Scopes}, nil
	}
	return keys.Authority{}, fmt.Errorf("%w: an unauthenticated caller may change nothing", keys.ErrForbidden)
}

// fixed is a plan that always takes action, on a key it leaves as it is
// for the check (rotate, disable, enable, revoke: none changes scopes).
func fixed(action string, extra map[string]keys.Change) func(*keys.Key, *secretRow, time.Time) (step, error) {
	return func(before *keys.Key, _ *secretRow, _ time.Time) (step, error) {
		return step{action: action, after: before, extra: extra}, nil
	}
}
