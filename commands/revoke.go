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
	Deps
	Ref    string
	Reason string
	Format output.Format
}

func newRevokeCmd(f *Factory, runF func(context.Context, *RevokeOptions) error) *cobra.Command {
	opts := &RevokeOptions{Deps: f.deps()}
	cmd := &cobra.Command{
		Use:   "revoke KEY",
		Short: "Revoke a key for good",
		Long: `Revoke a key: every secret of it stops working at once and for good. The key
stays visible to 'keyctl show' and 'keyctl list --all' for investigation, and
its name is free for a new key. Revoking a revoked key is not an error.`,
		Example:           `  keyctl revoke billing --reason "leaked in a CI log"`,
		Args:              exactKey,
		ValidArgsFunction: completeKeys(f, false),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Ref = args[0]
			var err error
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
	return cmd
}

func runRevoke(ctx context.Context, opts *RevokeOptions) error {
	return opts.withStore(ctx, func(s store.Store) error {
		before, err := s.Get(ctx, opts.Ref)
		if err != nil {
			return err
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
