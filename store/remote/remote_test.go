package remote_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyctl/keyctl/api"
	"github.com/keyctl/keyctl/apikey"
	"github.com/keyctl/keyctl/server"
	"github.com/keyctl/keyctl/store/keys"
	"github.com/keyctl/keyctl/store/remote"
	"github.com/keyctl/keyctl/store/sqlite"
)

// serve runs a real server over SQLite on a loopback port and returns the
// local store and a client with a token of the given scope.
func serve(t *testing.T, scope string) (*sqlite.SQLite, *remote.Client, string) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "k.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, tok, err := st.Create(ctx, keys.CreateParams{Name: "ops", Scopes: []string{scope}, Env: keys.Development, Prefix: "sk"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- server.New(st, server.Options{}).Run(runCtx, ln, server.TLS{}) }()
	url := "http://" + ln.Addr().String()
	c, err := remote.New(url, tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		st.Close()
	})
	return st, c, url
}

func TestLifecycleAgainstServer(t *testing.T) {
	st, c, _ := serve(t, api.ScopeOwner)
	ctx := context.Background()
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	k, secret, err := c.Create(ctx, keys.CreateParams{Name: "billing", Scopes: []string{"sdk"}, Env: keys.Production,
		Prefix: "sk", ExpiresAt: &exp, Quota: ptr(int64(2)), Metadata: map[string]string{"a": "b"}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, "sk_live_") || k.CreatedBy != "ops" || !k.ExpiresAt.Equal(exp) {
		t.Fatalf("created %+v", k)
	}
	local, err := st.Get(ctx, "billing")
	if err != nil || local.ID != k.ID {
		t.Fatalf("the server's store has %v, %v", local, err)
	}
	if got, err := c.Get(ctx, k.ID); err != nil || got.Name != "billing" {
		t.Fatalf("Get: %v %v", got, err)
	}
	if got, err := c.Find(ctx, secret); err != nil || got.ID != k.ID {
		t.Fatalf("Find: %v %v", got, err)
	}
	up, err := c.Update(ctx, "billing", keys.UpdateParams{Description: ptr("d"), AddScopes: []string{"x"}, ClearExpiry: true})
	if err != nil || up.Description != "d" || !slices.Equal(up.Scopes, []string{"sdk", "x"}) || up.ExpiresAt != nil {
		t.Fatalf("Update: %+v %v", up, err)
	}
	res, err := c.Verify(ctx, keys.VerifyRequest{Token: secret, Scopes: []string{"sdk"}, Env: keys.Production,
		IP: netip.MustParseAddr("192.0.2.1"), Cost: 1})
	if err != nil || res.Code != keys.Valid || *res.Key.QuotaRemaining != 1 {
		t.Fatalf("Verify: %+v %v", res, err)
	}
	res, err = c.Verify(ctx, keys.VerifyRequest{Token: secret, Cost: 0})
	if err != nil || res.Code != keys.Valid || *res.Key.QuotaRemaining != 1 {
		t.Fatalf("Verify at cost 0: %+v %v", res, err)
	}
	rep, err := c.Usage(ctx, "billing", keys.UsageQuery{Since: time.Now().Add(-time.Hour), Limit: 1})
	if err != nil || rep.Key.UsageCount != 2 || len(rep.Events) != 1 || rep.Events[0].IP != "" && rep.Events[0].IP != "192.0.2.1" {
		t.Fatalf("Usage: %+v %v", rep, err)
	}
	rot, newSecret, err := c.Rotate(ctx, "billing", time.Hour)
	if err != nil || newSecret == secret || rot.RotatedAt == nil {
		t.Fatalf("Rotate: %v %v", rot, err)
	}
	if k, err := c.SetDisabled(ctx, "billing", true); err != nil || k.Status != keys.Disabled {
		t.Fatalf("disable: %v %v", k, err)
	}
	if k, err := c.SetDisabled(ctx, "billing", false); err != nil || k.Status != keys.Active {
		t.Fatalf("enable: %v %v", k, err)
	}
	if k, err := c.Revoke(ctx, "billing", "done"); err != nil || k.Status != keys.Revoked || k.RevokeReason != "done" {
		t.Fatalf("Revoke: %v %v", k, err)
	}
}

// TestErrorsAreTheStoresErrors: the commands see the same errors, with the
// same messages, as from the local store.
func TestErrorsAreTheStoresErrors(t *testing.T) {
	st, c, url := serve(t, api.ScopeAdmin)
	ctx := context.Background()
	if _, _, err := c.Create(ctx, keys.CreateParams{Name: "a", Env: keys.Development, Prefix: "sk"}); err != nil {
		t.Fatal(err)
	}
	_, localErr := st.Get(ctx, "nobody")
	_, err := c.Get(ctx, "nobody")
	if !errors.Is(err, keys.ErrNotFound) || err.Error() != localErr.Error() {
		t.Fatalf("Get nobody: %v, want %v", err, localErr)
	}
	for _, ref := range []string{"..", "a/b", "", "?x"} {
		if _, err := c.Get(ctx, ref); !errors.Is(err, keys.ErrNotFound) {
			t.Errorf("Get %q: %v", ref, err)
		}
	}
	_, _, err = c.Create(ctx, keys.CreateParams{Name: "a", Env: keys.Development, Prefix: "sk"})
	if !errors.Is(err, keys.ErrConflict) || err.Error() != `name "a" is already in use by another key: conflict` {
		t.Fatalf("Create a twice: %v", err)
	}
	if _, err := c.Revoke(ctx, "a", ""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Rotate(ctx, "a", 0); !errors.Is(err, keys.ErrRevoked) || !strings.HasSuffix(err.Error(), "key is revoked") {
		t.Fatalf("Rotate a revoked key: %v", err)
	}
	if _, err := c.Update(ctx, "a", keys.UpdateParams{Quota: ptr(int64(-1))}); !errors.Is(err, keys.ErrInvalid) {
		t.Fatalf("Update with a negative quota: %v", err)
	}
	_, _, err = c.Create(ctx, keys.CreateParams{Scopes: []string{api.ScopeOwner}, Env: keys.Development, Prefix: "sk"})
	if !errors.Is(err, remote.ErrUnauthorized) || !errors.Is(err, keys.ErrForbidden) || !strings.Contains(err.Error(), "keyctl:owner") {
		t.Fatalf("an admin creating an owner key: %v", err)
	}
	bad, err := remote.New(url, "sk_test_nope", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.List(ctx, keys.ListFilter{}); !errors.Is(err, remote.ErrUnauthorized) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("a bad token: %v", err)
	}
	down, _ := remote.New("http://127.0.0.1:1", "sk_test_x", nil)
	if _, err := down.Get(ctx, "a"); err == nil || !strings.HasPrefix(err.Error(), "server http://127.0.0.1:1: ") {
		t.Fatalf("no server: %v", err)
	}
	for _, u := range []string{"ftp://x", "127.0.0.1:8420", "http://"} {
		if _, err := remote.New(u, "t", nil); !errors.Is(err, keys.ErrInvalid) {
			t.Errorf("New(%q): %v", u, err)
		}
	}
}

// TestListFetchesEveryPage: List returns what the local store's List
// returns, however many pages it takes.
func TestListFetchesEveryPage(t *testing.T) {
	st, c, _ := serve(t, api.ScopeRead)
	remote.SetPageSize(c, 3)
	ctx := context.Background()
	for i := range 10 {
		env := keys.Development
		if i%2 == 0 {
			env = keys.Production
		}
		k, _, err := st.Create(ctx, keys.CreateParams{Name: fmt.Sprintf("k%d", i), Env: env, Prefix: "sk", Scopes: []string{"s"}})
		if err != nil {
			t.Fatal(err)
		}
		if i == 3 {
			st.Revoke(ctx, k.ID, "")
		}
	}
	for _, f := range []keys.ListFilter{{}, {All: true}, {Env: keys.Production}, {Status: keys.Revoked}, {Scope: "s", All: true}, {Unused: time.Hour}} {
		want, err := st.List(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.List(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.EqualFunc(got, want, func(a, b *keys.Key) bool { return a.ID == b.ID }) {
			t.Errorf("List(%+v): %d keys, want %d", f, len(got), len(want))
		}
	}
}

func TestTokenNeverInURL(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.String())
		mu.Unlock()
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"error": {"code": "not_found", "message": "key not found"}}`))
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: h}
	go hs.Serve(ln)
	defer hs.Close()
	c, _ := remote.New("http://"+ln.Addr().String(), "sk_test_admintoken", nil)
	ctx := context.Background()
	tok, _ := apikey.New("sk", apikey.TagTest)
	secret := tok.String()
	c.Find(ctx, secret)
	c.Verify(ctx, keys.VerifyRequest{Token: secret})
	// A secret given where a key's name or id is expected is looked up by
	// POST, never put in a path, and never echoed in the error.
	_, err = c.Get(ctx, secret)
	c.Revoke(ctx, secret, "")
	c.Rotate(ctx, secret, 0)
	c.Usage(ctx, secret, keys.UsageQuery{})
	c.RevokeSecret(ctx, secret, "")
	if err == nil || strings.Contains(err.Error(), secret[12:]) {
		t.Fatalf("Get(secret): %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, u := range seen {
		if strings.Contains(u, secret[12:]) || strings.Contains(u, "admintoken") {
			t.Fatalf("a token in a URL: %s", u)
		}
	}
	if len(seen) != 7 {
		t.Fatalf("requests %v", seen)
	}
}

// TestPlainHTTPOnlyToLoopback: a token crosses the network in clear text
// only when asked to, deliberately.
func TestPlainHTTPOnlyToLoopback(t *testing.T) {
	for _, u := range []string{"http://127.0.0.1:8420", "http://localhost:8420", "http://[::1]:8420", "https://keys.example.com", "https://192.0.2.1"} {
		if _, err := remote.New(u, "t", nil); err != nil {
			t.Errorf("New(%q): %v", u, err)
		}
	}
	for _, u := range []string{"http://192.0.2.1:8420", "http://keys.example.com", "http://10.0.0.1"} {
		_, err := remote.New(u, "t", nil)
		if !errors.Is(err, keys.ErrInvalid) || !strings.Contains(err.Error(), "--allow-http") || !strings.Contains(err.Error(), "KEYCTL_ALLOW_HTTP") {
			t.Errorf("New(%q): %v, want a refusal naming --allow-http", u, err)
		}
		if _, err := remote.New(u, "t", nil, remote.AllowPlainHTTP); err != nil {
			t.Errorf("New(%q, AllowPlainHTTP): %v", u, err)
		}
	}
}

// TestRevokeSecretThroughTheServer: the holder's revocation needs no token,
// and tells nothing.
func TestRevokeSecretThroughTheServer(t *testing.T) {
	st, _, url := serve(t, api.ScopeRead)
	ctx := context.Background()
	k, secret, err := st.Create(ctx, keys.CreateParams{Name: "leaked", Env: keys.Development, Prefix: "sk"})
	if err != nil {
		t.Fatal(err)
	}
	anon, err := remote.New(url, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := anon.RevokeSecret(ctx, secret, "")
	if err != nil || r.Outcome != keys.SecretAccepted || r.Key != nil || r.Start != k.Start {
		t.Fatalf("RevokeSecret: %+v, %v", r, err)
	}
	if got, _ := st.Get(ctx, k.ID); got.Status != keys.Revoked {
		t.Fatalf("the key is %s", got.Status)
	}
	if _, err := anon.List(ctx, keys.ListFilter{}); !errors.Is(err, remote.ErrUnauthorized) {
		t.Fatalf("List without a token: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }

// TestAuditFetchesEveryPage: Audit returns what the local store's Audit
// returns, forward past the server's page of 1,000, and backward for the
// most recent N.
func TestAuditFetchesEveryPage(t *testing.T) {
	st, c, _ := serve(t, api.ScopeRead)
	ctx := context.Background()
	for i := range 1050 {
		k, _, err := st.Create(ctx, keys.CreateParams{Name: fmt.Sprintf("k%d", i), Env: keys.Development, Prefix: "sk"})
		if err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			st.Revoke(ctx, k.ID, "")
		}
	}
	for _, f := range []keys.AuditFilter{{}, {Action: keys.ActionRevoke}, {Limit: 3}, {Limit: 1001}, {Limit: 50, Action: keys.ActionRevoke}, {Key: "k5"}} {
		want, err := st.Audit(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Audit(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.EqualFunc(got, want, func(a, b *keys.AuditEntry) bool { return a.Seq == b.Seq && a.Hash == b.Hash }) {
			t.Errorf("Audit(%+v): %d entries, want %d", f, len(got), len(want))
		}
	}
}
