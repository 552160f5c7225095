package commands

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/keyctl/keyctl/output"
	"github.com/keyctl/keyctl/store"
)

// StateOptions are the parsed flags of keyctl disable and keyctl enable.
type StateOptions struct {
	Deps
	Ref      string
	Disabled bool // disable; else enable
	Format   output.Format
}

func newDisableCmd(f *Factory, runF func(context.Context, *StateOptions) error) *cobra.Command {
	return &cobra.Command{
		Use:   "disable KEY",
		Short: "Stop a key from working until it is enabled again",
		Long: `Disable a key: it stops working until 'keyctl enable'. Disabling a disabled
key changes nothing. A revoked key cannot be disabled (exit 4).`,
		Example:           `  keyctl disable billing`,
		Args:              exactKey,
		ValidArgsFunction: completeKeys(f, false),
		RunE: func(cmd *cobra.Command, args []string) error {
			return stateCmd(cmd, f, args[0], true, runF)
		},
	}
}

// stateCmd parses the flags of disable or enable and runs it.
func stateCmd(cmd *cobra.Command, f *Factory, ref string, disabled bool, runF func(context.Context, *StateOptions) error) error {
	opts := &StateOptions{Deps: f.deps(), Ref: ref, Disabled: disabled}
	var err error
	if opts.Format, err = f.outputFormat(); err != nil {
		return err
	}
	if runF != nil {
		return runF(cmd.Context(), opts)
	}
	return runSetDisabled(cmd.Context(), opts)
}

// runSetDisabled disables or enables a key and reports what it did.
func runSetDisabled(ctx context.Context, opts *StateOptions) error {
	return opts.withStore(ctx, func(s store.Store) error {
		k, err := s.SetDisabled(ctx, opts.Ref, opts.Disabled)
		if err != nil {
			return err
		}
		verb := map[bool]string{true: "Disabled", false: "Enabled"}[opts.Disabled]
		opts.IO.Notef("%s key %s (%s); its status is %s", verb, k.Name, k.ID, k.Status)
		if opts.Format == output.Table {
			return nil
		}
		return printKey(opts.Deps, opts.Format, k)
	})
}
