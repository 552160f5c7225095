package commands

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/keyctl/keyctl/output"
	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/keys"
)

// ListOptions are the parsed flags of keyctl list.
type ListOptions struct {
	Deps
	Filter keys.ListFilter
	// Scopes and Meta select the keys that hold every scope and every
	// key=value; Limit keeps the newest N (0: all).
	Scopes []string
	Meta   map[string]string
	Limit  int
	Format output.Format
}

func newListCmd(f *Factory, runF func(context.Context, *ListOptions) error) *cobra.Command {
	var env, status, expiring, unused, limit string
	var scopes, meta []string
	var all bool
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List keys (never their secrets)",
		Long: `List keys, newest first, with their masked start (sk_live_AbCd1234...), never
their secret. Revoked keys are left out unless --all or --status revoked.

--scope and --meta may be repeated: a key must hold every scope and every
key=value given. --limit keeps the newest N.

On a terminal times are relative ("3 days ago") and the table fits the
terminal's width: long cells are cut short (…), never wrapped. Elsewhere
times are RFC 3339 and nothing is cut. With -o json the output is an array
of key objects.`,
		Example: `  keyctl list
  keyctl list --env production --scope sdk --scope billing
  keyctl list --meta team=payments --limit 20
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
			if opts.Scopes, err = parseScopes("scope", scopes); err != nil {
				return err
			}
			if len(opts.Scopes) > 0 {
				flt.Scope = opts.Scopes[0] // the store narrows by one; runList checks them all
			}
			if opts.Meta, err = parseMeta("meta", meta); err != nil {
				return err
			}
			if limit != "" {
				if opts.Limit, err = strconv.Atoi(limit); err != nil || opts.Limit < 1 {
					return flagErr("limit", fmt.Errorf("%q is not a positive number", limit))
				}
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
	fl.StringArrayVar(&scopes, "scope", nil, "only keys that hold this scope; repeat or separate with commas (all are required)")
	fl.StringArrayVar(&meta, "meta", nil, "only keys with this metadata key=value; repeatable (all are required)")
	kindVar(fl, &limit, "limit", "", "int", "only the newest N keys")
	fl.BoolVarP(&all, "all", "a", false, "include revoked keys")
	kindVar(fl, &expiring, "expiring", "", "duration", "only keys that expire within this duration (e.g. 30d)")
	kindVar(fl, &unused, "unused", "", "duration", "only keys not used for at least this duration (e.g. 90d)")
	return cmd
}

func runList(ctx context.Context, opts *ListOptions) error {
	return opts.withStore(ctx, func(s store.Store) error {
		list, err := s.List(ctx, opts.Filter)
		if err != nil {
			return err
		}
		out := list[:0]
		for _, k := range list {
			if holdsAll(k, opts.Scopes, opts.Meta) {
				out = append(out, k)
			}
		}
		if opts.Limit > 0 && len(out) > opts.Limit {
			out = out[:opts.Limit]
		}
		return printKeys(opts.Deps, opts.Format, out)
	})
}

// holdsAll reports whether k holds every scope in scopes and every
// key=value in meta.
func holdsAll(k *keys.Key, scopes []string, meta map[string]string) bool {
	for _, sc := range scopes {
		if !slices.Contains(k.Scopes, sc) {
			return false
		}
	}
	for mk, mv := range meta {
		if v, ok := k.Metadata[mk]; !ok || v != mv {
			return false
		}
	}
	return true
}
