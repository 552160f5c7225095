package commands

// The tools the end-to-end scripts use besides keyctl, written in Go so that
// `go test ./...` needs nothing but Go and a POSIX shell: jq (gojq), a small
// SQL command for the scripts that tamper with a database behind keyctl's
// back (modernc.org/sqlite, as keyctl itself uses), and a test clock.

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/itchyny/gojq"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, for sql on PostgreSQL
)

// clockFileVar names the file holding the test clock's offset from the real
// time. Only the test binary's keyctl reads it; the shipped binary has no
// such variable.
const clockFileVar = "KEYCTL_TEST_CLOCK_FILE"

// testClock is the real time moved forward by the offset in the file at
// path, read at every call so that a running keyctl serve follows the
// script's 'clock advance'. No file is no offset.
func testClock(path string) func() time.Time {
	if path == "" {
		return time.Now
	}
	return func() time.Time {
		off, err := readClock(path)
		if err != nil {
			panic(fmt.Sprintf("test clock: %v", err))
		}
		return time.Now().Add(off)
	}
}

func readClock(path string) (time.Duration, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return time.Duration(n), err
}

// advanceClock adds d to the offset in path, replacing the file whole so
// that a keyctl reading it never sees half of it.
func advanceClock(path string, d time.Duration) error {
	off, err := readClock(path)
	if err != nil {
		return err
	}
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(strconv.FormatInt(int64(off+d), 10)+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// jqMain is a jq for the scripts' shell pipelines: jq [-r] [-c] [-e] FILTER
// [FILE].
func jqMain(args []string) int {
	fs := flag.NewFlagSet("jq", flag.ContinueOnError)
	raw := fs.Bool("r", false, "print strings raw")
	compact := fs.Bool("c", false, "compact output")
	exitStatus := fs.Bool("e", false, "exit 1 when the last output is false or null")
	if err := fs.Parse(args); err != nil || fs.NArg() < 1 || fs.NArg() > 2 {
		fmt.Fprintln(os.Stderr, "usage: jq [-r] [-c] [-e] FILTER [FILE]")
		return 2
	}
	in := io.Reader(os.Stdin)
	if fs.NArg() == 2 {
		f, err := os.Open(fs.Arg(1))
		if err != nil {
			fmt.Fprintln(os.Stderr, "jq:", err)
			return 2
		}
		defer f.Close()
		in = f
	}
	data, err := io.ReadAll(in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "jq:", err)
		return 2
	}
	outs, err := jqRun(fs.Arg(0), data)
	if err != nil {
		fmt.Fprintln(os.Stderr, "jq:", err)
		return 5
	}
	for _, v := range outs {
		if s, ok := v.(string); ok && *raw {
			fmt.Println(s)
			continue
		}
		var b []byte
		if *compact {
			b, err = gojq.Marshal(v)
		} else {
			b, err = json.MarshalIndent(v, "", "  ")
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "jq:", err)
			return 5
		}
		fmt.Println(string(b))
	}
	if *exitStatus && (len(outs) == 0 || !truthy(outs[len(outs)-1])) {
		return 1
	}
	return 0
}

// jqHolds reports whether filter's last output on the JSON in input is
// neither false nor null, as jq -e decides.
func jqHolds(filter, input string) (bool, error) {
	outs, err := jqRun(filter, []byte(input))
	if err != nil {
		return false, err
	}
	if len(outs) == 0 {
		return false, errors.New("no output")
	}
	return truthy(outs[len(outs)-1]), nil
}

// jqRun runs filter on each JSON value in data and returns every output.
func jqRun(filter string, data []byte) ([]any, error) {
	q, err := gojq.Parse(filter)
	if err != nil {
		return nil, err
	}
	code, err := gojq.Compile(q)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var outs []any
	for {
		var v any
		if err := dec.Decode(&v); errors.Is(err, io.EOF) {
			return outs, nil
		} else if err != nil {
			return nil, fmt.Errorf("input is not JSON: %w", err)
		}
		iter := code.Run(v)
		for {
			out, ok := iter.Next()
			if !ok {
				break
			}
			if err, ok := out.(error); ok {
				return nil, err
			}
			outs = append(outs, out)
		}
	}
}

func truthy(v any) bool { return v != nil && v != false }

// sqlMain runs SQL on a database, as a person would with the sqlite3 shell
// (or psql, on PostgreSQL) to change it behind keyctl's back: sql DB
// STATEMENTS, where DB is a path or a postgres:// URL. A query prints its
// rows, columns separated by '|'.
func sqlMain(args []string) int {
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: sql DB STATEMENTS")
		return 2
	}
	if err := runSQL(os.Stdout, args[0], args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "sql:", err)
		return 1
	}
	return 0
}

