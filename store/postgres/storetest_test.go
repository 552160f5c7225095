package postgres_test

import (
	"testing"
	"time"

	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/postgres"
	"github.com/keyctl/keyctl/store/postgres/pgtest"
	"github.com/keyctl/keyctl/store/storetest"
)

func openStore(t *testing.T, addr string, now func() time.Time) *postgres.Postgres {
	t.Helper()
	s, err := postgres.Open(t.Context(), addr, postgres.Options{Now: now})
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

// TestStore runs the conformance suite on one store.
func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) (store.Store, store.Store) {
		return openStore(t, pgtest.NewDatabase(t), now), nil
	})
}

// TestStoreTwoPools runs the conformance suite on two stores on one
// database, each with its own pool: two replicas on two machines.
func TestStoreTwoPools(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) (store.Store, store.Store) {
		addr := pgtest.NewDatabase(t)
		return openStore(t, addr, now), openStore(t, addr, now)
	})
}
