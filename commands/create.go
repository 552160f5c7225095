package commands

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/keyctl/keyctl/apikey"
	"github.com/keyctl/keyctl/output"
	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/keys"
)

// CreateOptions are the parsed flags of keyctl create.
type CreateOptions struct {
	Deps
	Params      keys.CreateParams
	SecretFile  string
	IfNotExists bool
	Output      secretOutput
}

func newCreateCmd(f *Factory, runF func(context.Context, *CreateOptions) error) *cobra.Command {
	var (
		scopes, ips, meta            []string
		env, prefix, expires, quota  string
		rateLimit, name, description string
		secretFile, envVar           string
		ifNotExists                  bool
	)
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Issue a new key and show its secret once",
		Long: `Issue a new key. Its secret is shown once and never again: keyctl keeps only a
digest of it.

On a terminal the secret is shown in a block with the key's details. In a
pipe or $(...), stdout carries the secret alone and the details go to stderr,
so KEY=$(keyctl create ...) and keyctl create ... | gh secret set API_KEY work.
With -o json or yaml the object holds the key's fields and "secret"; with
-o env, stdout is KEYCTL_API_KEY=<secret> (--env-var picks the name), ready
for >> "$GITHUB_ENV" or a dotenv file. With --secret-file the secret goes only
to that new file, created with mode 0600. When GITHUB_ACTIONS=true, a
::add-mask:: command for the secret goes to stderr, where the job log sees
it, so that stdout still carries the secret alone.

Only -o on the command line changes how the secret is printed: the output
format set in the config file or KEYCTL_OUTPUT applies to listings.

--if-not-exists makes a pipeline safe to re-run: when an active key of that
--name exists, with the same environment, scopes and prefix, keyctl says so
on stderr and exits 0, creating nothing and printing no secret. A live key of
that name that is disabled, expired, or differs is refused (exit 4), naming
what differs.`,
		Example: `  keyctl create --scope sdk --env production
  keyctl create --name ci-deploy --scope deploy,read --expires 90d --secret-file ./deploy.key
  keyctl create --scope sdk --allow-ip 10.0.0.0/8 --quota 1000 --rate-limit 100/m --meta team=billing
  keyctl create --if-not-exists --name staging-ci --env staging -o env --env-var API_KEY >> "$GITHUB_ENV"`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := &CreateOptions{Deps: f.deps(), SecretFile: secretFile, IfNotExists: ifNotExists}
			p := &opts.Params
			var err error
			if p.Scopes, err = parseScopes("scope", scopes); err != nil {
				return err
			}
			if !cmd.Flags().Changed("env") {
				env = f.Config.GetString("env")
			}
			if p.Env, err = parseEnv("env", env); err != nil {
				return err
			}
			if !cmd.Flags().Changed("prefix") {
				prefix = f.Config.GetString("prefix")
			}
			if err := apikey.ValidatePrefix(prefix); err != nil {
				return flagErr("prefix", err)
			}
			p.Prefix = prefix
			if name != "" {
				if err := keys.ValidateNewName(name); err != nil {
					return flagErr("name", err)
				}
			}
			p.Name, p.Description = name, description
			if expires != "" {
				if p.ExpiresAt, _, err = parseExpires(expires, f.Now()); err != nil {
					return err
				}
			}
			if p.AllowedIPs, err = parseIPs("allow-ip", ips); err != nil {
				return err
			}
			if quota != "" {
				if p.Quota, _, err = parseQuota(quota); err != nil {
					return err
				}
			}
			if rateLimit != "" {
				if p.RateLimit, _, err = parseRateLimit(rateLimit); err != nil {
					return err
				}
			}
			if p.Metadata, err = parseMeta("meta", meta); err != nil {
				return err
			}
			if ifNotExists && name == "" {
				return withHint(flagErr("if-not-exists", fmt.Errorf("needs --name")), "the name is what tells whether the key exists")
			}
			if opts.Output, err = parseSecretOutput(cmd, envVar, secretFile); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			ignoreSIGPIPE()
			return runCreate(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&name, "name", "", "unique name (generated when omitted)")
	fl.StringArrayVar(&scopes, "scope", nil, "scope the key holds; repeat or separate with commas")
	fl.StringVar(&env, "env", "", "environment: production, staging or development (default from config, else development)")
	fl.StringVar(&prefix, "prefix", "", "token prefix, 1-16 of a-z 0-9 - _ (default from config, else sk)")
	kindVar(fl, &expires, "expires", "", "duration|date", "expiry: a duration (30s, 15m, 24h, 90d), a date (2027-01-31), an RFC 3339 time, or never")
	fl.StringArrayVar(&ips, "allow-ip", nil, "IP address or CIDR allowed to use the key (v4 or v6); repeatable")
	kindVar(fl, &quota, "quota", "", "int", "number of uses allowed (default unlimited)")
	kindVar(fl, &rateLimit, "rate-limit", "", "N/unit", "rate limit: N/s, N/m, N/h or N/d")
	fl.StringArrayVar(&meta, "meta", nil, "metadata key=value; repeatable")
	fl.StringVar(&description, "description", "", "free-text description")
	fl.StringVar(&secretFile, "secret-file", "", "write the secret to this new file (mode 0600) instead of stdout")
	fl.BoolVar(&ifNotExists, "if-not-exists", false, "do nothing (exit 0) when a key of this --name exists and is not revoked")
	fl.StringVar(&envVar, "env-var", "KEYCTL_API_KEY", "variable name for -o env")
	return cmd
}

