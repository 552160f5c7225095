package commands

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	// The scripts' shell pipelines call jq as a program; testscript cannot
	// register a program under the name of the jq script command, so the
	// binary answers to that name here (see scriptParams' Setup).
	if filepath.Base(os.Args[0]) == "jq" {
		os.Exit(jqMain(os.Args[1:]))
	}
	tools := map[string]func(){
		"keyctl":     func() { os.Exit(mainWith(testClock(os.Getenv(clockFileVar)))) },
		"sql":        func() { os.Exit(sqlMain(os.Args[1:])) },
		"sqlite3":    func() { os.Exit(noSQLite3()) },
		"brokenpipe": func() { os.Exit(brokenpipeMain(os.Args[1:])) },
		"gh":         func() { os.Exit(ghMain(os.Args[1:])) },
		"curl":       func() { os.Exit(curlMain(os.Args[1:])) },
	}
	maps.Copy(tools, extraTools)
	testscript.Main(m, tools)
}

// extraTools are the scripts' tools that only some systems build.
var extraTools = map[string]func(){}

// TestScripts runs the end-to-end scripts in testdata/script against the
// keyctl binary, each with its own database in a temp dir.
func TestScripts(t *testing.T) {
	testscript.Run(t, scriptParams(t, false, false))
}

// scriptParams are the scripts' parameters; remote is the [remote]
// condition, true when the commands talk to a keyctl server, and postgres
// the [postgres] condition, true when the database is PostgreSQL.
//
// The scripts need nothing but Go and a POSIX shell: jq and sql are
// commands of the test binary (see scripttools_test.go), and time moves
// with 'clock advance', never by editing the database.
func scriptParams(t *testing.T, remote, postgres bool) testscript.Params {
	return testscript.Params{
		Condition: func(cond string) (bool, error) {
			switch cond {
			case "remote":
				return remote, nil
			case "postgres":
				return postgres, nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
		Dir:                 filepath.Join("..", "testdata", "script"),
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			env.Setenv("KEYCTL_DB", filepath.Join(env.WorkDir, "keyctl.db"))
			env.Setenv("XDG_CONFIG_HOME", filepath.Join(env.WorkDir, ".config"))
			env.Setenv("XDG_DATA_HOME", filepath.Join(env.WorkDir, ".local", "share"))
			env.Setenv(clockFileVar, filepath.Join(env.WorkDir, ".clock"))
			// A race-enabled binary otherwise sleeps a second at every exit.
			env.Setenv("GORACE", "atexit_sleep_ms=0")
			return installJQ(env)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"status":  cmdStatus,
			"jq":      cmdJQ,
			"clock":   cmdClock,
			"replica": cmdReplica,
		},
	}
}

// installJQ puts a jq program (this binary under that name) first on the
// script's PATH.
func installJQ(env *testscript.Env) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	bin := filepath.Join(env.WorkDir, ".bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return err
	}
	if err := os.Symlink(exe, filepath.Join(bin, "jq")); err != nil {
		return err
	}
	env.Setenv("PATH", bin+string(filepath.ListSeparator)+env.Getenv("PATH"))
	return nil
}

// cmdStatus runs a command and checks its exact exit status, keeping its
// stdout and stderr for the next stdout/stderr lines:
//
//	status 3 exec keyctl show nope
func cmdStatus(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 3 || args[1] != "exec" {
		ts.Fatalf("usage: status N exec command [args...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("status: %v", err)
	}
	err = ts.Exec(args[2], args[3:]...)
	got := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		got = ee.ExitCode()
	} else if err != nil {
		ts.Fatalf("status: %v", err)
	}
	if got != want {
		ts.Fatalf("exit status %d, want %d", got, want)
	}
}

// cmdJQ checks the last command's stdout with a jq expression that must be
// true, as jq -e would:
//
//	jq '.name == "billing"'
func cmdJQ(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: jq EXPR")
	}
	ok, err := jqHolds(args[0], ts.ReadFile("stdout"))
	if err != nil {
		ts.Fatalf("jq %s: %v", args[0], err)
	}
	if neg && ok {
		ts.Fatalf("jq %s held", args[0])
	}
	if !neg && !ok {
		ts.Fatalf("jq %s did not hold on:\n%s", args[0], ts.ReadFile("stdout"))
	}
}

// cmdClock moves the clock of every keyctl the script runs from then on,
// keyctl serve included:
//
//	clock advance 25h
func cmdClock(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 || args[0] != "advance" {
		ts.Fatalf("usage: clock advance DURATION")
	}
	d, err := parseDuration(args[1])
	if err != nil || d <= 0 {
		ts.Fatalf("clock advance: %q is not a positive duration", args[1])
	}
	if err := advanceClock(ts.Getenv(clockFileVar), d); err != nil {
		ts.Fatalf("clock advance: %v", err)
	}
}

// cmdReplica points the commands that follow at replica N of the keyctl
// servers the script runs against (several only on PostgreSQL; elsewhere
// it changes nothing):
//
//	replica 2
func cmdReplica(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: replica N")
	}
	if u := ts.Getenv("KEYCTL_SERVER_" + args[0]); u != "" {
		ts.Setenv("KEYCTL_SERVER", u)
	} else if ts.Getenv("KEYCTL_SERVER_1") != "" {
		ts.Fatalf("replica %s: no such replica", args[0])
	}
}
