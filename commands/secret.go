package commands

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyctl/keyctl/output"
	"github.com/keyctl/keyctl/store/keys"
)

// secretFile is a new file, made 0600 before any key is created, that will
// receive a secret. It never overwrites an existing file.
type secretFile struct {
	path string
	f    *os.File
}

func openSecretFile(path string) (*secretFile, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil, withHint(flagErr("secret-file", fmt.Errorf("%s already exists; keyctl never overwrites a file", path)),
			"choose a new path, or remove the old file first")
	}
	if err != nil {
		return nil, flagErr("secret-file", err)
	}
	return &secretFile{path: path, f: f}, nil
}

// abandon removes the file when no key came to be.
func (s *secretFile) abandon() {
	if s != nil {
		s.f.Close()
		os.Remove(s.path)
	}
}

func (s *secretFile) write(secret string) error {
	_, err := fmt.Fprintln(s.f, secret)
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing the secret to %s: %w", s.path, err)
	}
	return nil
}

// issued is what create and rotate print: the key, its secret, and a line
// saying what happened.
type issued struct {
	key      *keys.Key
	secret   string
	headline string // e.g. "Created key billing (key_...)"
	notice   string // extra line for people, e.g. how long the old secret works
	file     *secretFile
	out      secretOutput
	now      time.Time
}

// secretOutput is how create and rotate print a secret: the -o format, the
// variable name for -o env, and whether to mask it in a GitHub Actions log.
type secretOutput struct {
	format output.Format
	envVar string
	mask   bool
}

// parseSecretOutput reads -o (table, json, yaml or env), --env-var and
// GITHUB_ACTIONS, and checks that they go together with --secret-file.
//
// Only -o on the command line changes how the secret is printed: a default
// output format from the config file or KEYCTL_OUTPUT is for listings, and
// must not change what KEY=$(keyctl create) captures.
func parseSecretOutput(cmd *cobra.Command, envVar, secretFile string) (secretOutput, error) {
	format := output.Table
	if fl := cmd.Flags().Lookup("output"); fl != nil && fl.Changed {
		var err error
		if format, err = output.ParseFormat(fl.Value.String(), output.Table, output.JSON, output.YAML, output.Env); err != nil {
			return secretOutput{}, flagErr("output", err)
		}
	}
	envVarSet := cmd.Flags().Changed("env-var")
	switch {
	case envVarSet && format != output.Env:
		return secretOutput{}, flagErr("env-var", fmt.Errorf("goes with -o env"))
	case !envVarRE.MatchString(envVar):
		return secretOutput{}, flagErr("env-var", fmt.Errorf("%q is not a variable name (letters, digits and _, not starting with a digit)", envVar))
	case format == output.Env && secretFile != "":
		return secretOutput{}, usagef("-o env prints the secret; --secret-file keeps it off stdout: choose one")
	}
	return secretOutput{format: format, envVar: envVar, mask: os.Getenv("GITHUB_ACTIONS") == "true"}, nil
}

var envVarRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// keyWithSecret is the JSON and YAML form of an issued key.
type keyWithSecret struct {
	*keys.Key
	Secret string `json:"secret,omitempty"`
}

// printIssued shows a secret exactly once: in a block on a terminal; alone on
// stdout, with the details on stderr, in a pipe; in the object with -o
// json|yaml; as NAME=secret with -o env; or only in the file with
// --secret-file. In GitHub Actions, a mask command for the job log comes
// first, on stderr: the runner reads workflow commands from both streams,
// and stdout carries the data alone.
func printIssued(io *output.IOStreams, r issued) error {
	if r.file != nil {
		if err := r.file.write(r.secret); err != nil {
			return err
		}
		r.secret = ""
	}
	if r.out.mask && r.secret != "" {
		fmt.Fprintf(io.ErrOut, "::add-mask::%s\n", r.secret)
	}
	switch r.out.format {
	case output.JSON:
		return output.WriteJSON(io.Out, keyWithSecret{r.key, r.secret})
	case output.YAML:
		return output.WriteYAML(io.Out, keyWithSecret{r.key, r.secret})
	}

	toTTY := io.IsStdoutTTY() && r.out.format == output.Table
	details := io.ErrOut
	if toTTY {
		details = io.Out
	}
	fmt.Fprintf(details, "%s\n\n", r.headline)
	output.KeyDetails(io, details, r.key, r.now)
	if r.notice != "" {
		fmt.Fprintf(details, "\n%s\n", r.notice)
	}
	switch {
	case r.file != nil:
		fmt.Fprintf(details, "\nThe secret was written to %s (mode 0600). It is not stored anywhere else.\n", r.file.path)
		return nil
	case toTTY:
		fmt.Fprintf(io.Out, "\n%-13s %s\n\n", "Secret:", r.secret)
		fmt.Fprintln(io.Out, "Copy the secret now: keyctl stores only its digest and cannot show it again.")
		return nil
	case r.out.format == output.Env:
		fmt.Fprintf(details, "\nThe secret is on stdout as %s. keyctl stores only its digest and cannot show it again.\n", r.out.envVar)
		_, err := fmt.Fprintf(io.Out, "%s=%s\n", r.out.envVar, r.secret)
		return err
	}
	fmt.Fprintln(details, "\nThe secret is on stdout. keyctl stores only its digest and cannot show it again.")
	_, err := fmt.Fprintln(io.Out, r.secret)
	return err
}
