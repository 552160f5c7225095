package commands

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyctl/keyctl/output"
	"github.com/keyctl/keyctl/store/keys"
)

// secretFile is a new file that will receive a secret. It is written in
// full, and synced, under a temporary name in the same directory before the
// key commits, then linked to its name, which never replaces an existing
// file; if the key does not commit after all, it is removed.
type secretFile struct {
	path string
	tmp  *os.File
}

// openSecretFile checks that path is free and creates the temporary file
// beside it (mode 0600), before any key is created: a path that cannot be
// written is a usage error that changes nothing.
func openSecretFile(path string) (*secretFile, error) {
	if path == "" {
		return nil, nil
	}
	if _, err := os.Lstat(path); err == nil {
		return nil, existsErr(path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, flagErr("secret-file", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".keyctl-*")
	if err != nil {
		return nil, flagErr("secret-file", err)
	}
	return &secretFile{path: path, tmp: tmp}, nil
}

func existsErr(path string) error {
	return withHint(flagErr("secret-file", fmt.Errorf("%s already exists; keyctl never overwrites a file", path)),
		"choose a new path, or remove the old file first")
}

// write delivers the secret: the temporary file is written, synced and
// linked to the file's name, and the directory synced.
func (s *secretFile) write(secret string) error {
	_, err := fmt.Fprintln(s.tmp, secret)
	if err == nil {
		err = s.tmp.Sync()
	}
	if cerr := s.tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Link(s.tmp.Name(), s.path)
		if errors.Is(err, fs.ErrExist) {
			err = fmt.Errorf("%s was created meanwhile; keyctl never overwrites a file", s.path)
		}
	}
	os.Remove(s.tmp.Name())
	if err != nil {
		return fmt.Errorf("writing the secret to %s: %w", s.path, err)
	}
	if dir, err := os.Open(filepath.Dir(s.path)); err == nil {
		dir.Sync()
		dir.Close()
	}
	return nil
}

// abandon removes the temporary file when no secret was written.
func (s *secretFile) abandon() {
	if s != nil {
		s.tmp.Close()
		os.Remove(s.tmp.Name())
	}
}

// remove removes the written file when its key did not commit after all.
func (s *secretFile) remove() {
	if s != nil {
		os.Remove(s.path)
	}
}

// ignoreSIGPIPE makes a write to a closed pipe fail with EPIPE instead of
// killing the process, so that create and rotate learn that their secret
// did not arrive (keyctl create | false) and undo the key.
func ignoreSIGPIPE() { signal.Ignore(syscall.SIGPIPE) }

// issuance is what create and rotate print around a new secret, and what
// they do when it cannot be delivered or its key does not commit.
type issuance struct {
	io     *output.IOStreams
	verb   string // "Created", "Rotated"
	notice string // for people, e.g. how long the previous secret works
	file   *secretFile
	out    secretOutput
	now    time.Time

	delivered bool
}

// deliver hands the secret over, for the store to call before it commits:
// into the file, or on stdout as printIssued shows it. An error writing it
// means it did not arrive.
func (is *issuance) deliver(k *keys.Key, secret string) error {
	if is.file != nil {
		if err := is.file.write(secret); err != nil {
			return err
		}
	} else if err := printIssued(is.io, is.issued(k, secret)); err != nil {
		return err
	}
	is.delivered = true
	return nil
}

// finish prints, once the key is committed, what goes with a secret
// written to a file. A failure to print it now leaves the key as it is:
// its secret is in the file.
func (is *issuance) finish(k *keys.Key) error {
	if is.file == nil {
		return nil
	}
	return printIssued(is.io, is.issued(k, ""))
}

// failed cleans up after the store refused or failed: the file goes, and a
// secret that reached stdout before a failed commit is said to be void.
func (is *issuance) failed(err error) error {
	if is.file != nil {
		if is.delivered {
			is.file.remove()
		} else {
			is.file.abandon()
		}
		return err
	}
	if is.delivered {
		return fmt.Errorf("%w; the secret printed above was never valid", err)
	}
	return err
}

func (is *issuance) issued(k *keys.Key, secret string) issued {
	return issued{key: k, secret: secret, headline: fmt.Sprintf("%s key %s (%s)", is.verb, output.Escape(k.Name), output.Escape(k.ID)),
		notice: is.notice, file: is.file, out: is.out, now: is.now}
}

// issued is what printIssued shows: the key, its secret (empty once it went
// to a file), and a line saying what happened.
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
// json|yaml; as NAME=secret with -o env; or, with --secret-file, not at all
// (r.secret is empty: the file has it). In GitHub Actions, a mask command
// for the job log comes first, on stderr: the runner reads workflow
// commands from both streams, and stdout carries the data alone. The error
// is the first write to stdout that failed.
func printIssued(ios *output.IOStreams, r issued) error {
	stdout := &errWriter{w: ios.Out}
	err := writeIssued(ios, stdout, r)
	if stdout.err != nil {
		return fmt.Errorf("writing the secret to stdout: %w", stdout.err)
	}
	return err
}

func writeIssued(ios *output.IOStreams, stdout io.Writer, r issued) error {
	if r.out.mask && r.secret != "" {
		fmt.Fprintf(ios.ErrOut, "::add-mask::%s\n", r.secret)
	}
	switch r.out.format {
	case output.JSON:
		return output.WriteJSON(stdout, keyWithSecret{r.key, r.secret})
	case output.YAML:
		return output.WriteYAML(stdout, keyWithSecret{r.key, r.secret})
	}

	toTTY := ios.IsStdoutTTY() && r.out.format == output.Table
	details := ios.ErrOut
	if toTTY {
		details = stdout
	}
	fmt.Fprintf(details, "%s\n\n", r.headline)
	output.KeyDetails(ios, details, r.key, r.now)
	if r.notice != "" {
		fmt.Fprintf(details, "\n%s\n", r.notice)
	}
	switch {
	case r.file != nil:
		fmt.Fprintf(details, "\nThe secret was written to %s (mode 0600). It is not stored anywhere else.\n", r.file.path)
	case toTTY:
		fmt.Fprintf(stdout, "\n%-13s %s\n\n", "Secret:", r.secret)
		fmt.Fprintln(stdout, "Copy the secret now: keyctl stores only its digest and cannot show it again.")
	case r.out.format == output.Env:
		fmt.Fprintf(details, "\nThe secret is on stdout as %s. keyctl stores only its digest and cannot show it again.\n", r.out.envVar)
		fmt.Fprintf(stdout, "%s=%s\n", r.out.envVar, r.secret)
	default:
		fmt.Fprintln(details, "\nThe secret is on stdout. keyctl stores only its digest and cannot show it again.")
		fmt.Fprintln(stdout, r.secret)
	}
	return nil
}

// errWriter keeps the first error of its writer, and writes nothing after
// it.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	if err != nil {
		e.err = err
	}
	return n, err
}
