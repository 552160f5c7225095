package commands

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/keyctl/keyctl/apikey"
	"github.com/keyctl/keyctl/output"
	"github.com/keyctl/keyctl/store/keys"
)

// A command that acts on a key may be given the key's secret instead of its
// name, as a leaked secret is what an incident starts from: --secret -
// reads it from stdin (a hidden prompt on a terminal), --secret-from-env
// VAR from a variable. A secret given where KEY is expected is taken the
// same way, with a warning. The secret is never printed, nor sent in a URL.

// secretSource is where a command takes a secret from.
type secretSource struct {
	stdin   bool   // --secret -
	fromEnv string // --secret-from-env
	arg     string // a token-shaped KEY argument
}

// given reports whether a secret, not a KEY, names the key.
func (s secretSource) given() bool { return s.stdin || s.fromEnv != "" || s.arg != "" }

// addSecretFlags adds --secret and --secret-from-env to cmd.
func addSecretFlags(cmd *cobra.Command, secret, fromEnv *string) {
	cmd.Flags().StringVar(secret, "secret", "", "find the key by a secret of it, read from stdin: --secret - (a hidden prompt on a terminal)")
	cmd.Flags().StringVar(fromEnv, "secret-from-env", "", "find the key by a secret of it, read from this environment variable")
}

// parseSecretSource checks the KEY argument and the secret flags together:
// a KEY or a secret, not both, and a secret never as a flag's value.
func parseSecretSource(cmd *cobra.Command, args []string, secret, fromEnv string) (ref string, src secretSource, err error) {
	if secret != "" && secret != "-" {
		return "", src, withHint(flagErr("secret", fmt.Errorf("takes - (stdin), not the secret itself: a command line is visible to other users")),
			"pipe the secret in: ... | keyctl "+cmd.Name()+" --secret -; or use --secret-from-env VAR")
	}
	if secret != "" && fromEnv != "" {
		return "", src, usagef("choose one of --secret and --secret-from-env")
	}
	src = secretSource{stdin: secret == "-", fromEnv: fromEnv}
	switch {
	case src.given() && len(args) > 0:
		return "", src, usagef("%s takes a KEY or a secret (--secret, --secret-from-env), not both", cmd.Name())
	case src.given():
		return "", src, nil
	}
	if err := exactKey(cmd, args); err != nil {
		return "", src, err
	}
	if keys.LooksLikeToken(args[0]) {
		return "", secretSource{arg: args[0]}, nil
	}
	return args[0], src, nil
}

// read returns the secret, checked for shape and checksum. It is never
// echoed: not in an error, not in a warning.
func (s secretSource) read(ctx context.Context, ios *output.IOStreams) (string, error) {
	var tok string
	switch {
	case s.arg != "":
		ios.Notef("keyctl: warning: that argument is a secret, and a command line is visible to other users (ps, shell history); taking it as --secret; rotate or revoke it if others may have seen it")
		tok = s.arg
	case s.fromEnv != "":
		v, ok := os.LookupEnv(s.fromEnv)
		if !ok {
			return "", flagErr("secret-from-env", fmt.Errorf("environment variable %s is not set", s.fromEnv))
		}
		tok = strings.TrimSpace(v)
	case ios.IsStdinTTY():
		fmt.Fprint(ios.ErrOut, "Secret: ")
		b, err := readHidden(ctx, ios)
		if err != nil {
			return "", err
		}
		tok = strings.TrimSpace(b)
	default:
		var err error
		if tok, err = readLimited(ios.In); err != nil {
			return "", err
		}
	}
	if _, err := apikey.Parse(tok); err != nil {
		what := "--secret"
		if s.fromEnv != "" {
			what = "--secret-from-env " + s.fromEnv
		}
		return "", usagef("%s: not a keyctl secret (its shape or its checksum does not hold)", what)
	}
	return tok, nil
}

// secretStart is a secret's display start, e.g. sk_live_AbCd1234….
func secretStart(tok string) string {
	t, err := apikey.Parse(tok)
	if err != nil {
		return keys.Redact(tok)
	}
	return t.Start() + "…"
}
