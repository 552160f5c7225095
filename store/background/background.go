// Package background keeps the account of a store's background work
// (recording the uses its fast path checked, pruning the usage log), for
// store.Background: how many uses were written and lost, whether the last
// write failed, and each failure reported when it happens.
package background

import (
	"fmt"
	"sync"
)

// Tracker is that account; its zero value is ready. A backend embeds it, and
// so implements store.Background.
type Tracker struct {
	mu       sync.Mutex
	onError  func(err error, lost int)
	written  int64
	lost     int64
	failing  error // the last write's failure; nil once a write succeeds
	lastFail error // the last failure at all
}

// OnBackgroundError has fn called, from the background goroutine, with each
// failure of background work when it happens: lost is how many uses it
// could not record (0 for a failure that lost none).
func (t *Tracker) OnBackgroundError(fn func(err error, lost int)) {
	t.mu.Lock()
	t.onError = fn
	t.mu.Unlock()
}

// UsageRecorded says how many uses the background has written, how many it
// could not, and the failure of its last write (nil when it succeeded).
func (t *Tracker) UsageRecorded() (recorded, lost int64, failing error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.written, t.lost, t.failing
}

// Recorded counts n uses written: the store is no longer failing.
func (t *Tracker) Recorded(n int) {
	t.mu.Lock()
	t.written += int64(n)
	t.failing = nil
	t.mu.Unlock()
}

// WriteFailed reports a write of uses that failed, lost of them for good
// (the others are kept, to be written later): the store is failing until a
// write succeeds.
func (t *Tracker) WriteFailed(err error, lost int) {
	t.report(err, lost, true)
}

// Failed reports a failure of other background work, which lost no use.
func (t *Tracker) Failed(err error) { t.report(err, 0, false) }

// Lost counts uses that could not be written and are given up on without a
// new failure (those still waiting when the store closes).
func (t *Tracker) Lost(n int) {
	t.mu.Lock()
	t.lost += int64(n)
	t.mu.Unlock()
}

func (t *Tracker) report(err error, lost int, write bool) {
	t.mu.Lock()
	t.lost += int64(lost)
	if write {
		t.failing = err
	}
	t.lastFail = err
	fn := t.onError
	t.mu.Unlock()
	if fn != nil {
		fn(err, lost)
	}
}

// Summary is the error a store's Close reports: nil when no use was lost
// and the last write succeeded (a failure already reported, and recovered
// from, is not repeated).
func (t *Tracker) Summary() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.lost > 0 && t.lastFail != nil:
		return fmt.Errorf("%d uses could not be recorded; the last failure: %w", t.lost, t.lastFail)
	case t.lost > 0:
		return fmt.Errorf("%d uses could not be recorded", t.lost)
	}
	return t.failing
}
