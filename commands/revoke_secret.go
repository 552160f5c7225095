package commands

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keyctl/keyctl/output"
	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/keys"
)

// runRevokeSecret kills the secret opts names (store.RevokeSecret) and says
// what that did: revoked its key, ended its grace, or nothing.
func runRevokeSecret(ctx context.Context, opts *RevokeOptions) error {
	tok, err := opts.Secret.read(ctx, opts.IO)
	if err != nil {
		return err
	}
	return opts.withStore(ctx, func(s store.Store) error {
		// A keyctl server tells nothing of what its credential revocation
		// found: what the secret was, when the token may read, says it.
		k, state, lookErr := s.FindSecret(ctx, tok)
		r, err := s.RevokeSecret(ctx, tok, opts.Reason)
		if err != nil {
			return err
		}
		if r.Outcome == keys.SecretAccepted {
			outcomeOf(r, k, state, lookErr, opts.Now())
		}
		if err := sayRevocation(opts.IO, r); err != nil {
			return err
		}
		if opts.Format == output.Table {
			return nil
		}
		return printData(opts.IO, opts.Format, r, func() error { return nil })
	})
}

// outcomeOf completes an accepted revocation from what the secret was just
// before it, when that could be read.
func outcomeOf(r *keys.SecretRevocation, k *keys.Key, st keys.SecretState, lookErr error, now time.Time) {
	switch {
	case errors.Is(lookErr, keys.ErrNotFound):
		r.Outcome = keys.SecretUnknown
	case lookErr != nil:
		// No token, or one that may not read: nothing more is known.
	case k.Status == keys.Revoked || !st.Live(now):
		r.Outcome, r.Key, r.EndedAt = keys.SecretDead, k, st.EndsAt
		if k.Status == keys.Revoked {
			r.EndedAt = k.RevokedAt
		}
	case st.Current:
		r.Outcome, r.Key = keys.SecretRevoked, k
		r.Key.Status = keys.Revoked
	default:
		r.Outcome, r.Key, r.EndedAt = keys.SecretGraceEnded, k, &now
	}
}

// sayRevocation tells people what revoking a secret did; an unknown secret
// is exit 3.
func sayRevocation(ios *output.IOStreams, r *keys.SecretRevocation) error {
	start := r.Start + "…"
	switch r.Outcome {
	case keys.SecretRevoked:
		ios.Notef("Revoked key %s (%s): %s was its current secret", r.Key.Name, r.Key.ID, start)
	case keys.SecretGraceEnded:
		ios.Notef("Ended the grace of %s, an old secret of key %s (%s): it stopped working now; the key's current secret (%s) still works",
			start, r.Key.Name, r.Key.ID, r.Key.Masked())
	case keys.SecretDead:
		when := ""
		if r.EndedAt != nil {
			when = " since " + r.EndedAt.UTC().Format(time.RFC3339)
		}
		ios.Notef("%s, a secret of key %s (%s), works no more%s; nothing changed", start, r.Key.Name, r.Key.ID, when)
	case keys.SecretAccepted:
		if r.Key != nil {
			ios.Notef("The server took %s, a secret of key %s (%s), for revocation; the key is %s", start, r.Key.Name, r.Key.ID, r.Key.Status)
		} else {
			ios.Notef("The server took %s for revocation: if it is a live secret there, it works no more (the server tells nothing more)", start)
		}
	case keys.SecretUnknown:
		return fmt.Errorf("no key has the secret %s: %w", start, keys.ErrNotFound)
	}
	return nil
}
