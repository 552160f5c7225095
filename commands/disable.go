package commands

import (
	"github.com/spf13/cobra"

	"github.com/keyctl/keyctl/output"
	"github.com/keyctl/keyctl/store"
)

func newDisableCmd(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "disable KEY",
		Short: "Stop a key from working until it is enabled again",
		Long: `Disable a key: it stops working until 'keyctl enable'. Disabling a disabled
key changes nothing. A revoked key cannot be disabled (exit 4).`,
		Example:           `  keyctl disable billing`,
		Args:              exactKey,
		ValidArgsFunction: completeKeys(f, false),
		RunE: func(cmd *cobra.Command, args []string) error {
			return setDisabled(cmd, f, args[0], true)
		},
	}
}

// setDisabled disables or enables a key and reports what it did.
func setDisabled(cmd *cobra.Command, f *Factory, ref string, disabled bool) error {
	format, err := f.outputFormat()
	if err != nil {
		return err
	}
	return f.withStore(cmd.Context(), func(s store.Store) error {
		k, err := s.SetDisabled(cmd.Context(), ref, disabled)
		if err != nil {
			return err
		}
		verb := map[bool]string{true: "Disabled", false: "Enabled"}[disabled]
		f.IO.Notef("%s key %s (%s); its status is %s", verb, k.Name, k.ID, k.Status)
		if format == output.Table {
			return nil
		}
		return printKey(f, format, k)
	})
}
