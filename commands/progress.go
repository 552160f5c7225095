package commands

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyctl/keyctl/output"
	"github.com/keyctl/keyctl/scan"
)

const (
	progressDelay = time.Second            // a shorter scan shows no progress
	progressEvery = 250 * time.Millisecond // how often the line is redrawn
)

// startProgress shows, on stderr (a terminal), what a scan has read so far,
// once it has run for progressDelay; stop clears the line.
func startProgress(w io.Writer, p *scan.Progress, found *atomic.Int64) (stop func()) {
	delay := time.NewTimer(progressDelay)
	tick := time.NewTicker(progressEvery)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		progressLoop(w, p, found, delay.C, tick.C, done)
	}()
	return func() {
		close(done)
		wg.Wait()
		delay.Stop()
		tick.Stop()
	}
}

// progressLoop draws the progress line at each tick after start fires, and
// clears it when done is closed.
func progressLoop(w io.Writer, p *scan.Progress, found *atomic.Int64, start, tick <-chan time.Time, done <-chan struct{}) {
	select {
	case <-start:
	case <-done:
		return
	}
	for {
		fmt.Fprintf(w, "\r\x1b[Kscanning: %s, %s, %s found", output.Plural(int(p.Files.Load()), "file", "files"),
			formatBytes(p.Bytes.Load()), output.Plural(int(found.Load()), "key", "keys"))
		select {
		case <-tick:
		case <-done:
			fmt.Fprint(w, "\r\x1b[K")
			return
		}
	}
}

// formatBytes is n in B, KB, MB or GB, as people read it.
func formatBytes(n int64) string {
	switch {
	case n < 1e3:
		return fmt.Sprintf("%d B", n)
	case n < 1e6:
		return fmt.Sprintf("%.1f KB", float64(n)/1e3)
	case n < 1e9:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	}
	return fmt.Sprintf("%.1f GB", float64(n)/1e9)
}
