package commands

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyctl/keyctl/output"
	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/keys"
	"github.com/keyctl/keyctl/store/sqlite"
)

var testNow = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// testDeps are Deps on test streams, a fixed clock, and the SQLite
// database at path, opened by wrap (nil: as it is) at each run.
func testDeps(t *testing.T, path string, wrap func(*sqlite.SQLite) store.Store) (Deps, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	io, _, out, errOut := output.Test()
	now := func() time.Time { return testNow }
	return Deps{IO: io, Now: now, Store: func(ctx context.Context) (store.Store, error) {
		s, err := sqlite.Open(ctx, path, sqlite.Options{Now: now})
		if err != nil || wrap == nil {
			return s, err
		}
		return wrap(s), nil
	}}, out, errOut
}

var errCommit = errors.New("disk I/O error")

// failingCommit is the SQLite store whose commit fails after the secret was
// delivered: the delivery runs inside the real transaction, which then rolls
// back. inTx runs there, after the delivery.
type failingCommit struct {
	*sqlite.SQLite
	inTx func(k *keys.Key, secret string)
}

func (f failingCommit) CreateDelivered(ctx context.Context, p keys.CreateParams, deliver keys.Deliver) (*keys.Key, error) {
	return f.SQLite.CreateDelivered(ctx, p, f.deliverThenFail(deliver))
}

func (f failingCommit) RotateDelivered(ctx context.Context, ref string, grace time.Duration, deliver keys.Deliver) (*keys.Key, error) {
	return f.SQLite.RotateDelivered(ctx, ref, grace, f.deliverThenFail(deliver))
}

func (f failingCommit) deliverThenFail(deliver keys.Deliver) keys.Deliver {
	return func(k *keys.Key, secret string) error {
		if err := deliver(k, secret); err != nil {
			return err
		}
		f.inTx(k, secret)
		return errCommit
	}
}

func pipeOutput() secretOutput { return secretOutput{format: output.Table, envVar: "KEYCTL_API_KEY"} }

// dirEntries lists dir, so that a test sees a temporary file left behind.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// --secret-file is written, whole, before the key commits, and removed if
// the commit fails: no key without its file, no file without its key.
func TestCreateSecretFileBeforeCommit(t *testing.T) {
	dir := t.TempDir()
	db, path := filepath.Join(dir, "keyctl.db"), filepath.Join(dir, "out", "billing.key")
	if err := os.Mkdir(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	var sawFile bool
	deps, out, _ := testDeps(t, db, func(s *sqlite.SQLite) store.Store {
		return failingCommit{s, func(k *keys.Key, secret string) {
			b, err := os.ReadFile(path)
			sawFile = err == nil && string(b) == secret+"\n"
			// Not committed yet: another process does not see the key.
			other, err := sqlite.Open(context.Background(), db, sqlite.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			if _, err := other.Get(context.Background(), k.ID); !errors.Is(err, keys.ErrNotFound) {
				t.Errorf("the key was visible before its commit: %v", err)
			}
		}}
	})
	opts := &CreateOptions{Deps: deps, SecretFile: path, Output: pipeOutput(),
		Params: keys.CreateParams{Name: "billing", Env: keys.Production, Prefix: "sk"}}
	err := runCreate(context.Background(), opts)
	if !errors.Is(err, errCommit) {
		t.Fatalf("runCreate: %v, want the commit's error", err)
	}
	if !sawFile {
		t.Fatal("the secret file was not written in full before the commit")
	}
	if names := dirEntries(t, filepath.Dir(path)); len(names) != 0 {
		t.Fatalf("a failed commit left files behind: %v", names)
	}
	if out.Len() != 0 {
		t.Fatalf("stdout: %q", out)
	}

	// Committed: the file alone holds the secret, mode 0600, and nothing
	// else is left in its directory.
	deps, out, errOut := testDeps(t, db, nil)
	opts.Deps = deps
	if err := runCreate(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("secret file: %v, %v", info, err)
	}
	if names := dirEntries(t, filepath.Dir(path)); len(names) != 1 {
		t.Fatalf("files beside the secret: %v", names)
	}
	if out.Len() != 0 || !strings.Contains(errOut.String(), "written to "+path) {
		t.Fatalf("stdout %q, stderr %q", out, errOut)
	}
}

// rotate --secret-file: a failed commit removes the file and keeps the
// previous secret; an existing file is never replaced.
func TestRotateSecretFileBeforeCommit(t *testing.T) {
	dir := t.TempDir()
	db, path := filepath.Join(dir, "keyctl.db"), filepath.Join(dir, "new.key")
	deps, _, _ := testDeps(t, db, nil)
	s, err := deps.Store(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_, old, err := s.Create(context.Background(), keys.CreateParams{Name: "r", Env: keys.Development, Prefix: "sk"})
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	deps, _, _ = testDeps(t, db, func(s *sqlite.SQLite) store.Store {
		return failingCommit{s, func(*keys.Key, string) {
			if _, err := os.Stat(path); err != nil {
				t.Errorf("the secret file is not there before the commit: %v", err)
			}
		}}
	})
	opts := &RotateOptions{Deps: deps, Ref: "r", SecretFile: path, Output: pipeOutput()}
	if err := runRotate(context.Background(), opts); !errors.Is(err, errCommit) {
		t.Fatalf("runRotate: %v", err)
	}
	for _, name := range dirEntries(t, dir) {
		if !strings.HasPrefix(name, "keyctl.db") {
			t.Fatalf("a failed commit left %s behind", name)
		}
	}
	deps, _, _ = testDeps(t, db, nil)
	s, _ = deps.Store(context.Background())
	defer s.Close()
	if res, err := s.Verify(context.Background(), keys.VerifyRequest{Token: old}); err != nil || res.Code != keys.Valid {
		t.Fatalf("the previous secret: %v, %v", res, err)
	}

	if err := os.WriteFile(path, []byte("mine\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	opts.Deps = deps
	err = runRotate(context.Background(), opts)
	if exitCode(err) != exitUsage {
		t.Fatalf("rotate onto an existing file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "mine\n" {
		t.Fatalf("an existing file was overwritten: %q", b)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("no space left on device") }

// A secret that cannot be written to stdout leaves no key: exit 1, and the
// error says so.
func TestCreateStdoutFailure(t *testing.T) {
	db := filepath.Join(t.TempDir(), "keyctl.db")
	for _, format := range []output.Format{output.Table, output.JSON, output.YAML, output.Env} {
		deps, _, _ := testDeps(t, db, nil)
		deps.IO.Out = failingWriter{}
		opts := &CreateOptions{Deps: deps, Output: secretOutput{format: format, envVar: "K"},
			Params: keys.CreateParams{Name: "k", Env: keys.Development, Prefix: "sk"}}
		err := runCreate(context.Background(), opts)
		if !errors.Is(err, store.ErrNotDelivered) || exitCode(err) != exitFailure ||
			!strings.Contains(err.Error(), "no key was created") {
			t.Fatalf("%s: %v", format, err)
		}
	}
	deps, _, _ := testDeps(t, db, nil)
	s, _ := deps.Store(context.Background())
	defer s.Close()
	if list, err := s.List(context.Background(), keys.ListFilter{All: true}); err != nil || len(list) != 0 {
		t.Fatalf("keys after undelivered creates: %v, %v", list, err)
	}
}
