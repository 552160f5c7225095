package commands

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyctl/keyctl/output"
	"github.com/keyctl/keyctl/store/keys"
)

// testFactory is a factory on test streams, a fixed clock and an empty
// config file; its store is never opened by the flag tests.
func testFactory(t *testing.T) *Factory {
	io, _, _, _ := output.Test()
	f := newFactory(io, func() time.Time { return testNow })
	config := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(config, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	f.Config.Set("config", config)
	return f
}

// parse runs cmd's flag parsing with args under a root, as keyctl would.
func parse(t *testing.T, f *Factory, cmd *cobra.Command, args ...string) error {
	t.Helper()
	root := newRootCmd(f)
	for _, c := range root.Commands() {
		if c.Name() == cmd.Name() {
			root.RemoveCommand(c)
		}
	}
	root.AddCommand(cmd)
	root.SetArgs(append([]string{cmd.Name()}, args...))
	return root.ExecuteContext(context.Background())
}

func TestListFlags(t *testing.T) {
	var got *ListOptions
	f := testFactory(t)
	cmd := newListCmd(f, func(_ context.Context, o *ListOptions) error { got = o; return nil })
	err := parse(t, f, cmd, "--scope", "sdk", "--scope", "billing,admin", "--meta", "team=pay", "--meta", "tier=gold",
		"--limit", "5", "--env", "prod", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Scopes, []string{"admin", "billing", "sdk"}) || got.Filter.Scope != "admin" ||
		got.Meta["team"] != "pay" || got.Meta["tier"] != "gold" || got.Limit != 5 ||
		got.Filter.Env != keys.Production || got.Format != output.JSON {
		t.Fatalf("options %+v", got)
	}
	for _, args := range [][]string{{"--limit", "0"}, {"--scope", ""}, {"--scope", "a,,b"}, {"--meta", "team"}, {"--env", ""}} {
		f := testFactory(t)
		cmd := newListCmd(f, func(context.Context, *ListOptions) error { t.Fatal("ran"); return nil })
		if err := parse(t, f, cmd, args...); exitCode(err) != exitUsage {
			t.Errorf("list %v: %v, want a usage error", args, err)
		}
	}
}

// Without a terminal, revoke needs --yes, and refuses before opening the
// store.
func TestRevokeFlags(t *testing.T) {
	f := testFactory(t)
	f.Store = nil // opening it would panic
	ran := false
	cmd := newRevokeCmd(f, func(context.Context, *RevokeOptions) error { ran = true; return nil })
	err := parse(t, f, cmd, "billing")
	var ue *usageError
	if !errors.As(err, &ue) || ran {
		t.Fatalf("revoke without --yes nor a terminal: %v (ran %v)", err, ran)
	}

	var got *RevokeOptions
	f = testFactory(t)
	cmd = newRevokeCmd(f, func(_ context.Context, o *RevokeOptions) error { got = o; return nil })
	if err := parse(t, f, cmd, "billing", "--yes", "--reason", "leaked"); err != nil || got.Confirm || got.Reason != "leaked" {
		t.Fatalf("revoke --yes: %v, %+v", err, got)
	}
	f = testFactory(t)
	f.IO.SetStdinTTY(true)
	cmd = newRevokeCmd(f, func(_ context.Context, o *RevokeOptions) error { got = o; return nil })
	if err := parse(t, f, cmd, "billing"); err != nil || !got.Confirm {
		t.Fatalf("revoke on a terminal: %v, %+v", err, got)
	}
}

// create and rotate print the secret alone unless -o is on the command
// line: the configured output format is for listings.
func TestSecretOutputIgnoresConfiguredFormat(t *testing.T) {
	for _, c := range []struct {
		args []string
		want output.Format
	}{
		{nil, output.Table},
		{[]string{"-o", "json"}, output.JSON},
		{[]string{"--output", "env"}, output.Env},
	} {
		var got *CreateOptions
		f := testFactory(t)
		f.Config.Set("output", "yaml")
		cmd := newCreateCmd(f, func(_ context.Context, o *CreateOptions) error { got = o; return nil })
		if err := parse(t, f, cmd, c.args...); err != nil {
			t.Fatal(err)
		}
		if got.Output.format != c.want {
			t.Errorf("create %v with output: yaml configured: %s, want %s", c.args, got.Output.format, c.want)
		}
	}
}
