package commands

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/keys"
)

func newCompletionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Print a shell completion script",
		Long: `Print a completion script for your shell. It completes commands, flags, and
key names and ids from the configured database.

  bash:       source <(keyctl completion bash)
  zsh:        keyctl completion zsh > "${fpath[1]}/_keyctl"
  fish:       keyctl completion fish > ~/.config/fish/completions/keyctl.fish
  powershell: keyctl completion powershell | Out-String | Invoke-Expression`,
		ValidArgs: []string{"bash", "zsh", "fish", "powershell"},
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("completion needs one shell: bash, zsh, fish or powershell")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			root, out := cmd.Root(), cmd.OutOrStdout()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(out, true)
			case "zsh":
				return root.GenZshCompletion(out)
			case "fish":
				return root.GenFishCompletion(out, true)
			case "powershell":
				return root.GenPowerShellCompletionWithDesc(out)
			}
			return usagef("%q is not a shell keyctl completes (bash, zsh, fish, powershell)", args[0])
		},
	}
}

// completionKeys is how many keys, the newest, completion offers.
const completionKeys = 1000

// completeKeys completes the first argument with key names and ids; revoked
// keys only when withRevoked (for show).
func completeKeys(f *Factory, withRevoked bool) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		if err := f.loadConfig(cmd); err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		f.mustExist = true // completing never makes a database
		ctx := cmd.Context()
		if ctx == nil {
			ctx = context.Background()
		}
		var out []string
		err := f.withStore(ctx, func(s store.Store) error {
			// One page, the newest keys: a completion costs the same
			// however many keys there are.
			keys, _, err := store.PagerOf(s).ListPage(ctx, keys.ListFilter{All: withRevoked}, "", completionKeys)
			for _, k := range keys {
				desc := fmt.Sprintf("%s %s %s", k.Masked(), k.Env, k.Status)
				for _, c := range []string{k.Name, k.ID} {
					if strings.HasPrefix(c, toComplete) {
						out = append(out, c+"\t"+desc)
					}
				}
			}
			return err
		})
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}
