package pgtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Instance is a PostgreSQL server of a test's own, in a temporary
// directory on a free loopback port, which the test may stop and start
// again: the shared server of KEYCTL_TEST_POSTGRES must not be.
type Instance struct {
	URL  string // of its database keyctl, for role keyctl
	bin  string
	dir  string
	port int
	log  string
}

// Start starts an instance for t, stopped when t ends. It skips t unless
// KEYCTL_TEST_POSTGRES is set (the PostgreSQL tests are asked for) and
// PostgreSQL's server binaries are found. As root, the server runs as the
// postgres user: initdb refuses root.
func Start(t testing.TB) *Instance {
	t.Helper()
	Server(t)
	bin, err := binDir()
	if err != nil {
		t.Skip(err.Error())
	}
	dir, err := os.MkdirTemp("", "keyctl-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	in := &Instance{bin: bin, dir: dir, log: filepath.Join(dir, "log")}
	if os.Getuid() == 0 {
		if out, err := exec.Command("chown", "postgres", dir).CombinedOutput(); err != nil {
			t.Fatalf("chown postgres %s: %v: %s", dir, err, out)
		}
	}
	if err := in.run("initdb", "-D", in.data(), "-A", "trust", "-U", "keyctl"); err != nil {
		t.Fatal(err)
	}
	if err := in.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.run("pg_ctl", "-D", in.data(), "-m", "immediate", "stop") })
	if err := in.run("createdb", "-h", "127.0.0.1", "-p", strconv.Itoa(in.port), "-U", "keyctl", "keyctl"); err != nil {
		t.Fatal(err)
	}
	in.URL = fmt.Sprintf("postgres://keyctl@127.0.0.1:%d/keyctl?sslmode=disable", in.port)
	return in
}

func (in *Instance) data() string { return filepath.Join(in.dir, "data") }

// Start starts the server, on the port it had before if it had one.
func (in *Instance) Start() error {
	if in.port == 0 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		in.port = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
	}
	return in.run("pg_ctl", "-D", in.data(), "-l", in.log, "-w", "-t", "60", "-o",
		fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=200", in.port, in.dir), "start")
}

// Stop stops the server as an operator's restart would: it ends every
// session and refuses new ones until Start.
func (in *Instance) Stop() error {
	return in.run("pg_ctl", "-D", in.data(), "-m", "fast", "-w", "stop")
}

// run runs one of PostgreSQL's programs, as the postgres user when root.
func (in *Instance) run(name string, args ...string) error {
	path := filepath.Join(in.bin, name)
	var cmd *exec.Cmd
	if os.Getuid() == 0 {
		quoted := []string{shellQuote(path)}
		for _, a := range args {
			quoted = append(quoted, shellQuote(a))
		}
		cmd = exec.Command("su", "postgres", "-s", "/bin/sh", "-c", strings.Join(quoted, " "))
	} else {
		cmd = exec.Command(path, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd = exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		logged, _ := os.ReadFile(in.log)
		return fmt.Errorf("%s: %v: %s\n%s", name, err, out, logged)
	}
	return nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// binDir finds the directory of initdb and pg_ctl: on the PATH, else
// Debian's newest /usr/lib/postgresql/N/bin.
func binDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Dir(real), nil
		}
		return filepath.Dir(p), nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return va - vb
	})
	if len(dirs) == 0 {
		return "", fmt.Errorf("PostgreSQL's initdb is not installed (Debian: apt-get install postgresql)")
	}
	return dirs[len(dirs)-1], nil
}
