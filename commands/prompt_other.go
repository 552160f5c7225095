//go:build !linux && !darwin

package commands

import (
	"context"
	"fmt"
	"os"

	"golang.org/x/term"

	"github.com/keyctl/keyctl/output"
)

// readHidden reads a line from the terminal on stdin without echoing it.
// Ctrl-C ends it at once, with ctx's error, giving the terminal back as it
// was.
func readHidden(ctx context.Context, ios *output.IOStreams) (string, error) {
	fd := int(os.Stdin.Fd())
	state, err := term.GetState(fd)
	if err != nil {
		return "", fmt.Errorf("reading from the terminal: %w", err)
	}
	type line struct {
		b   []byte
		err error
	}
	read := make(chan line, 1)
	go func() {
		b, err := term.ReadPassword(fd)
		read <- line{b, err}
	}()
	defer fmt.Fprintln(ios.ErrOut)
	select {
	case l := <-read:
		if l.err != nil {
			return "", fmt.Errorf("reading from the terminal: %w", l.err)
		}
		return string(l.b), nil
	case <-ctx.Done():
		term.Restore(fd, state)
		return "", ctx.Err()
	}
}
