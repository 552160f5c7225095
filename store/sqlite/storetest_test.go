package sqlite_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/sqlite"
	"github.com/keyctl/keyctl/store/storetest"
)

func open(t *testing.T, path string, now func() time.Time) *sqlite.SQLite {
	t.Helper()
	s, err := sqlite.Open(t.Context(), path, sqlite.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) (store.Store, store.Store) {
		return open(t, filepath.Join(t.TempDir(), "keyctl.db"), now), nil
	})
}

// TestStoreTwoHandles runs the suite on two independent handles onto one
// database file, as two processes or machines sharing it would.
func TestStoreTwoHandles(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) (store.Store, store.Store) {
		path := filepath.Join(t.TempDir(), "keyctl.db")
		return open(t, path, now), open(t, path, now)
	})
}
