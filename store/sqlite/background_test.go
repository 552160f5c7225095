package sqlite

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/keyctl/keyctl/store/keys"
)

// A write of queued uses that fails (here the database is full) is
// reported when it happens, with the number of uses it lost; the store
// says it is failing until a write succeeds again, and counts what it
// wrote and lost.
func TestBackgroundFailuresAreReportedWhenTheyHappen(t *testing.T) {
	c := newClock()
	s, _ := openTest(t, c)
	ctx := context.Background()
	_, tok := create(t, s, keys.CreateParams{Name: "busy"})
	var mu sync.Mutex
	var reported []int
	s.OnBackgroundError(func(err error, lost int) {
		mu.Lock()
		reported = append(reported, lost)
		mu.Unlock()
		if !strings.Contains(err.Error(), "full") {
			t.Errorf("reported %v", err)
		}
	})
	check := func(n int) {
		for range n {
			if _, _, err := s.CheckToken(ctx, keys.VerifyRequest{Token: tok, Cost: 1}); err != nil {
				t.Fatal(err)
			}
		}
	}
	check(10)
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// The disk is full: every write of a use fails, as SQLite says it
	// then (a trigger stands in for the disk, so that every batch fails,
	// however the uses fall into batches).
	if _, err := s.db.Exec(`CREATE TRIGGER full BEFORE INSERT ON usage_events
		BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`); err != nil {
		t.Fatal(err)
	}
	check(3000)
	err := s.Flush(ctx)
	if err == nil {
		t.Fatal("a failed write of uses was not reported to Flush")
	}
	recorded, lost, failing := s.UsageRecorded()
	mu.Lock()
	sum := 0
	for _, n := range reported {
		sum += n
	}
	mu.Unlock()
	if failing == nil || lost != 3000 || int64(sum) != lost || recorded != 10 {
		t.Fatalf("recorded %d, lost %d (reported %v), failing %v", recorded, lost, reported, failing)
	}
	// Room again: the next write succeeds, and the store is well.
	if _, err := s.db.Exec(`DROP TRIGGER full`); err != nil {
		t.Fatal(err)
	}
	check(1)
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, failing := s.UsageRecorded(); failing != nil {
		t.Fatalf("still failing: %v", failing)
	}
	k, _ := s.Get(ctx, "busy")
	if k.UsageCount != recorded+1 {
		t.Fatalf("usage_count %d, want the %d uses recorded", k.UsageCount, recorded+1)
	}
	s.fast.Close()
	if err := s.fast.closeErr; err == nil || !strings.Contains(err.Error(), "could not be recorded") {
		t.Fatalf("Close: %v", err)
	}
}
