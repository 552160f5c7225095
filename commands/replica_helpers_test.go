package commands

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keyctl/keyctl/api"
	"github.com/keyctl/keyctl/store/keys"
	"github.com/keyctl/keyctl/store/remote"
)

// replica is a `keyctl serve` process of the replica test.
type replica struct {
	name string
	url  string
	cmd  *exec.Cmd
	log  *lockedBuilder
	done chan struct{} // closed when the process has exited
}

// startReplica starts keyctl serve on db and waits until it answers.
func startReplica(t *testing.T, name, db string) *replica {
	t.Helper()
	cmd := exec.Command("keyctl", "serve", "--addr", "127.0.0.1:0", "--db", db)
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+t.TempDir(), "GORACE=atexit_sleep_ms=0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &replica{name: name, cmd: cmd, log: &lockedBuilder{}, done: make(chan struct{})}
	url := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := servingRE.FindStringSubmatch(sc.Text()); m != nil {
				url <- m[1]
			}
			if line := sc.Text(); !accessLine(line) {
				r.log.WriteString(line + "\n")
			}
		}
		close(url)
		cmd.Wait()
		close(r.done)
	}()
	var ok bool
	if r.url, ok = <-url; !ok {
		<-r.done
		t.Fatalf("replica %s did not start:\n%s", name, r.log.String())
	}
	t.Cleanup(func() { r.stop(t) })
	return r
}

// accessLine reports a line of the access log: too many to keep.
func accessLine(line string) bool {
	return strings.HasPrefix(line, "time=") && strings.Contains(line, " level=INFO ")
}

// kill ends the replica at once, as a machine dying would: SIGKILL.
func (r *replica) kill() {
	r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.done
}

// stop stops the replica gracefully, if it still runs.
func (r *replica) stop(t *testing.T) {
	select {
	case <-r.done:
		return
	default:
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(time.Minute):
		r.kill()
		t.Errorf("replica %s did not stop on SIGTERM", r.name)
	}
}

// client is an application's client of one replica.
func (r *replica) client(t *testing.T, token string) *remote.Client {
	t.Helper()
	c, err := remote.New(r.url, token, &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// unavailable reports a 503 from a replica, with the JSON error
// "unavailable": nothing was decided.
func unavailable(err error) bool {
	var re *remote.Error
	return errors.As(err, &re) && re.Status == http.StatusServiceUnavailable && re.Code == api.CodeUnavailable
}

// tally counts the answers of a stretch of load.
type tally struct {
	mu    sync.Mutex
	codes map[keys.Code]int
	errs  []error
}

func newTally() *tally { return &tally{codes: map[keys.Code]int{}} }

func (t *tally) add(res *keys.VerifyResult, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		t.errs = append(t.errs, err)
		return
	}
	t.codes[res.Code]++
}

func (t *tally) count(c keys.Code) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.codes[c]
}

func (t *tally) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return fmt.Sprintf("%v, %d errors", t.codes, len(t.errs))
}

// percentiles are p50, p99 and the maximum of ds.
func percentiles(ds []time.Duration) (p50, p99, max time.Duration) {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2], s[len(s)*99/100], s[len(s)-1]
}

// verifyReq verifies token at cost 1, as an application would.
func verifyReq(ctx context.Context, c *remote.Client, token string) (*keys.VerifyResult, error) {
	return c.Verify(ctx, keys.VerifyRequest{Token: token, Cost: 1})
}
