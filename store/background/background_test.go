package background

import (
	"errors"
	"strings"
	"testing"
)

func TestTracker(t *testing.T) {
	var tr Tracker
	var reported []int
	tr.OnBackgroundError(func(_ error, lost int) { reported = append(reported, lost) })
	tr.Recorded(10)
	if r, l, f := tr.UsageRecorded(); r != 10 || l != 0 || f != nil || tr.Summary() != nil {
		t.Fatalf("after a write: %d, %d, %v, %v", r, l, f, tr.Summary())
	}
	full := errors.New("disk full")
	tr.WriteFailed(full, 3)
	tr.Failed(errors.New("prune failed")) // reported, but not a failing write
	if r, l, f := tr.UsageRecorded(); r != 10 || l != 3 || f != full {
		t.Fatalf("after a failed write: %d, %d, %v", r, l, f)
	}
	if len(reported) != 2 || reported[0] != 3 || reported[1] != 0 {
		t.Fatalf("reported %v", reported)
	}
	tr.Recorded(1)
	if _, _, f := tr.UsageRecorded(); f != nil {
		t.Fatalf("still failing after a write succeeded: %v", f)
	}
	tr.Lost(2)
	if err := tr.Summary(); err == nil || !strings.Contains(err.Error(), "5 uses could not be recorded") {
		t.Fatalf("Summary = %v", err)
	}
	var kept Tracker
	kept.WriteFailed(full, 0) // the uses are kept, to be retried
	if err := kept.Summary(); err != full {
		t.Fatalf("Summary while the last write failed = %v", err)
	}
}
