// Package output prints for people and for scripts: tables, relative times
// and colour on a terminal; stable JSON, YAML and RFC 3339 times elsewhere.
// Terminal detection lives here and nowhere else.
package output

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"

	"golang.org/x/term"
)

// IOStreams are a command's standard streams and what is known about them.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer

	stdinTTY  bool
	stdoutTTY bool
	stderrTTY bool
	color     bool
	width     int // the terminal's columns; 0 when not known
}

// System returns the process's streams. KEYCTL_FORCE_TTY makes stdout count
// as a terminal (for scripts that capture output meant for people);
// a non-empty NO_COLOR turns colour off.
func System() *IOStreams {
	s := &IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	s.stdinTTY = term.IsTerminal(int(os.Stdin.Fd()))
	s.stderrTTY = term.IsTerminal(int(os.Stderr.Fd()))
	s.stdoutTTY = term.IsTerminal(int(os.Stdout.Fd())) || os.Getenv("KEYCTL_FORCE_TTY") != ""
	s.color = s.stdoutTTY && os.Getenv("NO_COLOR") == "" && os.Getenv("TERM") != "dumb"
	if s.stdoutTTY {
		s.width = terminalWidth()
	}
	return s
}

// terminalWidth is COLUMNS when set, else the width of the terminal on
// stdout, else 0.
func terminalWidth() int {
	if n, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && n > 0 {
		return n
	}
	if w, _, err := term.GetSize(int(os.Stdout.Fd())); err == nil && w > 0 {
		return w
	}
	return 0
}

// TerminalWidth is the number of columns of the terminal on stdout, or 0
// when stdout is not a terminal or its width is not known.
func (s *IOStreams) TerminalWidth() int { return s.width }

// SetTerminalWidth sets the terminal's width (for tests).
func (s *IOStreams) SetTerminalWidth(n int) { s.width = n }

// Test returns streams backed by buffers, not terminals.
func Test() (s *IOStreams, in, out, errOut *bytes.Buffer) {
	in, out, errOut = &bytes.Buffer{}, &bytes.Buffer{}, &bytes.Buffer{}
	return &IOStreams{In: in, Out: out, ErrOut: errOut}, in, out, errOut
}

// IsStdoutTTY reports whether stdout is a terminal.
func (s *IOStreams) IsStdoutTTY() bool { return s.stdoutTTY }

// IsStdinTTY reports whether stdin is a terminal.
func (s *IOStreams) IsStdinTTY() bool { return s.stdinTTY }

// IsStderrTTY reports whether stderr is a terminal (where progress goes).
func (s *IOStreams) IsStderrTTY() bool { return s.stderrTTY }

// SetStdinTTY sets whether stdin counts as a terminal (for tests).
func (s *IOStreams) SetStdinTTY(v bool) { s.stdinTTY = v }

// SetStderrTTY sets whether stderr counts as a terminal (for tests).
func (s *IOStreams) SetStderrTTY(v bool) { s.stderrTTY = v }

// SetStdoutTTY sets whether stdout counts as a terminal (for tests).
func (s *IOStreams) SetStdoutTTY(v bool) { s.stdoutTTY = v }

// SetColor turns colour on or off (for tests).
func (s *IOStreams) SetColor(v bool) { s.color = v }

// ColorEnabled reports whether output may be coloured.
func (s *IOStreams) ColorEnabled() bool { return s.color }

// Notef writes a message for people, with a newline, to stderr. Its
// arguments are where stored text comes in, so every string among them
// (and every error's message) is escaped.
func (s *IOStreams) Notef(format string, a ...any) {
	fmt.Fprintf(s.ErrOut, format+"\n", EscapeArgs(a)...)
}

// EscapeArgs escapes the strings among a, and the messages of its errors,
// for printing with a format.
func EscapeArgs(a []any) []any {
	out := make([]any, len(a))
	for i, v := range a {
		switch x := v.(type) {
		case error:
			out[i] = Escape(x.Error())
		case fmt.Stringer:
			out[i] = Escape(x.String())
		default:
			if rv := reflect.ValueOf(v); rv.IsValid() && rv.Kind() == reflect.String {
				out[i] = Escape(rv.String())
			} else {
				out[i] = v
			}
		}
	}
	return out
}
