//go:build !windows

package commands

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/keys"
)

// TestReadOnlyDatabase: a database keyctl may not write (a forensic copy, a
// read-only mount) can be inspected with list, show, usage, audit and audit
// verify; a change, a verification (which records a use) and serve fail
// with a clear error; and the file is left as it was.
//
// The database is made read-only for a keyctl process of another user
// when the test runs as root (for whom no permission bit holds), by its
// permission bits otherwise.
func TestReadOnlyDatabase(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keyctl.db")
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, secret, err := st.Create(ctx, keys.CreateParams{Name: "billing", Env: keys.Production, Prefix: "sk", Scopes: []string{"sdk"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Verify(ctx, keys.VerifyRequest{Token: secret, Cost: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Update(ctx, "billing", keys.UpdateParams{AddScopes: []string{"proxy"}}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	run := readOnlyKeyctl(t, dir)
	for _, c := range []struct {
		args []string
		out  string
	}{
		{[]string{"list", "-o", "json"}, `"name": "billing"`},
		{[]string{"show", "billing"}, "billing"},
		{[]string{"usage", "billing", "-o", "json"}, `"usage_count": 1`},
		{[]string{"audit", "-o", "json"}, `"action": "update"`},
		{[]string{"audit", "verify"}, "audit trail intact: 2 entries"},
	} {
		stdout, stderr, code := run("", c.args...)
		if code != 0 || !strings.Contains(stdout+stderr, c.out) {
			t.Errorf("keyctl %s on a read-only database: exit %d\n%s%s", strings.Join(c.args, " "), code, stdout, stderr)
		}
	}
	for _, c := range []struct {
		args  []string
		stdin string
		err   string
	}{
		{[]string{"revoke", "billing", "--yes"}, "", "the database is read-only: it can be read (list, show, usage, audit), not changed"},
		{[]string{"create", "--name", "x"}, "", "the database is read-only"},
		{[]string{"verify"}, secret, "the database is read-only"},
		{[]string{"serve", "--addr", "127.0.0.1:0"}, "", "cannot serve: " + path + ": the database is read-only"},
	} {
		_, stderr, code := run(c.stdin, c.args...)
		if code != 1 || !strings.Contains(stderr, c.err) {
			t.Errorf("keyctl %s on a read-only database: exit %d, want 1 saying %q:\n%s", strings.Join(c.args, " "), code, c.err, stderr)
		}
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatal("the read-only database was changed")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 { // the database and bin/
		t.Fatalf("files were made beside it: %v", entries)
	}
}

// readOnlyKeyctl returns a function that runs keyctl on dir/keyctl.db, for
// which the database and dir are read-only.
func readOnlyKeyctl(t *testing.T, dir string) func(stdin string, args ...string) (string, string, int) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "bin")
	os.Mkdir(bin, 0o755)
	keyctl := filepath.Join(bin, "keyctl")
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyctl, data, 0o755); err != nil {
		t.Fatal(err)
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		// Another user may read what root made, and write none of it.
		cred = &syscall.Credential{Uid: 65534, Gid: 65534}
		for d := dir; d != filepath.Dir(d) && strings.HasPrefix(d, os.TempDir()); d = filepath.Dir(d) {
			if d != os.TempDir() {
				os.Chmod(d, 0o755)
			}
		}
		os.Chmod(filepath.Join(dir, "keyctl.db"), 0o644)
	} else {
		os.Chmod(filepath.Join(dir, "keyctl.db"), 0o444)
		os.Chmod(dir, 0o555)
		t.Cleanup(func() { os.Chmod(dir, 0o755) })
	}
	return func(stdin string, args ...string) (string, string, int) {
		t.Helper()
		cmd := &exec.Cmd{Path: keyctl, Args: append([]string{"keyctl"}, args...), Dir: dir,
			Stdin: strings.NewReader(stdin),
			Env: []string{"KEYCTL_DB=" + filepath.Join(dir, "keyctl.db"), "HOME=" + dir,
				"XDG_CONFIG_HOME=" + filepath.Join(dir, "none"), "PATH=" + os.Getenv("PATH")},
			SysProcAttr: &syscall.SysProcAttr{Credential: cred}}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, io.MultiWriter(&stderr)
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return stdout.String(), stderr.String(), code
	}
}
