package commands

import (
	"context"

	"github.com/spf13/cobra"
)

func newEnableCmd(f *Factory, runF func(context.Context, *StateOptions) error) *cobra.Command {
	return &cobra.Command{
		Use:   "enable KEY",
		Short: "Let a disabled key work again",
		Long: `Enable a disabled key. Enabling an active key changes nothing. A revoked key
cannot be enabled (exit 4): revocation is permanent. An expired key stays
expired until its expiry is changed with 'keyctl update --expires'.`,
		Example:           `  keyctl enable billing`,
		Args:              exactKey,
		ValidArgsFunction: completeKeys(f, false),
		RunE: func(cmd *cobra.Command, args []string) error {
			return stateCmd(cmd, f, args[0], false, runF)
		},
	}
}
