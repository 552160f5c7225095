package commands

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/keyctl/keyctl/output"
	"github.com/keyctl/keyctl/store/keys"
	"github.com/keyctl/keyctl/store/remote"
)

// Exit statuses: a documented contract.
const (
	exitOK        = 0
	exitFailure   = 1
	exitUsage     = 2
	exitNotFound  = 3
	exitRefused   = 4
	exitForbidden = 5
)

// usageError is bad input on the command line: exit 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usagef returns a usage error.
func usagef(format string, a ...any) error {
	return &usageError{fmt.Errorf(format, a...)}
}

// flagErr returns a usage error naming the flag whose value is bad.
func flagErr(flag string, err error) error {
	return &usageError{fmt.Errorf("--%s: %w", flag, err)}
}

// hintError adds a hint line to an error.
type hintError struct {
	err  error
	hint string
}

func (e *hintError) Error() string { return e.err.Error() }
func (e *hintError) Unwrap() error { return e.err }

func withHint(err error, hint string) error { return &hintError{err, hint} }

// exitError carries an exit status decided by the command itself.
type exitError struct {
	code int
	err  error // nil when the command has already said what there is to say
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

// exitCode chooses the exit status for err: the one place that does.
func exitCode(err error) int {
	var ee *exitError
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue), errors.Is(err, keys.ErrInvalid):
		return exitUsage
	case errors.Is(err, keys.ErrNotFound):
		return exitNotFound
	case errors.Is(err, keys.ErrRevoked), errors.Is(err, keys.ErrConflict):
		return exitRefused
	case errors.Is(err, remote.ErrUnauthorized):
		// The server refused the token (401, 403 or 429; a 403 is also
		// ErrForbidden): as documented, a failure, like an unreadable
		// database.
		return exitFailure
	case errors.Is(err, keys.ErrForbidden):
		return exitForbidden
	}
	return exitFailure
}

// printError writes err as one lower-case line, and a hint where one helps.
func printError(w io.Writer, err error) {
	var ee *exitError
	if errors.As(err, &ee) && ee.err == nil {
		return
	}
	// An error may carry stored text, or a server's message: escaped, it
	// cannot rewrite the terminal.
	msg := output.Escape(strings.ReplaceAll(err.Error(), "\n", " "))
	if msg != "" {
		msg = strings.ToLower(msg[:1]) + msg[1:]
	}
	fmt.Fprintf(w, "keyctl: %s\n", msg)
	var he *hintError
	switch {
	case errors.As(err, &he):
		fmt.Fprintf(w, "keyctl: hint: %s\n", output.Escape(he.hint))
	case errors.Is(err, keys.ErrNotFound):
		fmt.Fprintln(w, "keyctl: hint: 'keyctl list --all' shows every key, revoked ones too")
	case errors.Is(err, keys.ErrRevoked):
		fmt.Fprintln(w, "keyctl: hint: revocation is permanent; create a new key instead")
	case errors.Is(err, remote.ErrUnauthorized):
		fmt.Fprintln(w, "keyctl: hint: the token (KEYCTL_TOKEN or --token-file) must be a live key on the server's database with a keyctl:* scope that allows this")
	}
}

// withHintIfConflict adds a hint to a name conflict.
func withHintIfConflict(err error, hint string) error {
	if errors.Is(err, keys.ErrConflict) {
		return withHint(err, hint)
	}
	return err
}
