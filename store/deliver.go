package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keyctl/keyctl/store/keys"
)

// DeliveringIssuer issues secrets inside the transaction that delivers
// them: it calls deliver after every write and before the commit, and
// commits nothing when deliver fails, so a key never commits with a secret
// nobody received. The local SQLite store is one; a keyctl server cannot be,
// since it commits before its client sees the secret.
type DeliveringIssuer interface {
	CreateDelivered(ctx context.Context, p keys.CreateParams, deliver keys.Deliver) (*keys.Key, error)
	RotateDelivered(ctx context.Context, ref string, grace time.Duration, deliver keys.Deliver) (*keys.Key, error)
}

// ErrNotDelivered: a new secret could not be delivered (written to its
// file or to stdout), and the key was left as if it had not been issued.
var ErrNotDelivered = errors.New("the secret was not delivered")

// DeliveryError says why a secret did not arrive and what became of the
// key: not created, or not rotated (a DeliveringIssuer); revoked, or its
// rotation undone (any other store). Undo is the error of that undoing,
// when it failed too: then the key may still hold the undelivered secret.
type DeliveryError struct {
	Err     error
	Outcome string
	Undo    error
}

func (e *DeliveryError) Error() string {
	msg := fmt.Sprintf("%s: %v; %s", ErrNotDelivered, e.Err, e.Outcome)
	if e.Undo != nil {
		msg += fmt.Sprintf(": %v", e.Undo)
	}
	return msg
}

func (e *DeliveryError) Unwrap() []error {
	errs := []error{ErrNotDelivered, e.Err}
	if e.Undo != nil {
		errs = append(errs, e.Undo)
	}
	return errs
}

// NotDeliveredReason is the revocation reason, and the audit note, of a key
// whose secret could not be delivered.
const NotDeliveredReason = "secret not delivered"

// CreateAndDeliver creates a key in s and delivers its secret. A key is
// active only if its secret was delivered: a DeliveringIssuer commits
// nothing when deliver fails; with any other store the key is revoked
// again, at once, with the reason NotDeliveredReason.
func CreateAndDeliver(ctx context.Context, s Store, p keys.CreateParams, deliver keys.Deliver) (*keys.Key, error) {
	var failed error
	guarded := func(k *keys.Key, secret string) error {
		failed = deliver(k, secret)
		return failed
	}
	if di, ok := s.(DeliveringIssuer); ok {
		k, err := di.CreateDelivered(ctx, p, guarded)
		if failed != nil {
			return nil, &DeliveryError{Err: failed, Outcome: "no key was created"}
		}
		return k, err
	}
	k, secret, err := s.Create(ctx, p)
	if err != nil {
		return nil, err
	}
	if guarded(k, secret) == nil {
		return k, nil
	}
	outcome := fmt.Sprintf("key %s (%s) was revoked (%s)", k.Name, k.ID, NotDeliveredReason)
	_, undo := s.Revoke(keys.WithNote(context.WithoutCancel(ctx), NotDeliveredReason), k.ID, NotDeliveredReason)
	if undo != nil {
		outcome = fmt.Sprintf("revoking key %s (%s) failed, revoke it by hand", k.Name, k.ID)
	}
	return nil, &DeliveryError{Err: failed, Outcome: outcome, Undo: undo}
}

// RotateAndDeliver rotates a key in s and delivers the new secret. A
// DeliveringIssuer commits nothing when deliver fails; with any other store
// the rotation is undone at once (Store.UndoRotate), so the key keeps the
// secrets it had.
func RotateAndDeliver(ctx context.Context, s Store, ref string, grace time.Duration, deliver keys.Deliver) (*keys.Key, error) {
	var failed error
	guarded := func(k *keys.Key, secret string) error {
		failed = deliver(k, secret)
		return failed
	}
	if di, ok := s.(DeliveringIssuer); ok {
		k, err := di.RotateDelivered(ctx, ref, grace, guarded)
		if failed != nil {
			return nil, &DeliveryError{Err: failed, Outcome: "the key was not rotated: its secrets work as before"}
		}
		return k, err
	}
	k, secret, err := s.Rotate(ctx, ref, grace)
	if err != nil {
		return nil, err
	}
	if guarded(k, secret) == nil {
		return k, nil
	}
	outcome := fmt.Sprintf("the rotation of key %s (%s) was undone: its secrets work as before", k.Name, k.ID)
	_, undo := s.UndoRotate(keys.WithNote(context.WithoutCancel(ctx), NotDeliveredReason), k.ID, secret)
	if undo != nil {
		outcome = fmt.Sprintf("undoing the rotation of key %s (%s) failed: the new secret, which nobody has, is its current one; rotate it again",
			k.Name, k.ID)
	}
	return nil, &DeliveryError{Err: failed, Outcome: outcome, Undo: undo}
}
