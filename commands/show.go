package commands

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/keyctl/keyctl/output"
	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/keys"
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
		Long: `Show everything keyctl knows about a key, by id or name: its settings, state,
usage, and its live secrets (never the secrets themselves): the current one
and any old one still working in a rotation's grace, with when each was
issued and when it ends ('keyctl rotate KEY --end-grace' ends them now). A
name is the key of that name that is not revoked, else the one revoked most
recently. With -o json the output is one key object, with "secrets".`,
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
		secrets, err := s.Secrets(ctx, k.ID)
		if err != nil {
			return err
		}
		return printData(opts.IO, opts.Format, keyWithSecrets{k, secrets}, func() error {
			output.KeyDetails(opts.IO, opts.IO.Out, k, opts.Now())
			output.SecretLines(opts.IO, opts.IO.Out, secrets, opts.Now())
			return nil
		})
	})
}

// keyWithSecrets is the JSON and YAML form of show: the key, and its live
// secrets.
type keyWithSecrets struct {
	*keys.Key
	Secrets []keys.SecretInfo `json:"secrets"`
}
