package commands

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/keyctl/keyctl/output"
	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/keys"
)

// ListOptions are the parsed flags of keyctl list.
type ListOptions struct {
	Deps
	Filter keys.ListFilter
	Format output.Format
}

func newListCmd(f *Factory, runF func(context.Context, *ListOptions) error) *cobra.Command {
	var env, status, scope, expiring, unused string
	var all bool
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List keys (never their secrets)",
		Long: `List keys, newest first, with their masked start (sk_live_AbCd1234...), never
their secret. Revoked keys are left out unless --all or --status revoked.

On a terminal times are relative ("3 days ago"); elsewhere they are RFC 3339.
With -o json the output is an array of key objects.`,
		Example: `  keyctl list
  keyctl list --env production --scope sdk
  keyctl list --expiring 30d
  keyctl list --unused 90d -o json | jq -r '.[].id'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := &ListOptions{Deps: f.deps()}
			flt := &opts.Filter
			var err error
			if env != "" {
				if flt.Env, err = parseEnv("env", env); err != nil {
					return err
				}
			}
			if status != "" {
				if flt.Status, err = keys.ParseStatus(status); err != nil {
					return flagErr("status", err)
				}
			}
			if scope != "" {
				if err := keys.ValidateScope(scope); err != nil {
					return flagErr("scope", err)
				}
				flt.Scope = scope
			}
			flt.All = all
			if expiring != "" {
				if flt.Expiring, err = parsePositiveDuration("expiring", expiring); err != nil {
					return err
				}
			}
			if unused != "" {
				if flt.Unused, err = parsePositiveDuration("unused", unused); err != nil {
					return err
				}
			}
			if opts.Format, err = f.outputFormat(); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runList(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&env, "env", "", "only keys of this environment")
	fl.StringVar(&status, "status", "", "only keys in this status: active, disabled, expired or revoked")
	fl.StringVar(&scope, "scope", "", "only keys that hold this scope")
	fl.BoolVarP(&all, "all", "a", false, "include revoked keys")
	fl.StringVar(&expiring, "expiring", "", "only keys that expire within this duration (e.g. 30d)")
	fl.StringVar(&unused, "unused", "", "only keys not used for at least this duration (e.g. 90d)")
	return cmd
}

func runList(ctx context.Context, opts *ListOptions) error {
	return opts.withStore(ctx, func(s store.Store) error {
		keys, err := s.List(ctx, opts.Filter)
		if err != nil {
			return err
		}
		return printKeys(opts.Deps, opts.Format, keys)
	})
}
