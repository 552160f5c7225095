package commands

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/keyctl/keyctl/output"
)

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
