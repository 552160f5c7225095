//go:build linux || darwin

package commands

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/keyctl/keyctl/output"
)

// readHidden reads a line from the terminal on stdin without echoing it, as
// age reads a passphrase. Echo is turned off before the read starts and
// back on however it ends: Ctrl-C ends it at once, with ctx's error.
func readHidden(ctx context.Context, ios *output.IOStreams) (string, error) {
	fd := int(os.Stdin.Fd())
	saved, err := unix.IoctlGetTermios(fd, ioctlGetTermios)
	if err != nil {
		return "", fmt.Errorf("reading from the terminal: %w", err)
	}
	quiet := *saved
	quiet.Lflag &^= unix.ECHO
	quiet.Lflag |= unix.ICANON | unix.ISIG
	if err := unix.IoctlSetTermios(fd, ioctlSetTermios, &quiet); err != nil {
		return "", fmt.Errorf("reading from the terminal: %w", err)
	}
	defer unix.IoctlSetTermios(fd, ioctlSetTermios, saved)
	type line struct {
		s   string
		err error
	}
	read := make(chan line, 1)
	go func() {
		s, err := bufio.NewReader(io.LimitReader(os.Stdin, 4096)).ReadString('\n')
		if err == io.EOF {
			err = nil
		}
		read <- line{strings.TrimRight(s, "\r\n"), err}
	}()
	defer fmt.Fprintln(ios.ErrOut)
	select {
	case l := <-read:
		if l.err != nil {
			return "", fmt.Errorf("reading from the terminal: %w", l.err)
		}
		return l.s, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}
