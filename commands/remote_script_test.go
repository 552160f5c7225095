package commands

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/keyctl/keyctl/api"
	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/keys"
)

// TestScriptsRemote runs the same scripts in remote mode: each gets a real
// `keyctl serve` on a free loopback port, over the database KEYCTL_DB names
// (so that scripts may still inspect it with sqlite3), and every command
// talks to it through KEYCTL_SERVER with an owner key, "ops", in
// KEYCTL_TOKEN. Scripts skip local-only parts with [remote] and [!remote].
func TestScriptsRemote(t *testing.T) {
	p := scriptParams(t, true, false)
	local := p.Setup
	p.Setup = func(env *testscript.Env) error {
		if err := local(env); err != nil {
			return err
		}
		return serveScript(env)
	}
	testscript.Run(t, p)
}

// serveScript creates the owner key on the script's database, starts
// keyctl serve on it, and points the script at it.
func serveScript(env *testscript.Env) error {
	db := env.Getenv("KEYCTL_DB")
	token, err := ownerToken(db)
	if err != nil {
		return err
	}
	base, err := startServer(env, db)
	if err != nil {
		return err
	}
	env.Setenv("KEYCTL_SERVER", base)
	env.Setenv("KEYCTL_TOKEN", token)
	return nil
}

var servingRE = regexp.MustCompile(`^keyctl: serving .* on (http://127\.0\.0\.1:\d+)$`)

// startServer starts keyctl serve on db, returns its URL, and stops it
// gracefully at the end, failing the script unless it exits 0.
func startServer(env *testscript.Env, db string) (string, error) {
	cmd := exec.Command("keyctl", "serve", "--addr", "127.0.0.1:0", "--db", db)
	cmd.Env = env.Vars
	cmd.Dir = env.WorkDir
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("starting keyctl serve: %w", err)
	}
	log := &lockedBuilder{}
	url := make(chan string, 1)
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := servingRE.FindStringSubmatch(sc.Text()); m != nil {
				url <- m[1]
			}
			log.WriteString(sc.Text() + "\n")
		}
		close(url)
	}()
	base, ok := <-url
	if !ok {
		cmd.Wait()
		return "", fmt.Errorf("keyctl serve did not start:\n%s", log.String())
	}
	env.Defer(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		<-drained
		if err := cmd.Wait(); err != nil {
			env.T().Fatal(fmt.Sprintf("keyctl serve: %v after SIGTERM, want exit 0:\n%s", err, log.String()))
		}
		if !strings.Contains(log.String(), "keyctl: stopped") {
			env.T().Fatal("keyctl serve did not report a graceful stop:\n" + log.String())
		}
	})
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		return "", err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /healthz: %s", resp.Status)
	}
	return base, nil
}

// ownerToken creates the harness's owner key directly on the database, as
// `keyctl create --scope keyctl:owner` on the server's machine would.
func ownerToken(db string) (string, error) {
	ctx := context.Background()
	st, err := store.Open(ctx, db, store.Options{})
	if err != nil {
		return "", err
	}
	defer st.Close()
	_, token, err := st.Create(ctx, keys.CreateParams{
		Name: "ops", Scopes: []string{api.ScopeOwner}, Env: keys.Development, Prefix: "sk",
		Description: "the test harness's admin key",
	})
	if err != nil {
		return "", fmt.Errorf("creating the owner key in %s: %w", store.Redact(db), err)
	}
	return token, nil
}

type lockedBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuilder) WriteString(s string) {
	l.mu.Lock()
	l.b.WriteString(s)
	l.mu.Unlock()
}

func (l *lockedBuilder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
