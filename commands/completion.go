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
		Long: `Print a completion script for your shell. It completes commands, flags, key
names and ids from the configured database, and flag values: --env,
--status, --action, -o, and --scope from the scopes the keys hold.

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

// completeFlagValues makes the shell complete flag values too: --env,
// --status, --action and -o from their fixed sets, and --scope (with
// --add-scope and --remove-scope) from the scopes the keys hold.
func completeFlagValues(f *Factory, root *cobra.Command) {
	fixed := func(values ...string) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			return values, cobra.ShellCompDirectiveNoFileComp
		}
	}
	root.RegisterFlagCompletionFunc("output", func(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
		formats := []string{"table", "json", "yaml"}
		if cmd.Name() == "create" || cmd.Name() == "rotate" {
			formats = append(formats, "env")
		}
		return formats, cobra.ShellCompDirectiveNoFileComp
	})
	var walk func(*cobra.Command)
	walk = func(cmd *cobra.Command) {
		for name, fn := range map[string]func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective){
			"env":          fixed(string(keys.Production), string(keys.Staging), string(keys.Development)),
			"status":       fixed(string(keys.Active), string(keys.Disabled), string(keys.Expired), string(keys.Revoked)),
			"action":       fixed(keys.AuditActions...),
			"scope":        completeScopes(f),
			"add-scope":    completeScopes(f),
			"remove-scope": completeScopes(f),
		} {
			if cmd.LocalNonPersistentFlags().Lookup(name) != nil {
				cmd.RegisterFlagCompletionFunc(name, fn)
			}
		}
		for _, c := range cmd.Commands() {
			walk(c)
		}
	}
	walk(root)
}

// completeScopes completes a scope from those the live keys hold; in a
// comma-separated list, the last item.
func completeScopes(f *Factory) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if err := f.loadConfig(cmd); err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		ctx := cmd.Context()
		if ctx == nil {
			ctx = context.Background()
		}
		done, last := "", toComplete
		if i := strings.LastIndex(toComplete, ","); i >= 0 {
			done, last = toComplete[:i+1], toComplete[i+1:]
		}
		var out []string
		err := f.withStore(ctx, func(s store.Store) error {
			list, err := s.List(ctx, keys.ListFilter{})
			if err != nil {
				return err
			}
			var scopes []string
			for _, k := range list {
				scopes = append(scopes, k.Scopes...)
			}
			for _, sc := range keys.NormalizeSet(scopes) {
				if strings.HasPrefix(sc, last) {
					out = append(out, done+sc)
				}
			}
			return nil
		})
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}
