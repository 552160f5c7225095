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
	Ref    string
	Secret secretSource // when the key is named by a secret of it
	Format output.Format
}

func newShowCmd(f *Factory, runF func(context.Context, *ShowOptions) error) *cobra.Command {
	var secret, fromEnv string
	cmd := &cobra.Command{
		Use:   "show KEY",
		Short: "Show a key's details (never its secret)",
		Long: `Show everything keyctl knows about a key, by id or name: its settings, state
and usage. A name is the key of that name that is not revoked, else the one
revoked most recently. With -o json the output is one key object.

A leaked secret finds its key: --secret - reads the secret from stdin (a
hidden prompt on a terminal), --secret-from-env VAR from a variable; the
output then says whether that secret is the key's current one, an old one
still in its rotation grace, or one that works no more. A secret given as
KEY is taken the same way, with a warning. The secret is never printed.`,
		Example: `  keyctl show billing
  keyctl show key_4f3GhT9kLmNpQr2s -o json
  pbpaste | keyctl show --secret -`,
		Args:              cobra.ArbitraryArgs,
		ValidArgsFunction: completeKeys(f, true),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := &ShowOptions{}
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
			return runShow(cmd.Context(), f, opts)
		},
	}
	addSecretFlags(cmd, &secret, &fromEnv)
	return cmd
}

func runShow(ctx context.Context, f *Factory, opts *ShowOptions) error {
	if !opts.Secret.given() {
		return f.withStore(ctx, func(s store.Store) error {
			k, err := s.Get(ctx, opts.Ref)
			if err != nil {
				return err
			}
			return printKey(f, opts.Format, k)
		})
	}
	tok, err := opts.Secret.read(f)
	if err != nil {
		return err
	}
	return f.withStore(ctx, func(s store.Store) error {
		k, state, err := s.FindSecret(ctx, tok)
		if err != nil {
			return err
		}
		return printData(f, opts.Format, keyWithSecretState{k, secretStateOf(state)}, func() error {
			output.KeyDetails(f.IO, f.IO.Out, k, f.Now())
			fmt.Fprintf(f.IO.Out, "\n%-13s %s\n", "This secret:", describeSecret(secretStart(tok), k, state, f.Now()))
			return nil
		})
	})
}

// keyWithSecretState is show's JSON and YAML when a secret named the key:
// the key object, and the state of that secret.
type keyWithSecretState struct {
	*keys.Key
	SecretState secretStateJSON `json:"secret_state"`
}

type secretStateJSON struct {
	Current bool       `json:"current"`
	EndsAt  *time.Time `json:"ends_at"`
}

func secretStateOf(st keys.SecretState) secretStateJSON {
	return secretStateJSON{Current: st.Current, EndsAt: st.EndsAt}
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
