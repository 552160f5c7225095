package commands

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/keyctl/keyctl/output"
	"github.com/keyctl/keyctl/store"
)

// ShowOptions are the parsed flags of keyctl show.
type ShowOptions struct {
	Deps
	Ref    string
	Format output.Format
}

func newShowCmd(f *Factory, runF func(context.Context, *ShowOptions) error) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "show KEY",
		Short: "Show a key's details (never its secret)",
		Long: `Show everything keyctl knows about a key, by id or name: its settings, state
and usage. A name is the key of that name that is not revoked, else the one
revoked most recently. With -o json the output is one key object.`,
		Example: `  keyctl show billing
  keyctl show key_4f3GhT9kLmNpQr2s -o json`,
		Args:              exactKey,
		ValidArgsFunction: completeKeys(f, true),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := &ShowOptions{Deps: f.deps(), Ref: args[0]}
			var err error
			if opts.Format, err = f.outputFormat(); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runShow(cmd.Context(), opts)
		},
	}
	return cmd
}

func runShow(ctx context.Context, opts *ShowOptions) error {
	return opts.withStore(ctx, func(s store.Store) error {
		k, err := s.Get(ctx, opts.Ref)
		if err != nil {
			return err
		}
		return printKey(opts.Deps, opts.Format, k)
	})
}
