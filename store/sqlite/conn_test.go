package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"

	"github.com/keyctl/keyctl/store/keys"
)

func TestWriteTxCommitsOrRollsBack(t *testing.T) {
	s, _ := openTest(t, newClock())
	k, _ := create(t, s, keys.CreateParams{Name: "billing"})
	ctx := context.Background()
	bump := func(tx *writeTx) error {
		return tx.exec(`UPDATE keys SET usage_count = usage_count + ? WHERE id = ?`, 5, k.ID)
	}
	count := func() (n int64) {
		t.Helper()
		if err := s.db.QueryRow(`SELECT usage_count FROM keys WHERE id = ?`, k.ID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	boom := errors.New("boom")
	err := s.writeTx(ctx, func(tx *writeTx) error {
		if err := bump(tx); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) || count() != 0 {
		t.Fatalf("failed transaction: err %v, usage_count %d; want boom and 0", err, count())
	}
	// A statement that fails rolls back what came before it too.
	err = s.writeTx(ctx, func(tx *writeTx) error {
		if err := bump(tx); err != nil {
			return err
		}
		return tx.exec(`UPDATE keys SET status = 'lost' WHERE id = ?`, k.ID)
	})
	if err == nil || !strings.Contains(err.Error(), "CHECK") || count() != 0 {
		t.Fatalf("failed statement: err %v, usage_count %d; want a CHECK failure and 0", err, count())
	}
	if err := s.writeTx(ctx, bump); err != nil || count() != 5 {
		t.Fatalf("committed transaction: err %v, usage_count %d; want 5", err, count())
	}
	// The connection is usable by database/sql after each of them.
	if _, err := s.Get(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
}

func TestDriverRowScan(t *testing.T) {
	s, _ := openTest(t, newClock())
	k, _ := create(t, s, keys.CreateParams{Name: "billing", Quota: int64p(3)})
	err := s.writeTx(context.Background(), func(tx *writeTx) error {
		var (
			id, name string
			status   keys.Status
			digest   []byte
			quota    sql.NullInt64
			expires  sql.NullInt64
			count    int64
		)
		row := tx.queryRow(`SELECT k.id, k.name, k.status, s.digest, k.quota, k.expires_at, k.usage_count
			FROM keys k JOIN secrets s ON s.key_id = k.id WHERE k.id = ?`, k.ID)
		if err := row.Scan(&id, &name, &status, &digest, &quota, &expires, &count); err != nil {
			return err
		}
		if id != k.ID || name != "billing" || status != keys.Active || len(digest) != 32 ||
			quota != (sql.NullInt64{Int64: 3, Valid: true}) || expires.Valid || count != 0 {
			t.Errorf("scanned %q %q %q %x %v %v %d", id, name, status, digest, quota, expires, count)
		}
		if err := tx.queryRow(`SELECT name FROM keys WHERE id = 'none'`).Scan(&name); !errors.Is(err, sql.ErrNoRows) {
			t.Errorf("no row: %v, want sql.ErrNoRows", err)
		}
		if err := tx.queryRow(`SELECT name FROM keys`).Scan(&count); err == nil || !strings.Contains(err.Error(), "column 1") {
			t.Errorf("text into *int64: %v, want an error naming column 1", err)
		}
		if err := tx.queryRow(`SELECT name, env FROM keys`).Scan(&name); err == nil {
			t.Error("two columns into one destination: no error")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
