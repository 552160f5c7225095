package commands

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyctl/keyctl/output"
	"github.com/keyctl/keyctl/store"
)

// RotateOptions are the parsed flags of keyctl rotate.
type RotateOptions struct {
	Deps
	Ref        string
	Grace      time.Duration
	SecretFile string
	Output     secretOutput
	// EndGrace ends the grace of the key's old secrets instead of rotating.
	EndGrace bool
}

func newRotateCmd(f *Factory, runF func(context.Context, *RotateOptions) error) *cobra.Command {
	var grace, secretFile, envVar string
	var endGrace bool
	cmd := &cobra.Command{
		Use:   "rotate KEY",
		Short: "Give a key a new secret, keeping everything else",
		Long: `Give a key a new secret. Its id, name, scopes, environment, prefix and every
setting stay. The old secret stops working at once, or at the end of --grace,
until when both work. The new secret is shown once, as by create (-o env and
the GitHub Actions mask included). If it cannot be delivered (a broken pipe,
a full disk), the key keeps its secrets and keyctl exits 1.

--end-grace rotates nothing: it ends now the grace of every old secret still
working, and the current secret stays ('keyctl show' lists them).

A revoked key cannot be rotated (exit 4).`,
		Example: `  keyctl rotate billing
  keyctl rotate billing --grace 24h | gh secret set BILLING_API_KEY
  keyctl rotate billing --end-grace`,
		Args:              exactKey,
		ValidArgsFunction: completeKeys(f, false),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := &RotateOptions{Deps: f.deps(), Ref: args[0], SecretFile: secretFile, EndGrace: endGrace}
			var err error
			if endGrace {
				for _, other := range []string{"grace", "secret-file", "env-var"} {
					if cmd.Flags().Changed(other) {
						return usagef("--end-grace issues no secret: it does not go with --%s", other)
					}
				}
			}
			if grace != "" {
				if opts.Grace, err = parseDuration(grace); err != nil {
					return flagErr("grace", err)
				}
				if opts.Grace < 0 {
					return flagErr("grace", fmt.Errorf("%q is negative", grace))
				}
			}
			if opts.Output, err = parseSecretOutput(cmd, envVar, secretFile); err != nil {
				return err
			}
			if endGrace && opts.Output.format == output.Env {
				return flagErr("output", fmt.Errorf("--end-grace prints the key, not a secret: use table, json or yaml"))
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			ignoreSIGPIPE()
			return runRotate(cmd.Context(), opts)
		},
	}
	kindVar(cmd.Flags(), &grace, "grace", "", "duration", "how long the old secret keeps working (e.g. 1h, 7d; default: it stops now)")
	cmd.Flags().StringVar(&secretFile, "secret-file", "", "write the new secret to this new file (mode 0600) instead of stdout")
	cmd.Flags().StringVar(&envVar, "env-var", "KEYCTL_API_KEY", "variable name for -o env")
	cmd.Flags().BoolVar(&endGrace, "end-grace", false, "end now the grace of the key's old secrets, rotating nothing")
	return cmd
}

func runRotate(ctx context.Context, opts *RotateOptions) error {
	if opts.EndGrace {
		return runEndGrace(ctx, opts)
	}
	return opts.withStore(ctx, func(s store.Store) error {
		file, err := openSecretFile(opts.SecretFile)
		if err != nil {
			return err
		}
		now := opts.Now()
		is := &issuance{io: opts.IO, verb: "Rotated", file: file, out: opts.Output, now: now,
			notice: graceNotice(opts.Grace, now)}
		k, err := store.RotateAndDeliver(ctx, s, opts.Ref, opts.Grace, is.deliver)
		if err != nil {
			return is.failed(err)
		}
		return is.finish(k)
	})
}

// runEndGrace ends the grace of a key's old secrets and says how many.
func runEndGrace(ctx context.Context, opts *RotateOptions) error {
	return opts.withStore(ctx, func(s store.Store) error {
		k, n, err := s.EndGrace(ctx, opts.Ref)
		if err != nil {
			return err
		}
		if n == 0 {
			opts.IO.Notef("Key %s (%s) has no old secret in a grace period: nothing to end", k.Name, k.ID)
		} else {
			opts.IO.Notef("Ended the grace of %s of key %s (%s); its current secret still works",
				output.Plural(n, "old secret", "old secrets"), k.Name, k.ID)
		}
		if opts.Output.format == output.Table {
			return nil
		}
		return printKey(opts.Deps, opts.Output.format, k)
	})
}

// graceNotice says when the old secret stops working.
func graceNotice(grace time.Duration, now time.Time) string {
	if grace <= 0 {
		return "The previous secret stopped working now."
	}
	end := now.Add(grace).UTC().Truncate(time.Second)
	return fmt.Sprintf("The previous secret keeps working until %s (%s).",
		end.Format(time.RFC3339), output.Relative(now.Add(grace), now))
}
