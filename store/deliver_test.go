package store_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/keys"
	"github.com/keyctl/keyctl/store/postgres/pgtest"
)

// plainStore hides the SQLite store's DeliveringIssuer, as a keyctl server
// in remote mode does: a store that commits before the secret is delivered.
type plainStore struct{ store.Store }

var errPipe = errors.New("broken pipe")

// backends runs test against a SQLite store and, when KEYCTL_TEST_POSTGRES
// names a server, a PostgreSQL one: both issue secrets in the transaction
// that delivers them.
func backends(t *testing.T, test func(t *testing.T, s store.Store)) {
	addrs := map[string]func(t *testing.T) string{
		"sqlite":   func(t *testing.T) string { return filepath.Join(t.TempDir(), "keyctl.db") },
		"postgres": func(t *testing.T) string { return pgtest.NewDatabase(t) },
	}
	for name, addr := range addrs {
		t.Run(name, func(t *testing.T) {
			s, err := store.Open(context.Background(), addr(t), store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			test(t, s)
		})
	}
}

func params(name string) keys.CreateParams {
	return keys.CreateParams{Name: name, Env: keys.Development, Prefix: "sk"}
}

func fail(*keys.Key, string) error { return errPipe }

// A key is active only if its secret was delivered: in the transaction
// (nothing is committed) or, with a store that committed first, by revoking
// it at once.
func TestCreateAndDeliver(t *testing.T) { backends(t, testCreateAndDeliver) }

func testCreateAndDeliver(t *testing.T, s store.Store) {
	ctx := context.Background()
	var got string
	k, err := store.CreateAndDeliver(ctx, s, params("ok"), func(k *keys.Key, secret string) error {
		got = secret
		return nil
	})
	if err != nil || k.Name != "ok" || got == "" {
		t.Fatalf("delivered create: %v, %v, %q", k, err, got)
	}
	if found, err := s.Find(ctx, got); err != nil || found.ID != k.ID {
		t.Fatalf("the delivered secret is the key's: %v, %v", found, err)
	}

	_, err = store.CreateAndDeliver(ctx, s, params("lost"), fail)
	if !errors.Is(err, store.ErrNotDelivered) || !errors.Is(err, errPipe) {
		t.Fatalf("undelivered create: %v", err)
	}
	if _, err := s.Get(ctx, "lost"); !errors.Is(err, keys.ErrNotFound) {
		t.Fatalf("an undelivered key was committed: %v", err)
	}
	if entries, _ := s.Audit(ctx, keys.AuditFilter{Key: "lost"}); len(entries) != 0 {
		t.Fatalf("an undelivered key was audited: %v", entries)
	}

	_, err = store.CreateAndDeliver(ctx, plainStore{s}, params("remote"), fail)
	if !errors.Is(err, store.ErrNotDelivered) {
		t.Fatalf("undelivered create, remote: %v", err)
	}
	k, err = s.Get(ctx, "remote")
	if err != nil || k.Status != keys.Revoked || k.RevokeReason != store.NotDeliveredReason {
		t.Fatalf("an undelivered key of a remote store is revoked: %+v, %v", k, err)
	}
	if entries, _ := s.Audit(ctx, keys.AuditFilter{Key: k.ID, Action: keys.ActionRevoke}); len(entries) != 1 ||
		entries[0].Note != store.NotDeliveredReason {
		t.Fatalf("revocation audit: %v", entries)
	}
}

// A rotation whose secret was not delivered leaves the key as it was.
func TestRotateAndDeliver(t *testing.T) { backends(t, testRotateAndDeliver) }

func testRotateAndDeliver(t *testing.T, s store.Store) {
	ctx := context.Background()
	for _, st := range []store.Store{s, plainStore{s}} {
		k, old, err := s.Create(ctx, params("r"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = store.RotateAndDeliver(ctx, st, "r", 0, fail)
		if !errors.Is(err, store.ErrNotDelivered) || !errors.Is(err, errPipe) {
			t.Fatalf("%T: undelivered rotate: %v", st, err)
		}
		after, err := s.Get(ctx, "r")
		if err != nil || after.Start != k.Start || after.RotatedAt != nil || after.Status != keys.Active {
			t.Fatalf("%T: the key changed: %+v, %v", st, after, err)
		}
		res, err := s.Verify(ctx, keys.VerifyRequest{Token: old})
		if err != nil || res.Code != keys.Valid {
			t.Fatalf("%T: the previous secret no longer works: %v, %v", st, res, err)
		}
		secrets, err := s.Secrets(ctx, "r")
		if err != nil || len(secrets) != 1 || !secrets[0].Current {
			t.Fatalf("%T: secrets after an undelivered rotation: %+v, %v", st, secrets, err)
		}
		if _, err := s.Revoke(ctx, "r", ""); err != nil {
			t.Fatal(err)
		}
	}
}
