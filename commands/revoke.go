package commands

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/keyctl/keyctl/output"
	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/keys"
)

// RevokeOptions are the parsed flags of keyctl revoke.
type RevokeOptions struct {
	Deps
	Ref    string
	Secret secretSource // when the key is named by a secret of it
	Reason string
	Format output.Format
	// Confirm asks, on the terminal, to type the key's name first; --yes,
	// or no terminal at all (then --yes is required), does not.
	Confirm bool
}

func newRevokeCmd(f *Factory, runF func(context.Context, *RevokeOptions) error) *cobra.Command {
	opts := &RevokeOptions{Deps: f.deps()}
	var secret, fromEnv string
	cmd := &cobra.Command{
		Use:   "revoke KEY",
		Short: "Revoke a key for good",
		Long: `Revoke a key: every secret of it stops working at once and for good. The key
stays visible to 'keyctl show' and 'keyctl list --all' for investigation, and
its name is free for a new key. Revoking a revoked key is not an error.

Revocation cannot be undone: on a terminal keyctl asks to type the key's name
first; --yes skips that. Without a terminal, --yes is required (exit 2).

A leaked secret is one command from dead: --secret - reads it from stdin (a
hidden prompt on a terminal), --secret-from-env VAR from a variable, and a
secret given as KEY is taken the same way, with a warning. The key's current
secret revokes the key; an old secret still in its rotation grace stops
working now, and the key's current secret stays healthy; a secret that
works no more changes nothing. Each says so. Whoever holds a secret may kill
it, so revoking by a secret asks nothing. In remote mode this needs no
token: the server's credential revocation (POST /v1/credentials/revoke)
takes it from whoever holds the secret, and tells nothing back.`,
		Example: `  keyctl revoke billing --reason "leaked in a CI log"
  keyctl revoke billing --yes --reason "rotated out"   # in a script
  pbpaste | keyctl revoke --secret -
  keyctl revoke --secret-from-env LEAKED_KEY`,
		Args:              cobra.ArbitraryArgs,
		ValidArgsFunction: completeKeys(f, false),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if opts.Ref, opts.Secret, err = parseSecretSource(cmd, args, secret, fromEnv); err != nil {
				return err
			}
			if opts.Secret.given() {
				f.tokenOptional = true // holding the secret is the authority
			} else {
				yes, _ := cmd.Flags().GetBool("yes")
				if !yes && !f.IO.IsStdinTTY() {
					return withHint(usagef("revoke cannot be undone: confirm it with --yes when not on a terminal"),
						"keyctl revoke "+opts.Ref+" --yes")
				}
				opts.Confirm = !yes
			}
			if opts.Format, err = f.outputFormat(); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runRevoke(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Reason, "reason", "", "why the key is revoked (kept with the key)")
	cmd.Flags().BoolP("yes", "y", false, "revoke without asking to type the key's name (needed without a terminal)")
	addSecretFlags(cmd, &secret, &fromEnv)
	return cmd
}

func runRevoke(ctx context.Context, opts *RevokeOptions) error {
	if opts.Secret.given() {
		return runRevokeSecret(ctx, opts)
	}
	return opts.withStore(ctx, func(s store.Store) error {
		before, err := s.Get(ctx, opts.Ref)
		if err != nil {
			return err
		}
		if opts.Confirm && before.Status != keys.Revoked {
			if err := confirmRevoke(ctx, opts.IO, before); err != nil {
				return err
			}
		}
		k, err := s.Revoke(ctx, before.ID, opts.Reason)
		if err != nil {
			return err
		}
		if before.Status == keys.Revoked {
			opts.IO.Notef("Key %s (%s) was already revoked", k.Name, k.ID)
		} else {
			opts.IO.Notef("Revoked key %s (%s)", k.Name, k.ID)
		}
		if opts.Format == output.Table {
			return nil
		}
		return printKey(opts.Deps, opts.Format, k)
	})
}

// confirmRevoke asks, on the terminal, to type k's name before it is
// revoked; anything else revokes nothing.
func confirmRevoke(ctx context.Context, ios *output.IOStreams, k *keys.Key) error {
	fmt.Fprintf(ios.ErrOut, "Revoke key %s (%s)? Every secret of it stops working, for good.\n",
		output.Escape(k.Name), output.Escape(k.ID))
	fmt.Fprint(ios.ErrOut, "Type its name to confirm: ")
	typed, err := readLine(ctx, ios)
	if err != nil {
		return err
	}
	if strings.TrimSpace(typed) != k.Name {
		return withHint(fmt.Errorf("the name typed is not %q: nothing was revoked", k.Name),
			"type the key's name exactly, or pass --yes")
	}
	return nil
}