func runSQL(w io.Writer, path, stmts string) error {
	driver, dsn := "pgx", path
	if !strings.HasPrefix(path, "postgres://") {
		if _, err := os.Stat(path); err != nil {
			return err
		}
		driver, dsn = "sqlite", filepath.Clean(path)+"?_busy_timeout=10000"
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx := context.Background()
	if !strings.HasPrefix(strings.ToUpper(strings.TrimSpace(stmts)), "SELECT") {
		_, err := db.ExecContext(ctx, stmts)
		return err
	}
	rows, err := db.QueryContext(ctx, stmts)
	if err != nil {
		return err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		cells := make([]string, len(vals))
		for i, v := range vals {
			switch v := v.(type) {
			case nil:
			case []byte:
				cells[i] = string(v)
			default:
				cells[i] = fmt.Sprint(v)
			}
		}
		fmt.Fprintln(w, strings.Join(cells, "|"))
	}
	return rows.Err()
}

// brokenpipeMain runs a command whose stdout is a pipe that nobody reads,
// closed before the command starts, as in 'keyctl create | false' when
// false has already exited: brokenpipe COMMAND [ARGS...]. It exits with the
// command's status.
func brokenpipeMain(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: brokenpipe COMMAND [ARGS...]")
		return 2
	}
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "brokenpipe:", err)
		return 2
	}
	r.Close()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, w, os.Stderr
	err = cmd.Run()
	w.Close()
	return exitStatus(err)
}

// exitStatus is the status a finished command's error stands for; a
// command killed by a signal is 128 plus its number, as a shell says.
func exitStatus(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	fmt.Fprintln(os.Stderr, err)
	return 127
}

// ghMain stands in for the GitHub CLI in the README's recipes: 'gh secret
// set NAME [--env E] [--repo R]' stores stdin, byte for byte, in
// $WORK/gh/NAME and logs the call in $WORK/gh.log.
func ghMain(args []string) int {
	if len(args) < 3 || args[0] != "secret" || args[1] != "set" {
		fmt.Fprintln(os.Stderr, "gh: only 'gh secret set NAME' is stood in for")
		return 1
	}
	work := os.Getenv("WORK")
	data, err := io.ReadAll(os.Stdin)
	if err == nil {
		err = os.MkdirAll(filepath.Join(work, "gh"), 0o755)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(work, "gh", args[2]), data, 0o600)
	}
	if err == nil {
		err = appendLine(filepath.Join(work, "gh.log"), strings.Join(args, " "))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gh:", err)
		return 1
	}
	return 0
}

// curlMain stands in for curl in the README's GitLab recipes: it logs
// 'METHOD URL FORM...' in $WORK/curl.log, and stores the content of a
// --form "value=<FILE" in $WORK/curl/N.value, N counting the calls from 1.
func curlMain(args []string) int {
	work := os.Getenv("WORK")
	method, url, forms, value := "GET", "", []string{}, []byte(nil)
	for i := 0; i < len(args); i++ {
		switch a := args[i]; a {
		case "--fail", "-f", "--silent", "-s":
		case "--request", "-X", "--header", "-H", "--form", "-F":
			if i+1 == len(args) {
				fmt.Fprintf(os.Stderr, "curl: %s needs a value\n", a)
				return 2
			}
			i++
			switch a {
			case "--request", "-X":
				method = args[i]
			case "--form", "-F":
				forms = append(forms, args[i])
				if name, file, ok := strings.Cut(args[i], "=<"); ok && name == "value" {
					b, err := os.ReadFile(file)
					if err != nil {
						fmt.Fprintln(os.Stderr, "curl:", err)
						return 26
					}
					value = b
				}
			}
		default:
			url = a
		}
	}
	log := filepath.Join(work, "curl.log")
	prev, _ := os.ReadFile(log)
	n := bytes.Count(prev, []byte("\n")) + 1
	err := appendLine(log, strings.Join(append([]string{method, url}, forms...), " "))
	if err == nil && value != nil {
		if err = os.MkdirAll(filepath.Join(work, "curl"), 0o755); err == nil {
			err = os.WriteFile(filepath.Join(work, "curl", fmt.Sprintf("%d.value", n)), value, 0o600)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "curl:", err)
		return 1
	}
	return 0
}

func appendLine(path, line string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(f, line)
	return errors.Join(err, f.Close())
}

// noSQLite3 stands in for the sqlite3 shell, which a machine with only Go
// does not have: a script that calls it fails here too, not only there.
func noSQLite3() int {
	fmt.Fprintln(os.Stderr, "sqlite3: the scripts run on a machine with only Go: use the sql command, and 'clock advance' to move time")
	return 127
}
