package postgres_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/keyctl/keyctl/store/postgres"
	"github.com/keyctl/keyctl/store/postgres/pgtest"
)

// TestReplicasMigrateOnce: replicas that start together on a new database
// all open it, and its schema is created once.
func TestReplicasMigrateOnce(t *testing.T) {
	addr := pgtest.NewDatabase(t)
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := postgres.Open(context.Background(), addr, postgres.Options{})
			if err == nil {
				s.Close()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	s := open(t, addr, nil)
	if v, err := s.SchemaVersion(context.Background()); err != nil || v != postgres.SchemaVersion {
		t.Fatalf("schema version %d, %v; want %d", v, err, postgres.SchemaVersion)
	}
	if from, to, err := s.Migrate(context.Background()); err != nil || from != to || to != postgres.SchemaVersion {
		t.Fatalf("Migrate again = %d → %d, %v; want nothing to do", from, to, err)
	}
}

// TestNewerSchemaIsRefused: a replica does not serve a database a newer
// keyctl has migrated, whose meaning it does not know.
func TestNewerSchemaIsRefused(t *testing.T) {
	addr := pgtest.NewDatabase(t)
	open(t, addr, nil)
	mustExec(t, connect(t, addr), `UPDATE keyctl_schema SET version = version + 1`)
	for _, noMigrate := range []bool{false, true} {
		s, err := postgres.Open(context.Background(), addr, postgres.Options{NoMigrate: noMigrate})
		if !errors.Is(err, postgres.ErrSchemaNewer) {
			if s != nil {
				s.Close()
			}
			t.Fatalf("Open (NoMigrate %v) of a newer schema: %v, want ErrSchemaNewer", noMigrate, err)
		}
	}
}

// TestNoMigrateLeavesTheSchema: keyctl migrate opens without migrating,
// then migrates and says from which version to which.
func TestNoMigrateLeavesTheSchema(t *testing.T) {
	addr := pgtest.NewDatabase(t)
	s, err := postgres.Open(context.Background(), addr, postgres.Options{NoMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, err := s.SchemaVersion(context.Background()); err != nil || v != 0 {
		t.Fatalf("schema version after NoMigrate = %d, %v; want 0", v, err)
	}
	if from, to, err := s.Migrate(context.Background()); err != nil || from != 0 || to != postgres.SchemaVersion {
		t.Fatalf("Migrate = %d → %d, %v", from, to, err)
	}
}
