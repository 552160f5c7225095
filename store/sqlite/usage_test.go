package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyctl/keyctl/apikey"
	"github.com/keyctl/keyctl/store/keys"
)

// usageOf reads a key's usage as show does.
func usageOf(t *testing.T, s *SQLite, ref string) (int64, *time.Time, string) {
	t.Helper()
	k, err := s.Get(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	return k.UsageCount, k.LastUsedAt, k.LastUsedIP
}

func verify(t *testing.T, s *SQLite, secret, ip string) *keys.VerifyResult {
	t.Helper()
	req := keys.VerifyRequest{Token: secret, Cost: 1}
	if ip != "" {
		req.IP = netip.MustParseAddr(ip)
	}
	res, err := s.Verify(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestUsageComesFromTheLog(t *testing.T) {
	c := newClock()
	s, _ := openTest(t, c)
	k, secret := create(t, s, keys.CreateParams{Name: "billing"})
	if n, at, ip := usageOf(t, s, k.ID); n != 0 || at != nil || ip != "" {
		t.Fatalf("new key: %d %v %q", n, at, ip)
	}
	verify(t, s, secret, "10.0.0.1")
	c.Advance(time.Minute)
	verify(t, s, secret, "")
	// The last address given is kept by a use that gives none.
	if n, at, ip := usageOf(t, s, k.ID); n != 2 || !at.Equal(c.t) || ip != "10.0.0.1" {
		t.Fatalf("after two uses: %d %v %q, want 2, %v, 10.0.0.1", n, at, ip, c.t)
	}
	if res := verify(t, s, secret, "2001:db8::1"); res.Key.UsageCount != 3 || res.Key.LastUsedIP != "2001:db8::1" {
		t.Fatalf("the result's key: %d %q", res.Key.UsageCount, res.Key.LastUsedIP)
	}

	// Past the retention the log is pruned, but the last entry stays: it
	// holds the key's usage.
	c.Advance(DefaultUsageRetention + time.Hour)
	if err := s.PruneUsage(context.Background()); err != nil {
		t.Fatal(err)
	}
	rep, err := s.Usage(context.Background(), k.ID, keys.UsageQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Events) != 0 {
		t.Fatalf("events older than the retention are listed: %+v", rep.Events)
	}
	if n, _, ip := usageOf(t, s, k.ID); n != 3 || ip != "2001:db8::1" {
		t.Fatalf("after pruning: %d %q, want 3 and 2001:db8::1", n, ip)
	}
	verify(t, s, secret, "")
	if n, at, _ := usageOf(t, s, k.ID); n != 4 || !at.Equal(c.t) {
		t.Fatalf("a use after pruning: %d %v", n, at)
	}
}

// TestUsageAfterMigration opens a database of schema version 4, whose keys
// held their usage in their own row, and whose log had been pruned for one
// key: the usage survives the migration and goes on from there.
func TestUsageAfterMigration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keyctl.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range migrations[:4] {
		if _, err := db.Exec(m); err != nil {
			t.Fatal(err)
		}
	}
	lastUsed := time.Date(2026, 10, 1, 8, 0, 0, 0, time.UTC)
	secrets := map[string]string{}
	for i, name := range []string{"logged", "pruned"} {
		tok, err := apikey.New("sk", apikey.TagLive)
		if err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("key_%d", i)
		secrets[name] = tok.String()
		_, err = db.Exec(`INSERT INTO keys (id, name, prefix, env, start, status, created_at, updated_at,
			usage_count, last_used_at, last_used_ip) VALUES (?, ?, 'sk', 'production', ?, 'active', 0, 0, 3, ?, '10.0.0.7')`,
			id, name, tok.Start(), lastUsed.Unix())
		if err == nil {
			_, err = db.Exec(`INSERT INTO secrets (digest, key_id, start, created_at) VALUES (?, ?, ?, 0)`,
				apikey.Digest(tok.String(), nil), id, tok.Start())
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for n := 1; n <= 3; n++ {
		if _, err := db.Exec(`INSERT INTO usage_events (key_id, n, at, code, ip) VALUES ('key_0', ?, ?, 'VALID', ?)`,
			n, lastUsed.UnixMilli(), map[bool]string{true: "10.0.0.7"}[n == 2]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(`PRAGMA user_version = 4`); err != nil {
		t.Fatal(err)
	}
	db.Close()

	c := newClock()
	s, err := Open(context.Background(), path, Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, name := range []string{"logged", "pruned"} {
		if n, at, ip := usageOf(t, s, name); n != 3 || !at.Equal(lastUsed) || ip != "10.0.0.7" {
			t.Errorf("%s after the migration: %d %v %q, want 3, %v, 10.0.0.7", name, n, at, ip, lastUsed)
		}
		verify(t, s, secrets[name], "")
		if n, at, ip := usageOf(t, s, name); n != 4 || !at.Equal(c.t) || ip != "10.0.0.7" {
			t.Errorf("%s used after the migration: %d %v %q, want 4, %v, 10.0.0.7", name, n, at, ip, c.t)
		}
	}
}
