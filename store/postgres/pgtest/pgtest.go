// Package pgtest gives tests a database of their own on the PostgreSQL
// server that KEYCTL_TEST_POSTGRES names (.ci/run starts one), and skips
// them when it names none, so that go test ./... passes on a machine with
// only Go.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Var names the server tests use: a postgres:// URL of a role that may
// create databases, on a server that holds nothing else of value.
const Var = "KEYCTL_TEST_POSTGRES"

// SkipMessage says how to run the tests that were skipped.
const SkipMessage = "PostgreSQL tests skipped: set " + Var + "=postgres://USER@HOST:PORT/postgres " +
	"(a scratch server whose role may create databases; .ci/run starts one) to run them"

// Server returns the URL in KEYCTL_TEST_POSTGRES, or skips t.
func Server(t testing.TB) string {
	t.Helper()
	u := os.Getenv(Var)
	if u == "" {
		t.Skip(SkipMessage)
	}
	return u
}

// NewDatabase creates an empty database for t and returns its URL; it is
// dropped when t ends.
func NewDatabase(t testing.TB) string {
	t.Helper()
	server := Server(t)
	addr, err := Create(context.Background(), server)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := Drop(context.Background(), server, addr); err != nil {
			t.Errorf("dropping the test database: %v", err)
		}
	})
	return addr
}

// mu serializes CREATE DATABASE within a process: PostgreSQL refuses two
// at once from the same template ("source database is being accessed").
var mu sync.Mutex

// Create makes a database named keyctl_test_… on the server at server and
// returns its URL.
func Create(ctx context.Context, server string) (string, error) {
	u, err := url.Parse(server)
	if err != nil {
		return "", fmt.Errorf("%s: %w", Var, err)
	}
	b := make([]byte, 6)
	rand.Read(b)
	name := "keyctl_test_" + hex.EncodeToString(b)
	conn, err := connect(ctx, server)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	mu.Lock()
	defer mu.Unlock()
	for try := 0; ; try++ {
		_, err = conn.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE template0")
		if err == nil || try == 20 {
			break
		}
		time.Sleep(50 * time.Millisecond) // another process is copying the template
	}
	if err != nil {
		return "", fmt.Errorf("creating a test database: %w", err)
	}
	u.Path = "/" + name
	return u.String(), nil
}

// Drop drops the database at addr, made by Create on server, closing
// whatever connections it has.
func Drop(ctx context.Context, server, addr string) error {
	u, err := url.Parse(addr)
	if err != nil {
		return err
	}
	name := u.Path[1:]
	conn, err := connect(ctx, server)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	return err
}

func connect(ctx context.Context, addr string) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", Var, err)
	}
	return conn, nil
}

// Announce says on the terminal, once per go test run that builds this
// package's tests afresh, that the PostgreSQL tests are skipped and how to
// run them. go test ./... shows a passing package's output only with -v,
// so the line goes to the terminal itself; without one (CI), nowhere.
func Announce() {
	if os.Getenv(Var) != "" {
		return
	}
	tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0)
	if err != nil {
		return
	}
	defer tty.Close()
	fmt.Fprintln(tty, "keyctl: "+SkipMessage)
}
