package commands

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/keyctl/keyctl/output"
	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/keys"
)

// RevokeOptions are the parsed flags of keyctl revoke.
type RevokeOptions struct {
	Ref    string
	Secret secretSource // when the key is named by a secret of it
	Reason string
	Format output.Format
}

func newRevokeCmd(f *Factory, runF func(context.Context, *RevokeOptions) error) *cobra.Command {
	opts := &RevokeOptions{}
	var secret, fromEnv string
	cmd := &cobra.Command{
		Use:   "revoke KEY",
		Short: "Revoke a key for good",
		Long: `Revoke a key: every secret of it stops working at once and for good. The key
stays visible to 'keyctl show' and 'keyctl list --all' for investigation, and
its name is free for a new key. Revoking a revoked key is not an error.

A leaked secret is one command from dead: --secret - reads it from stdin (a
hidden prompt on a terminal), --secret-from-env VAR from a variable, and a
secret given as KEY is taken the same way, with a warning. The key's current
secret revokes the key; an old secret still in its rotation grace stops
working now, and the key's current secret stays healthy; a secret that
works no more changes nothing. Each says so. In remote mode this needs no
token: the server's credential revocation (POST /v1/credentials/revoke)
takes it from whoever holds the secret, and tells nothing back.`,
		Example: `  keyctl revoke billing --reason "leaked in a CI log"
  pbpaste | keyctl revoke --secret -
  keyctl revoke --secret-from-env LEAKED_KEY`,
		Args:              cobra.ArbitraryArgs,
		ValidArgsFunction: completeKeys(f, false),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if opts.Ref, opts.Secret, err = parseSecretSource(cmd, args, secret, fromEnv); err != nil {
				return err
			}
			if opts.Format, err = f.outputFormat(); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			if opts.Secret.given() {
				return runRevokeSecret(cmd.Context(), f, opts)
			}
			return f.withStore(cmd.Context(), func(s store.Store) error {
				before, err := s.Get(cmd.Context(), opts.Ref)
				if err != nil {
					return err
				}
				k, err := s.Revoke(cmd.Context(), before.ID, opts.Reason)
				if err != nil {
					return err
				}
				if before.Status == keys.Revoked {
					f.IO.Notef("Key %s (%s) was already revoked", k.Name, k.ID)
				} else {
					f.IO.Notef("Revoked key %s (%s)", k.Name, k.ID)
				}
				if opts.Format == output.Table {
					return nil
				}
				return printKey(f, opts.Format, k)
			})
		},
	}
	cmd.Flags().StringVar(&opts.Reason, "reason", "", "why the key is revoked (kept with the key)")
	addSecretFlags(cmd, &secret, &fromEnv)
	return cmd
}
