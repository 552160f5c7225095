// Package commands is keyctl's command line: one file per verb, each parsing
// its flags into options and handing them to a run function that talks only
// to the store and the printers.
package commands

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyctl/keyctl/output"
	"github.com/keyctl/keyctl/store/keys"
)

const exitStatusHelp = `EXIT STATUS
  0   success
  1   failure (the database could not be read, the server refused the token, ...)
  2   usage error: an unknown flag, a missing argument or a bad value
  3   key not found
  4   refused in the key's state (a revoked key cannot be changed; a name is in use)
  5   forbidden: the acting key may not make this change (only an owner key
      may touch a key that holds keyctl:* scopes)
  130 interrupted (Ctrl-C); 143 terminated (SIGTERM)`

// Main runs keyctl and returns its exit status.
func Main() int { return mainWith(time.Now) }

// interruptGrace is how long an interrupted command has to stop where it
// checks its context (rolling back, restoring the terminal) before keyctl
// exits anyway: a read blocked on a pipe or a terminal does not wait.
const interruptGrace = 500 * time.Millisecond

// mainWith runs keyctl on the clock now: the process's, or a test's.
//
// Ctrl-C (or SIGTERM) cancels the command's context and keyctl exits at
// once with 130 (143), saying so: a command stops where it checks its
// context, and never starts another change after it. keyctl serve alone
// stops gracefully, on its own, and exits as it says.
func mainWith(now func() time.Time) int {
	io := output.System()
	f := newFactory(io, now)
	root := newRootCmd(f)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	var err error
	select {
	case err = <-done:
	case sig := <-sigs:
		cancel()
		if f.graceful.Load() {
			select {
			case err = <-done:
			case sig = <-sigs: // a second signal does not wait
				return interrupted(io, sig)
			}
			break
		}
		select {
		case <-done:
		case <-time.After(interruptGrace):
		case sig = <-sigs:
		}
		return interrupted(io, sig)
	}
	if err == nil {
		return exitOK
	}
	if !isUsageError(err) && strings.HasPrefix(err.Error(), "unknown command") {
		err = &usageError{err}
	}
	printError(io.ErrOut, err)
	return exitCode(err)
}

// interrupted says that keyctl stopped on sig, and returns its exit status:
// 128 plus the signal's number, as a shell reports it.
func interrupted(io *output.IOStreams, sig os.Signal) int {
	if sig == syscall.SIGTERM {
		fmt.Fprintln(io.ErrOut, "keyctl: terminated")
		return 128 + int(syscall.SIGTERM)
	}
	fmt.Fprintln(io.ErrOut, "keyctl: interrupted")
	return 128 + int(syscall.SIGINT)
}

func isUsageError(err error) bool {
	var ue *usageError
	return errors.As(err, &ue)
}

func newRootCmd(f *Factory) *cobra.Command {
	root := &cobra.Command{
		Use:   "keyctl <command>",
		Short: "Administer API keys: create, rotate, revoke and check them",
		Long: `keyctl issues and administers API keys (sk_live_..., sk_test_...): it shows a
key's secret once, stores only a digest of it, and manages the key's scopes,
environment, expiry, allowed addresses, quota and rate limit.

Keys live in a local SQLite database (--db, KEYCTL_DB; by default
$XDG_DATA_HOME/keyctl/keyctl.db), created on first use, or in a PostgreSQL
database that several 'keyctl serve' replicas share (--db postgres://...).
'keyctl serve' puts one behind an HTTP API.

Remote mode: with --server URL (KEYCTL_SERVER) every command talks to a
keyctl server instead, with the same output and exit statuses. The token is
a key made on the server's database, with a keyctl:* scope: in KEYCTL_TOKEN,
or in the file --token-file (KEYCTL_TOKEN_FILE) names, never on the command
line. --db on the command line still means that local database.

` + exitStatusHelp,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkEmpty(cmd); err != nil {
				return err
			}
			return f.loadConfig(cmd)
		},
	}
	root.Version = Version()
	root.SetVersionTemplate(versionLine())
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return withHint(&usageError{err}, "see '"+cmd.CommandPath()+" --help'")
	})
	root.SetOut(f.IO.Out)
	root.SetErr(f.IO.ErrOut)
	root.SetIn(f.IO.In)

	pf := root.PersistentFlags()
	pf.String("db", "", "path of the SQLite database, or a postgres:// URL (env KEYCTL_DB)")
	pf.String("config", "", "path of the config file (env KEYCTL_CONFIG; default $XDG_CONFIG_HOME/keyctl/config.yaml)")
	pf.StringP("output", "o", "", "output format: table, json or yaml (env KEYCTL_OUTPUT)")
	pf.String("server", "", "URL of a keyctl server to use instead of a local database (env KEYCTL_SERVER)")
	pf.String("token-file", "", "file holding the token for --server (else env KEYCTL_TOKEN)")
	pf.Bool("allow-http", false, "let --server be plain http:// to an address that is not loopback (env KEYCTL_ALLOW_HTTP)")

	root.AddCommand(
		newCreateCmd(f, nil),
		newListCmd(f, nil),
		newShowCmd(f, nil),
		newUpdateCmd(f, nil),
		newRotateCmd(f, nil),
		newDisableCmd(f, nil),
		newEnableCmd(f, nil),
		newRevokeCmd(f, nil),
		newVerifyCmd(f, nil),
		newUsageCmd(f, nil),
		newScanCmd(f, nil),
		newAuditCmd(f, nil),
		newServeCmd(f, nil),
		newMigrateCmd(f, nil),
		newCopyCmd(f, nil),
		newVersionCmd(f, nil),
	)
	root.CompletionOptions.HiddenDefaultCmd = true
	root.AddCommand(newCompletionCmd())
	completeFlagValues(f, root)
	return root
}

// exactKey requires exactly one KEY argument, as a usage error.
func exactKey(cmd *cobra.Command, args []string) error {
	switch {
	case len(args) == 0:
		return withHint(usagef("%s needs a KEY (an id or a name)", cmd.Name()), "see '"+cmd.CommandPath()+" --help'")
	case len(args) > 1:
		return usagef("%s takes one KEY, got %d arguments", cmd.Name(), len(args))
	}
	return nil
}

// noArgs refuses positional arguments, as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %q", cmd.Name(), keys.Redact(args[0]))
	}
	return nil
}
