package sqlite

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/keyctl/keyctl/store/keys"
)

type clock struct{ t time.Time }

func (c *clock) Now() time.Time          { return c.t }
func (c *clock) Advance(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock                   { return &clock{t: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)} }
func int64p(v int64) *int64              { return &v }
func strp(v string) *string              { return &v }
func timep(t time.Time) *time.Time       { return &t }

func openTest(t *testing.T, c *clock) (*SQLite, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "data", "keyctl.db")
	s, err := Open(context.Background(), path, Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func create(t *testing.T, s *SQLite, p keys.CreateParams) (*keys.Key, string) {
	t.Helper()
	if p.Env == "" {
		p.Env = keys.Production
	}
	if p.Prefix == "" {
		p.Prefix = "sk"
	}
	k, secret, err := s.Create(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	return k, secret
}

func TestCreateStoresSettings(t *testing.T) {
	c := newClock()
	s, path := openTest(t, c)
	exp := c.t.Add(48 * time.Hour)
	k, secret := create(t, s, keys.CreateParams{
		Name: "billing", Description: "billing service", Scopes: []string{"sdk", "proxy", "sdk"},
		ExpiresAt: &exp, AllowedIPs: []string{"10.0.0.0/8", "::1"}, Quota: int64p(5),
		RateLimit: &keys.RateLimit{Count: 100, Unit: "minute"}, Metadata: map[string]string{"team": "pay"},
		CreatedBy: "alice",
	})
	if k.Name != "billing" || !slices.Equal(k.Scopes, []string{"proxy", "sdk"}) || k.Env != keys.Production ||
		k.Status != keys.Active || !k.ExpiresAt.Equal(exp) || *k.QuotaRemaining != 5 || k.RateLimit.String() != "100/m" ||
		k.Metadata["team"] != "pay" || k.CreatedBy != "alice" || !k.CreatedAt.Equal(c.t) {
		t.Fatalf("created key = %+v", k)
	}
	if len(k.ID) != 20 || k.ID[:4] != "key_" {
		t.Errorf("id = %q", k.ID)
	}
	if k.Start != secret[:len("sk_live_")+8] {
		t.Errorf("start %q is not the start of the secret", k.Start)
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("database mode = %v, %v; want 0600", info.Mode().Perm(), err)
	}
	dir, _ := os.Stat(filepath.Dir(path))
	if dir.Mode().Perm() != 0o700 {
		t.Errorf("directory mode = %v; want 0700", dir.Mode().Perm())
	}
}

func TestNameResolution(t *testing.T) {
	c := newClock()
	s, _ := openTest(t, c)
	ctx := context.Background()
	old, _ := create(t, s, keys.CreateParams{Name: "ci"})
	if _, _, err := s.Create(ctx, keys.CreateParams{Name: "ci", Env: keys.Production, Prefix: "sk"}); !errors.Is(err, keys.ErrConflict) {
		t.Fatalf("second key named ci: err = %v, want ErrConflict", err)
	}
	if _, err := s.Revoke(ctx, "ci", "leaked"); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, "ci")
	if err != nil || got.ID != old.ID || got.Status != keys.Revoked {
		t.Fatalf("Get(ci) after revoke = %+v, %v; want the revoked key", got, err)
	}
	c.Advance(time.Minute)
	fresh, _ := create(t, s, keys.CreateParams{Name: "ci"})
	if got, _ := s.Get(ctx, "ci"); got.ID != fresh.ID {
		t.Errorf("Get(ci) = %s; want the live key %s", got.ID, fresh.ID)
	}
	if got, _ := s.Get(ctx, old.ID); got.ID != old.ID {
		t.Errorf("Get(id) = %s; want %s", got.ID, old.ID)
	}
	if _, err := s.Get(ctx, "nope"); !errors.Is(err, keys.ErrNotFound) {
		t.Errorf("Get(nope) = %v, want ErrNotFound", err)
	}
	// Of two revoked keys of one name, the more recently revoked is chosen.
	c.Advance(time.Minute)
	s.Revoke(ctx, fresh.ID, "")
	if got, _ := s.Get(ctx, "ci"); got.ID != fresh.ID {
		t.Errorf("Get(ci) = %s; want the most recently revoked %s", got.ID, fresh.ID)
	}
}

func TestLifecycle(t *testing.T) {
	c := newClock()
	s, _ := openTest(t, c)
	ctx := context.Background()
	k, _ := create(t, s, keys.CreateParams{Name: "svc", Scopes: []string{"a"}})

	c.Advance(time.Hour)
	u, err := s.Update(ctx, "svc", keys.UpdateParams{Name: strp("svc2"), AddScopes: []string{"b"}, RemoveScopes: []string{"a"},
		AddIPs: []string{"192.0.2.1"}, Quota: int64p(3), SetMeta: map[string]string{"x": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	if u.Name != "svc2" || !slices.Equal(u.Scopes, []string{"b"}) || *u.Quota != 3 || u.Metadata["x"] != "1" ||
		!u.UpdatedAt.Equal(c.t) || !slices.Equal(u.AllowedIPs, []string{"192.0.2.1"}) {
		t.Fatalf("updated = %+v", u)
	}
	u, _ = s.Update(ctx, k.ID, keys.UpdateParams{ClearQuota: true, RemoveMeta: []string{"x"}, RemoveIPs: []string{"192.0.2.1"}})
	if u.Quota != nil || len(u.Metadata) != 0 || len(u.AllowedIPs) != 0 {
		t.Fatalf("cleared = %+v", u)
	}

	d, err := s.SetDisabled(ctx, k.ID, true)
	if err != nil || d.Status != keys.Disabled {
		t.Fatalf("disable: %+v, %v", d, err)
	}
	e, err := s.SetDisabled(ctx, k.ID, false)
	if err != nil || e.Status != keys.Active {
		t.Fatalf("enable: %+v, %v", e, err)
	}

	r, err := s.Revoke(ctx, k.ID, "leaked in a log")
	if err != nil || r.Status != keys.Revoked || r.RevokeReason != "leaked in a log" || !r.RevokedAt.Equal(c.t) {
		t.Fatalf("revoke: %+v, %v", r, err)
	}
	c.Advance(time.Hour)
	again, err := s.Revoke(ctx, k.ID, "other")
	if err != nil || again.RevokeReason != "leaked in a log" || !again.RevokedAt.Equal(*r.RevokedAt) {
		t.Fatalf("second revoke changed the key: %+v, %v", again, err)
	}
	for name, op := range map[string]func() error{
		"enable":  func() error { _, err := s.SetDisabled(ctx, k.ID, false); return err },
		"disable": func() error { _, err := s.SetDisabled(ctx, k.ID, true); return err },
		"update":  func() error { _, err := s.Update(ctx, k.ID, keys.UpdateParams{Description: strp("x")}); return err },
		"rotate":  func() error { _, _, err := s.Rotate(ctx, k.ID, 0); return err },
	} {
		if err := op(); !errors.Is(err, keys.ErrRevoked) {
			t.Errorf("%s of a revoked key: err = %v, want ErrRevoked", name, err)
		}
	}
}

func TestUpdateNameConflict(t *testing.T) {
	s, _ := openTest(t, newClock())
	create(t, s, keys.CreateParams{Name: "a"})
	create(t, s, keys.CreateParams{Name: "b"})
	if _, err := s.Update(context.Background(), "b", keys.UpdateParams{Name: strp("a")}); !errors.Is(err, keys.ErrConflict) {
		t.Fatalf("rename onto a live name: %v", err)
	}
}

func TestExpiryIsDerived(t *testing.T) {
	c := newClock()
	s, _ := openTest(t, c)
	create(t, s, keys.CreateParams{Name: "short", ExpiresAt: timep(c.t.Add(time.Minute))})
	c.Advance(time.Minute)
	k, _ := s.Get(context.Background(), "short")
	if k.Status != keys.Expired {
		t.Fatalf("status at expiry = %s, want expired", k.Status)
	}
}

func TestRotateKeepsIdentityAndEndsOldSecrets(t *testing.T) {
	c := newClock()
	s, _ := openTest(t, c)
	ctx := context.Background()
	k, first := create(t, s, keys.CreateParams{Name: "r", Scopes: []string{"sdk"}, Env: keys.Staging, Prefix: "pk"})
	c.Advance(time.Minute)
	r, second, err := s.Rotate(ctx, "r", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if r.ID != k.ID || r.Name != "r" || !slices.Equal(r.Scopes, k.Scopes) || r.Env != keys.Staging || r.Prefix != "pk" ||
		!r.RotatedAt.Equal(c.t) || second == first || r.Start != second[:len("pk_test_")+8] {
		t.Fatalf("rotated = %+v", r)
	}
	ends := func() map[string]*int64 {
		rows, err := s.db.Query(`SELECT start, ends_at FROM secrets WHERE key_id = ?`, k.ID)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		m := map[string]*int64{}
		for rows.Next() {
			var start string
			var end *int64
			rows.Scan(&start, &end)
			m[start] = end
		}
		return m
	}
	e := ends()
	if e[r.Start] != nil || e[k.Start] == nil || *e[k.Start] != c.t.Add(time.Hour).Unix() {
		t.Fatalf("after rotate with grace: ends = %v", e)
	}
	// Rotating again without grace ends every older secret at once.
	c.Advance(time.Minute)
	r2, _, err := s.Rotate(ctx, "r", 0)
	if err != nil {
		t.Fatal(err)
	}
	e = ends()
	if len(e) != 3 || e[r2.Start] != nil || *e[k.Start] != c.t.Unix() || *e[r.Start] != c.t.Unix() {
		t.Fatalf("after rotate without grace: ends = %v", e)
	}
}

func TestListFilters(t *testing.T) {
	c := newClock()
	s, _ := openTest(t, c)
	ctx := context.Background()
	create(t, s, keys.CreateParams{Name: "p", Env: keys.Production, Scopes: []string{"sdk"}, ExpiresAt: timep(c.t.Add(48 * time.Hour))})
	create(t, s, keys.CreateParams{Name: "d", Env: keys.Development, Scopes: []string{"proxy"}})
	create(t, s, keys.CreateParams{Name: "gone", Env: keys.Production})
	s.Revoke(ctx, "gone", "")
	c.Advance(24 * time.Hour)

	names := func(f keys.ListFilter) []string {
		keys, err := s.List(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, k := range keys {
			out = append(out, k.Name)
		}
		slices.Sort(out)
		return out
	}
	for _, tt := range []struct {
		f    keys.ListFilter
		want []string
	}{
		{keys.ListFilter{}, []string{"d", "p"}},
		{keys.ListFilter{All: true}, []string{"d", "gone", "p"}},
		{keys.ListFilter{Status: keys.Revoked}, []string{"gone"}},
		{keys.ListFilter{Env: keys.Production}, []string{"p"}},
		{keys.ListFilter{Scope: "proxy"}, []string{"d"}},
		{keys.ListFilter{Expiring: 36 * time.Hour}, []string{"p"}},
		{keys.ListFilter{Expiring: 12 * time.Hour}, nil},
		{keys.ListFilter{Unused: 12 * time.Hour}, []string{"d", "p"}},
		{keys.ListFilter{Unused: 48 * time.Hour}, nil},
	} {
		if got := names(tt.f); !slices.Equal(got, tt.want) {
			t.Errorf("List(%+v) = %v, want %v", tt.f, got, tt.want)
		}
	}
}

// No plaintext secret may reach the database file or its write-ahead log.
func TestNoSecretInDatabaseFiles(t *testing.T) {
	c := newClock()
	s, path := openTest(t, c)
	ctx := context.Background()
	var secrets []string
	for range 3 {
		_, secret := create(t, s, keys.CreateParams{})
		secrets = append(secrets, secret)
	}
	_, rotated, err := s.Rotate(ctx, "", 0)
	if err == nil {
		t.Fatal("rotating an empty ref should fail")
	}
	keys, _ := s.List(ctx, keys.ListFilter{})
	for _, k := range keys {
		if _, rotated, err = s.Rotate(ctx, k.ID, time.Hour); err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, rotated)
	}
	files, _ := filepath.Glob(path + "*")
	if len(files) < 2 {
		t.Fatalf("expected the database and its -wal file, found %v", files)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if info, _ := os.Stat(f); info.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", filepath.Base(f), info.Mode().Perm())
		}
		for _, secret := range secrets {
			if bytes.Contains(data, []byte(secret)) || bytes.Contains(data, []byte(secret[len(secret)-20:])) {
				t.Errorf("%s contains a secret", filepath.Base(f))
			}
		}
	}
}
