package commands

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/keyctl/keyctl/apikey"
	"github.com/keyctl/keyctl/output"
	"github.com/keyctl/keyctl/store"
)

// CreateOptions are the parsed flags of keyctl create.
type CreateOptions struct {
	Params     store.CreateParams
	SecretFile string
	Format     output.Format
}

func newCreateCmd(f *Factory, runF func(context.Context, *CreateOptions) error) *cobra.Command {
	var (
		scopes, ips, meta            []string
		env, prefix, expires, quota  string
		rateLimit, name, description string
		secretFile                   string
	)
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Issue a new key and show its secret once",
		Long: `Issue a new key. Its secret is shown once and never again: keyctl keeps only a
digest of it.

On a terminal the secret is shown in a block with the key's details. In a
pipe or $(...), stdout carries the secret alone and the details go to stderr,
so KEY=$(keyctl create ...) and keyctl create ... | gh secret set API_KEY work.
With -o json or yaml the object holds the key's fields and "secret". With
--secret-file the secret goes only to that new file, created with mode 0600.`,
		Example: `  keyctl create --scope sdk --env production
  keyctl create --name ci-deploy --scope deploy,read --expires 90d --secret-file ./deploy.key
  keyctl create --scope sdk --allow-ip 10.0.0.0/8 --quota 1000 --rate-limit 100/m --meta team=billing`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := &CreateOptions{SecretFile: secretFile}
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
				if err := store.ValidateName(name); err != nil {
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
			if opts.Format, err = f.outputFormat(); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runCreate(cmd.Context(), f, opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&name, "name", "", "unique name (generated when omitted)")
	fl.StringArrayVar(&scopes, "scope", nil, "scope the key holds; repeat or separate with commas")
	fl.StringVar(&env, "env", "", "environment: production, staging or development (default from config, else development)")
	fl.StringVar(&prefix, "prefix", "", "token prefix, 1-16 of a-z 0-9 - _ (default from config, else sk)")
	fl.StringVar(&expires, "expires", "", "expiry: a duration (30s, 15m, 24h, 90d), a date (2027-01-31), an RFC 3339 time, or never")
	fl.StringArrayVar(&ips, "allow-ip", nil, "IP address or CIDR allowed to use the key (v4 or v6); repeatable")
	fl.StringVar(&quota, "quota", "", "number of uses allowed (default unlimited)")
	fl.StringVar(&rateLimit, "rate-limit", "", "rate limit: N/s, N/m, N/h or N/d")
	fl.StringArrayVar(&meta, "meta", nil, "metadata key=value; repeatable")
	fl.StringVar(&description, "description", "", "free-text description")
	fl.StringVar(&secretFile, "secret-file", "", "write the secret to this new file (mode 0600) instead of stdout")
	return cmd
}

func runCreate(ctx context.Context, f *Factory, opts *CreateOptions) error {
	file, err := openSecretFile(opts.SecretFile)
	if err != nil {
		return err
	}
	return f.withStore(ctx, func(s store.Store) error {
		k, secret, err := s.Create(ctx, opts.Params)
		if err != nil {
			file.abandon()
			if opts.Params.Name != "" {
				return withHintIfConflict(err, "choose another --name, or revoke the key that holds it")
			}
			return err
		}
		return printIssued(f.IO, issued{
			key: k, secret: secret, file: file, format: opts.Format, now: f.Now(),
			headline: fmt.Sprintf("Created key %s (%s)", k.Name, k.ID),
		})
	})
}
