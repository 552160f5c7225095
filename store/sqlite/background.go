package sqlite

import (
	"fmt"
	"sync"
)

// background is what the store's background work (recording the uses the
// fast path checked, pruning the usage log) has done: how many uses it
// wrote, how many it could not, and whether its last write failed. Each
// failure is reported when it happens.
type background struct {
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
func (s *SQLite) OnBackgroundError(fn func(err error, lost int)) {
	s.bg.mu.Lock()
	s.bg.onError = fn
	s.bg.mu.Unlock()
}

// UsageRecorded says how many uses the background has written, how many
// it could not, and the failure of its last write (nil when it succeeded).
func (s *SQLite) UsageRecorded() (recorded, lost int64, failing error) {
	s.bg.mu.Lock()
	defer s.bg.mu.Unlock()
	return s.bg.written, s.bg.lost, s.bg.failing
}

func (b *background) recorded(n int) {
	b.mu.Lock()
	b.written += int64(n)
	b.failing = nil
	b.mu.Unlock()
}

func (b *background) failed(err error, lost int) {
	b.mu.Lock()
	b.lost += int64(lost)
	if lost > 0 {
		b.failing = err
	}
	b.lastFail = err
	fn := b.onError
	b.mu.Unlock()
	if fn != nil {
		fn(err, lost)
	}
}

// summary is the error Close reports: nil when nothing failed.
func (b *background) summary() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.lost > 0:
		return fmt.Errorf("%d uses could not be recorded; the last failure: %w", b.lost, b.lastFail)
	case b.lastFail != nil:
		return b.lastFail
	}
	return nil
}
