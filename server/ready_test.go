package server

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/keyctl/keyctl/api"
	"github.com/keyctl/keyctl/store/sqlite"
)

// failingBackground is a store whose background writes fail on demand.
type failingBackground struct {
	*sqlite.SQLite
	mu      sync.Mutex
	report  func(error, int)
	lost    int64
	failing error
}

func (f *failingBackground) OnBackgroundError(fn func(error, int)) { f.report = fn }

func (f *failingBackground) UsageRecorded() (int64, int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return 5, f.lost, f.failing
}

func (f *failingBackground) fail(err error, lost int) {
	f.mu.Lock()
	f.lost += int64(lost)
	f.failing = err
	f.mu.Unlock()
	f.report(err, lost)
}

// TestReadinessAndLostUses: a failed write of uses is logged when it
// happens with the number of uses lost, counted in the metrics, and makes
// /readyz report the service degraded until a write succeeds.
func TestReadinessAndLostUses(t *testing.T) {
	ts := start(t)
	fb := &failingBackground{SQLite: ts.st}
	log := &syncBuffer{}
	srv := New(fb, Options{AccessLog: log})
	url, stop := serveOn(t, srv)
	defer stop()
	ready := func() (int, api.Readiness) {
		t.Helper()
		resp, err := http.Get(url + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r api.Readiness
		decodeBody(t, resp, &r)
		return resp.StatusCode, r
	}
	if code, r := ready(); code != 200 || r.Status != "ok" {
		t.Fatalf("readyz: %d %+v", code, r)
	}
	fb.fail(errors.New("recording 98 uses: database or disk is full"), 98)
	if !strings.Contains(log.String(), "uses_not_recorded=98") {
		t.Fatalf("the failure was not logged when it happened:\n%s", log)
	}
	code, r := ready()
	if code != http.StatusServiceUnavailable || r.Status != "degraded" || r.UsesNotRecorded != 98 || !strings.Contains(r.Reason, "disk is full") {
		t.Fatalf("readyz while failing: %d %+v", code, r)
	}
	resp, _ := http.Get(url + "/metrics")
	m := readAll(resp)
	if !strings.Contains(m, "keyctl_uses_not_recorded_total 98") || !strings.Contains(m, "keyctl_background_errors_total 1") {
		t.Fatalf("metrics: %s", grep(m, "not_recorded"))
	}
	fb.mu.Lock()
	fb.failing = nil
	fb.mu.Unlock()
	if code, r := ready(); code != 200 || r.UsesNotRecorded != 98 {
		t.Fatalf("readyz once writes succeed again: %d %+v", code, r)
	}
	// Through the harness, /readyz validates against the document.
	want(t, ts.call("GET", "/readyz", "", nil), 200, "")
}
