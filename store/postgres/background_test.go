package postgres_test

import (
	"context"
	"sync"
	"testing"

	"github.com/keyctl/keyctl/store/keys"
	"github.com/keyctl/keyctl/store/postgres/pgtest"
)

// TestBackgroundFailuresAreReportedWhenTheyHappen: a write of the uses the
// fast path checked that fails (here a trigger refuses every use, as a full
// disk would) is reported when it happens, and the store says it is
// failing; the uses are kept and written once the database takes them
// again, and the store is well.
func TestBackgroundFailuresAreReportedWhenTheyHappen(t *testing.T) {
	ctx := context.Background()
	addr := pgtest.NewDatabase(t)
	s := open(t, addr, nil)
	_, tok := create(t, s, keys.CreateParams{Name: "busy"})
	var mu sync.Mutex
	reports := 0
	s.OnBackgroundError(func(err error, lost int) {
		mu.Lock()
		reports++
		mu.Unlock()
		if lost != 0 {
			t.Errorf("a failed write lost %d uses, which it keeps", lost)
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
	conn := connect(t, addr)
	mustExec(t, conn, `CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'could not extend file: No space left on device'; END $$;
		CREATE TRIGGER disk_full BEFORE INSERT ON usage_events FOR EACH STATEMENT EXECUTE FUNCTION refuse()`)
	check(30)
	if err := s.Flush(ctx); err == nil {
		t.Fatal("a failed write of uses was not reported to Flush")
	}
	recorded, lost, failing := s.UsageRecorded()
	mu.Lock()
	n := reports
	mu.Unlock()
	if failing == nil || lost != 0 || recorded != 10 || n == 0 {
		t.Fatalf("recorded %d, lost %d, failing %v, %d reports", recorded, lost, failing, n)
	}
	mustExec(t, conn, `DROP TRIGGER disk_full ON usage_events`)
	check(1)
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	recorded, lost, failing = s.UsageRecorded()
	if failing != nil || lost != 0 || recorded != 41 {
		t.Fatalf("after the database took them: recorded %d, lost %d, failing %v", recorded, lost, failing)
	}
	if k, _ := s.Get(ctx, "busy"); k.UsageCount != 41 {
		t.Fatalf("usage count %d, want 41", k.UsageCount)
	}
}
