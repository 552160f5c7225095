package postgres_test

import (
	"os"
	"testing"

	"github.com/keyctl/keyctl/store/postgres/pgtest"
)

// TestMain says once how to run the PostgreSQL tests when they are skipped:
// this package's tests stand for all of them.
func TestMain(m *testing.M) {
	pgtest.Announce()
	os.Exit(m.Run())
}
