package commands

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/keyctl/keyctl/output"
)

// readHidden reads a line from the terminal on stdin without echoing it, as
// age reads a passphrase. Ctrl-C ends it at once: the terminal is given back
// as it was, and the error is ctx's.
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
	select {
	case l := <-read:
		fmt.Fprintln(ios.ErrOut)
		if l.err != nil {
			return "", fmt.Errorf("reading from the terminal: %w", l.err)
		}
		return string(l.b), nil
	case <-ctx.Done():
		term.Restore(fd, state)
		fmt.Fprintln(ios.ErrOut)
		return "", ctx.Err()
	}
}

// readLine reads one line from stdin, as typed on a terminal; Ctrl-C ends
// it at once with ctx's error.
func readLine(ctx context.Context, ios *output.IOStreams) (string, error) {
	type line struct {
		s   string
		err error
	}
	read := make(chan line, 1)
	go func() {
		s, err := bufio.NewReader(ios.In).ReadString('\n')
		if err == io.EOF && s != "" {
			err = nil
		}
		read <- line{strings.TrimRight(s, "\r\n"), err}
	}()
	select {
	case l := <-read:
		return l.s, l.err
	case <-ctx.Done():
		fmt.Fprintln(ios.ErrOut)
		return "", ctx.Err()
	}
}
