package sqlite

import (
	"context"
	"database/sql"
	"testing"
)

// TestTransactionsTakeTheWriteLockFirst checks the mechanism the store's
// read-then-write changes rest on: each transaction takes the database's
// write lock at BEGIN, before its first read, so that no other process or
// machine writes between what it reads and what it writes.
func TestTransactionsTakeTheWriteLockFirst(t *testing.T) {
	s, path := openTest(t, newClock())
	other, err := sql.Open("sqlite", path+"?_busy_timeout=0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	other.SetMaxOpenConns(1)
	ctx := context.Background()
	// locked reports whether another connection is kept from writing.
	locked := func() bool {
		if _, err := other.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
			return true
		}
		if _, err := other.ExecContext(ctx, "ROLLBACK"); err != nil {
			t.Fatal(err)
		}
		return false
	}
	if locked() {
		t.Fatal("the database is locked with no transaction open")
	}
	err = s.tx(ctx, func(*sql.Tx) error {
		if !locked() {
			t.Error("tx: another connection may write before the transaction's first statement")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.writeTx(ctx, func(*writeTx) error {
		if !locked() {
			t.Error("writeTx: another connection may write before the transaction's first statement")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if locked() {
		t.Fatal("the lock outlived the transactions")
	}
}
