package commands

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"keyctl": func() { os.Exit(Main()) },
	})
}

// TestScripts runs the end-to-end scripts in testdata/script against the
// keyctl binary, each with its own database in a temp dir.
func TestScripts(t *testing.T) {
	testscript.Run(t, scriptParams(t, false, false))
}

// scriptParams are the scripts' parameters; remote is the [remote]
// condition, true when the commands talk to a keyctl server, and postgres
// the [postgres] condition, true when the database is PostgreSQL.
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
			// A race-enabled binary otherwise sleeps a second at every exit.
			env.Setenv("GORACE", "atexit_sleep_ms=0")
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"status":  cmdStatus,
			"jq":      cmdJQ,
			"replica": cmdReplica,
			"sql":     cmdSQL,
		},
	}
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
// true (jq -e):
//
//	jq '.name == "billing"'
func cmdJQ(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: jq EXPR")
	}
	cmd := exec.Command("jq", "-e", args[0])
	cmd.Stdin = strings.NewReader(ts.ReadFile("stdout"))
	out, err := cmd.CombinedOutput()
	if neg && err == nil {
		ts.Fatalf("jq %s held: %s", args[0], out)
	}
	if !neg && err != nil {
		ts.Fatalf("jq %s: %v: %s", args[0], err, out)
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

// cmdSQL runs SQL on the script's database, as an operator would behind
// keyctl's back: with sqlite3 on a SQLite file, with psql on PostgreSQL.
// Its output is the next stdout:
//
//	sql 'DELETE FROM audit WHERE seq = 4'
//	[postgres] sql 'UPDATE keys SET expires_at = to_timestamp(1) WHERE name = ''e'''
func cmdSQL(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: sql STATEMENTS")
	}
	db := ts.Getenv("KEYCTL_DB")
	var err error
	if strings.HasPrefix(db, "postgres://") {
		err = ts.Exec("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", args[0])
	} else {
		err = ts.Exec("sqlite3", "-cmd", ".timeout 10000", db, args[0])
	}
	if neg != (err != nil) {
		ts.Fatalf("sql: %v", err)
	}
}