func runCreate(ctx context.Context, opts *CreateOptions) error {
	return opts.withStore(ctx, func(s store.Store) error {
		if opts.IfNotExists {
			if k, err := s.Get(ctx, opts.Params.Name); err == nil && k.Status != keys.Revoked {
				return alreadyExists(opts.IO, k, opts.Params)
			} else if err != nil && !errors.Is(err, keys.ErrNotFound) {
				return err
			}
		}
		file, err := openSecretFile(opts.SecretFile)
		if err != nil {
			return err
		}
		is := &issuance{io: opts.IO, verb: "Created", file: file, out: opts.Output, now: opts.Now()}
		k, err := store.CreateAndDeliver(ctx, s, opts.Params, is.deliver)
		if err != nil {
			err = is.failed(err)
			if opts.IfNotExists && errors.Is(err, keys.ErrConflict) {
				// Created by another run since the check above.
				if k, gerr := s.Get(ctx, opts.Params.Name); gerr == nil {
					return alreadyExists(opts.IO, k, opts.Params)
				}
			}
			if opts.Params.Name != "" {
				return withHintIfConflict(err, "choose another --name, or revoke the key that holds it")
			}
			return err
		}
		return is.finish(k)
	})
}

// alreadyExists decides --if-not-exists when a key of the name is live: it
// is satisfied only by an active key with the environment, scopes and
// prefix asked for; any other is refused (exit 4), naming what differs.
func alreadyExists(io *output.IOStreams, k *keys.Key, p keys.CreateParams) error {
	var diffs []string
	switch k.Status {
	case keys.Disabled:
		diffs = append(diffs, "it is disabled")
	case keys.Expired:
		diffs = append(diffs, "it has expired")
	}
	if k.Env != p.Env {
		diffs = append(diffs, fmt.Sprintf("its env is %s, not %s", k.Env, p.Env))
	}
	if want := keys.NormalizeSet(p.Scopes); !slices.Equal(k.Scopes, want) {
		diffs = append(diffs, fmt.Sprintf("its scopes are %s, not %s", joinOrNone(k.Scopes), joinOrNone(want)))
	}
	if k.Prefix != p.Prefix {
		diffs = append(diffs, fmt.Sprintf("its prefix is %s, not %s", k.Prefix, p.Prefix))
	}
	if len(diffs) > 0 {
		return &exitError{code: exitRefused, err: withHint(
			fmt.Errorf("key %s (%s) exists but is not the key asked for: %s", output.Escape(k.Name), k.ID, strings.Join(diffs, "; ")),
			"change it (keyctl update, enable), revoke it, or choose another --name")}
	}
	io.Notef("keyctl: key %s (%s) already exists and is %s; nothing was created", k.Name, k.ID, k.Status)
	return nil
}

func joinOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ",")
}
