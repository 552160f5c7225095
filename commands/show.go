package commands

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyctl/keyctl/output"
	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/keys"
)

// ShowOptions are the parsed flags of keyctl show.
type ShowOptions struct {
	Deps
	Ref    string
	Secret secretSource // when the key is named by a secret of it
	Format output.Format
}

func newShowCmd(f *Factory, runF func(context.Context, *ShowOptions) error) *cobra.Command {
	var secret, fromEnv string
	cmd := &cobra.Command{
		Use:   "show KEY",
		Short: "Show a key's details (never its secret)",
		Long: `Show everything keyctl knows about a key, by id or name: its settings, state,
usage, and its live secrets (never the secrets themselves): the current one
and any old one still working in a rotation's grace, with when each was
issued and when it ends ('keyctl rotate KEY --end-grace' ends them now). A
name is the key of that name that is not revoked, else the one revoked most
recently. With -o json the output is one key object, with "secrets".

A leaked secret finds its key: --secret - reads the secret from stdin (a
hidden prompt on a terminal), --secret-from-env VAR from a variable; the
output then also says whether that secret is the key's current one, an old
one still in its rotation grace, or one that works no more ("secret_state"
with -o json). A secret given as KEY is taken the same way, with a warning.
The secret is never printed.`,
		Example: `  keyctl show billing
  keyctl show key_4f3GhT9kLmNpQr2s -o json
  pbpaste | keyctl show --secret -`,
		Args:              cobra.ArbitraryArgs,
		ValidArgsFunction: completeKeys(f, true),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := &ShowOptions{Deps: f.deps()}
			var err error
			if opts.Ref, opts.Secret, err = parseSecretSource(cmd, args, secret, fromEnv); err != nil {
				return err
			}
			if opts.Format, err = f.outputFormat(); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runShow(cmd.Context(), opts)
		},
	}
	addSecretFlags(cmd, &secret, &fromEnv)
	return cmd
}

func runShow(ctx context.Context, opts *ShowOptions) error {
	var tok string
	if opts.Secret.given() {
		var err error
		if tok, err = opts.Secret.read(ctx, opts.IO); err != nil {
			return err
		}
	}
	return opts.withStore(ctx, func(s store.Store) error {
		var k *keys.Key
		var state *keys.SecretState
		var err error
		if tok == "" {
			k, err = s.Get(ctx, opts.Ref)
		} else {
			var st keys.SecretState
			k, st, err = s.FindSecret(ctx, tok)
			state = &st
		}
		if err != nil {
			return err
		}
		secrets, err := s.Secrets(ctx, k.ID)
		if err != nil {
			return err
		}
		out := keyWithSecrets{Key: k, Secrets: secrets}
		if state != nil {
			out.SecretState = &secretStateJSON{Current: state.Current, EndsAt: state.EndsAt}
		}
		return printData(opts.IO, opts.Format, out, func() error {
			output.KeyDetails(opts.IO, opts.IO.Out, k, opts.Now())
			output.SecretLines(opts.IO, opts.IO.Out, secrets, opts.Now())
			if state != nil {
				fmt.Fprintf(opts.IO.Out, "\n%-13s %s\n", "This secret:", describeSecret(secretStart(tok), k, *state, opts.Now()))
			}
			return nil
		})
	})
}

// keyWithSecrets is the JSON and YAML form of show: the key, its live
// secrets, and, when a secret named the key, that secret's state.
type keyWithSecrets struct {
	*keys.Key
	Secrets     []keys.SecretInfo `json:"secrets"`
	SecretState *secretStateJSON  `json:"secret_state,omitempty"`
}

type secretStateJSON struct {
	Current bool       `json:"current"`
	EndsAt  *time.Time `json:"ends_at"`
}

// describeSecret says, for people, what a secret of k is worth now.
func describeSecret(start string, k *keys.Key, st keys.SecretState, now time.Time) string {
	switch {
	case k.Status == keys.Revoked:
		return start + " is dead: its key is revoked"
	case st.Current:
		return start + " is the key's current secret"
	case st.Live(now):
		return fmt.Sprintf("%s is an old secret, still in its rotation grace: it stops working at %s (%s)",
			start, st.EndsAt.UTC().Format(time.RFC3339), output.Relative(*st.EndsAt, now))
	}
	return fmt.Sprintf("%s was rotated out: it stopped working at %s", start, st.EndsAt.UTC().Format(time.RFC3339))
}
