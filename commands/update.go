package commands

import (
	"context"
	"strings"

	"github.com/spf13/cobra"

	"github.com/keyctl/keyctl/output"
	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/keys"
)

// UpdateOptions are the parsed flags of keyctl update.
type UpdateOptions struct {
	Deps
	Ref    string
	Params keys.UpdateParams
	Format output.Format
}

func newUpdateCmd(f *Factory, runF func(context.Context, *UpdateOptions) error) *cobra.Command {
	var (
		name, description, expires, quota, rateLimit string
		addScopes, removeScopes, addIPs, removeIPs   []string
		meta, removeMeta                             []string
	)
	cmd := &cobra.Command{
		Use:   "update KEY",
		Short: "Change a key's settings",
		Long: `Change a key's name, description, scopes, expiry, allowed addresses, quota,
rate limit or metadata. The secret stays the same. A revoked key cannot be
updated (exit 4). An update that would change nothing says so, and changes
nothing.

--expires never, --quota unlimited and --rate-limit none remove a limit.
--quota N grants N uses from now on.`,
		Example: `  keyctl update billing --add-scope refunds --remove-scope legacy
  keyctl update billing --expires 2027-06-30 --allow-ip 203.0.113.0/24
  keyctl update billing --quota unlimited --rate-limit none --meta owner=ana`,
		Args:              exactKey,
		ValidArgsFunction: completeKeys(f, false),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := &UpdateOptions{Deps: f.deps(), Ref: args[0]}
			p := &opts.Params
			fl := cmd.Flags()
			var err error
			if fl.Changed("name") {
				if err := keys.ValidateNewName(name); err != nil {
					return flagErr("name", err)
				}
				p.Name = &name
			}
			if fl.Changed("description") {
				p.Description = &description
			}
			if p.AddScopes, err = parseScopes("add-scope", addScopes); err != nil {
				return err
			}
			if p.RemoveScopes, err = parseScopes("remove-scope", removeScopes); err != nil {
				return err
			}
			if fl.Changed("expires") {
				if p.ExpiresAt, p.ClearExpiry, err = parseExpires(expires, f.Now()); err != nil {
					return err
				}
			}
			if p.AddIPs, err = parseIPs("allow-ip", addIPs); err != nil {
				return err
			}
			if p.RemoveIPs, err = parseIPs("remove-ip", removeIPs); err != nil {
				return err
			}
			if fl.Changed("quota") {
				if p.Quota, p.ClearQuota, err = parseQuota(quota); err != nil {
					return err
				}
			}
			if fl.Changed("rate-limit") {
				if p.RateLimit, p.ClearRateLimit, err = parseRateLimit(rateLimit); err != nil {
					return err
				}
			}
			if p.SetMeta, err = parseMeta("meta", meta); err != nil {
				return err
			}
			for _, m := range removeMeta {
				p.RemoveMeta = append(p.RemoveMeta, strings.TrimSpace(m))
			}
			if p.Empty() {
				return withHint(usagef("update needs at least one change"), "see 'keyctl update --help' for the flags")
			}
			if opts.Format, err = f.outputFormat(); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runUpdate(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&name, "name", "", "new name")
	fl.StringVar(&description, "description", "", "new description")
	fl.StringArrayVar(&addScopes, "add-scope", nil, "scope to add; repeat or separate with commas")
	fl.StringArrayVar(&removeScopes, "remove-scope", nil, "scope to remove; repeat or separate with commas")
	kindVar(fl, &expires, "expires", "", "duration|date", "new expiry: a duration, a date, an RFC 3339 time, or never")
	fl.StringArrayVar(&addIPs, "allow-ip", nil, "IP address or CIDR to allow; repeatable")
	fl.StringArrayVar(&removeIPs, "remove-ip", nil, "IP address or CIDR to remove from the allowlist; repeatable")
	kindVar(fl, &quota, "quota", "", "int", "uses allowed from now on, or unlimited")
	kindVar(fl, &rateLimit, "rate-limit", "", "N/unit", "rate limit N/s, N/m, N/h or N/d, or none")
	fl.StringArrayVar(&meta, "meta", nil, "metadata key=value to set; repeatable")
	fl.StringArrayVar(&removeMeta, "remove-meta", nil, "metadata key to remove; repeatable")
	return cmd
}

func runUpdate(ctx context.Context, opts *UpdateOptions) error {
	return opts.withStore(ctx, func(s store.Store) error {
		before, err := s.Get(ctx, opts.Ref)
		if err != nil {
			return err
		}
		if before.Status != keys.Revoked {
			if after := opts.Params.Apply(before); len(keys.Diff(before, &after)) == 0 {
				opts.IO.Notef("Nothing to change: key %s (%s) already has these settings", before.Name, before.ID)
				if opts.Format == output.Table {
					return nil
				}
				return printKey(opts.Deps, opts.Format, before)
			}
		}
		k, err := s.Update(ctx, before.ID, opts.Params)
		if err != nil {
			return withHintIfConflict(err, "choose another --name, or revoke the key that holds it")
		}
		if opts.Format == output.Table {
			opts.IO.Notef("Updated key %s (%s)", k.Name, k.ID)
		}
		return printKey(opts.Deps, opts.Format, k)
	})
}
