package commands

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyctl/keyctl/scan"
	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/keys"
	"github.com/keyctl/keyctl/store/sqlite"
)

// cancelAfterRevoke is a store that cancels the scan's context once it has
// revoked a secret (and with it its key), as a Ctrl-C arriving then would.
type cancelAfterRevoke struct {
	*sqlite.SQLite
	cancel context.CancelFunc
}

func (c cancelAfterRevoke) RevokeSecret(ctx context.Context, token, reason string) (*keys.SecretRevocation, error) {
	defer c.cancel()
	return c.SQLite.RevokeSecret(ctx, token, reason)
}

// Once interrupted, a scan starts no further revocation.
func TestScanRevokesNothingAfterInterrupt(t *testing.T) {
	db := filepath.Join(t.TempDir(), "keyctl.db")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	deps, _, _ := testDeps(t, db, func(s *sqlite.SQLite) store.Store { return cancelAfterRevoke{s, cancel} })
	s, err := sqlite.Open(ctx, db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var found []scan.Finding
	for _, name := range []string{"a", "b", "c"} {
		_, secret, err := s.Create(ctx, keys.CreateParams{Name: name, Env: keys.Development, Prefix: "sk"})
		if err != nil {
			t.Fatal(err)
		}
		found = append(found, scan.Finding{Path: "leak.txt", Line: len(found) + 1, Token: secret})
	}
	_, err = lookUpFindings(ctx, deps, found, keys.ActionRevoke, false)
	if err != context.Canceled {
		t.Fatalf("lookUpFindings: %v, want context.Canceled", err)
	}
	revoked := 0
	for _, name := range []string{"a", "b", "c"} {
		k, err := s.Get(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		if k.Status == keys.Revoked {
			revoked++
		}
	}
	if revoked != 1 {
		t.Fatalf("%d keys revoked, want 1: the one under way when interrupted", revoked)
	}
}

// The progress line shows only after the delay, is redrawn at each tick,
// and is cleared at the end.
// signalWriter is a buffer that says when it was written to, so that a test
// changes what the next line shows only after the last one was drawn.
type signalWriter struct {
	bytes.Buffer
	wrote chan struct{}
}

func (w *signalWriter) Write(b []byte) (int, error) {
	n, err := w.Buffer.Write(b)
	w.wrote <- struct{}{}
	return n, err
}

func TestProgressLine(t *testing.T) {
	w := signalWriter{wrote: make(chan struct{}, 8)}
	p := &scan.Progress{}
	var found atomic.Int64
	start, tick := make(chan time.Time), make(chan time.Time)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		progressLoop(&w, p, &found, start, tick, done)
		close(finished)
	}()
	p.Files.Store(1)
	p.Bytes.Store(2_500_000)
	start <- time.Time{}
	<-w.wrote // the first line is drawn before the counts move on
	p.Files.Store(12)
	found.Store(1)
	tick <- time.Time{}
	close(done)
	<-finished
	want := "\r\x1b[Kscanning: 1 file, 2.5 MB, 0 keys found" +
		"\r\x1b[Kscanning: 12 files, 2.5 MB, 1 key found" + "\r\x1b[K"
	if w.String() != want {
		t.Fatalf("progress %q\nwant     %q", w.String(), want)
	}

	// A scan done before the delay shows nothing.
	w.Reset()
	done = make(chan struct{})
	close(done)
	progressLoop(&w, p, &found, make(chan time.Time), tick, done)
	if w.Len() != 0 || !strings.Contains(want, "scanning") {
		t.Fatalf("a short scan printed %q", w.String())
	}
}
