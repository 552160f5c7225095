//go:build linux

package commands

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func init() {
	extraTools["interrupt"] = func() { os.Exit(interruptMain(os.Args[1:])) }
}

// interruptGuard bounds how long interrupt waits for its command: a
// command that does not stop when interrupted fails the script instead of
// hanging it.
const interruptGuard = 20 * time.Second

// interruptMain runs a command and interrupts it at a known point, as a
// person pressing Ctrl-C would, then exits with the command's status:
//
//	interrupt -prompt 'Key: ' keyctl verify
//	interrupt -fifo stuck keyctl scan leak.txt stuck --revoke
//
// With -prompt, the command's stdin is a new terminal, its controlling one;
// once TEXT shows on its stderr, Ctrl-C is typed on that terminal, and after
// the command exits, "echo on" or "echo off" on stdout says whether it left
// the terminal echoing. With -fifo, PATH is made a named pipe, and SIGINT is
// sent once the command has opened it for reading: it then waits on a
// pipe that never ends.
func interruptMain(args []string) int {
	fs := flag.NewFlagSet("interrupt", flag.ContinueOnError)
	prompt := fs.String("prompt", "", "type Ctrl-C once this shows on stderr")
	fifo := fs.String("fifo", "", "send SIGINT once the command opens this named pipe")
	if err := fs.Parse(args); err != nil || fs.NArg() == 0 || (*prompt == "") == (*fifo == "") {
		fmt.Fprintln(os.Stderr, "usage: interrupt (-prompt TEXT | -fifo PATH) COMMAND [ARGS...]")
		return 2
	}
	cmd := exec.Command(fs.Arg(0), fs.Args()[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	var err error
	if *prompt != "" {
		err = interruptAtPrompt(cmd, *prompt)
	} else {
		err = interruptOnFIFO(cmd, *fifo)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "interrupt:", err)
		return 99
	}
	return exitStatus(cmd.Wait())
}

func interruptAtPrompt(cmd *exec.Cmd, prompt string) error {
	ptmx, tty, err := openPTY()
	if err != nil {
		return err
	}
	defer ptmx.Close()
	cmd.Stdin, cmd.Stderr = tty, nil
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	go io.Copy(io.Discard, ptmx) // the terminal's echo
	seen := make(chan bool, 1)
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		r := bufio.NewReader(stderr)
		var got strings.Builder
		found := false
		for {
			b, err := r.ReadByte()
			if err != nil {
				if !found {
					seen <- false
				}
				return
			}
			os.Stderr.Write([]byte{b})
			got.WriteByte(b)
			if !found && strings.Contains(got.String(), prompt) {
				found = true
				seen <- true
			}
		}
	}()
	select {
	case ok := <-seen:
		if !ok {
			return fmt.Errorf("%q never showed on stderr", prompt)
		}
	case <-time.After(interruptGuard):
		cmd.Process.Kill()
		return fmt.Errorf("%q did not show within %s", prompt, interruptGuard)
	}
	if _, err := ptmx.Write([]byte{3}); err != nil { // Ctrl-C
		return err
	}
	if err := waitGuarded(cmd); err != nil {
		return err
	}
	<-drained // before cmd.Wait closes the pipe
	t, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		return err
	}
	if t.Lflag&unix.ECHO != 0 {
		fmt.Println("echo on")
	} else {
		fmt.Println("echo off")
	}
	tty.Close()
	return nil
}

func interruptOnFIFO(cmd *exec.Cmd, path string) error {
	if err := syscall.Mkfifo(path, 0o600); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	opened := make(chan *os.File, 1)
	go func() {
		// Blocks until the command opens the pipe for reading.
		if f, err := os.OpenFile(path, os.O_WRONLY, 0); err == nil {
			opened <- f
		}
	}()
	select {
	case f := <-opened:
		defer f.Close()
	case <-time.After(interruptGuard):
		cmd.Process.Kill()
		return fmt.Errorf("the command never opened %s", path)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		return err
	}
	return waitGuarded(cmd)
}

// waitGuarded waits for the command to exit, leaving its status for
// cmd.Wait, and kills it if it does not within interruptGuard.
func waitGuarded(cmd *exec.Cmd) error {
	done := make(chan error, 1)
	go func() {
		// Wait for the exit without reaping, so that cmd.Wait reports it.
		var info unix.Siginfo
		done <- unix.Waitid(unix.P_PID, cmd.Process.Pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(interruptGuard):
		cmd.Process.Kill()
		return fmt.Errorf("still running %s after the interrupt", interruptGuard)
	}
}

// openPTY opens a new pseudo-terminal: its controlling side and the
// terminal a command reads.
func openPTY() (ptmx, tty *os.File, err error) {
	ptmx, err = os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		return nil, nil, err
	}
	fd := int(ptmx.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		ptmx.Close()
		return nil, nil, err
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		ptmx.Close()
		return nil, nil, err
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		ptmx.Close()
		return nil, nil, err
	}
	return ptmx, tty, nil
}
