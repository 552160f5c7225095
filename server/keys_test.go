package server

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyctl/keyctl/api"
	"github.com/keyctl/keyctl/apikey"
	"github.com/keyctl/keyctl/store/keys"
)

func TestCreate(t *testing.T) {
	ts := start(t)
	admin := ts.tok["admin"]
	exp := ts.clock.Now().Add(48 * time.Hour)
	r := ts.call("POST", "/v1/keys", admin, api.CreateRequest{
		Name: "billing", Description: "billing service", Scopes: []string{"sdk", "proxy"}, Env: "prod",
		Prefix: "acme", ExpiresAt: &exp, AllowedIPs: []string{"10.0.0.0/8"}, Quota: ptr(int64(5)),
		RateLimit: &keys.RateLimit{Count: 10, Unit: "second"}, Metadata: map[string]string{"team": "pay"},
	})
	want(t, r, http.StatusCreated, "")
	var k api.IssuedKey
	r.decode(t, &k)
	if k.Name != "billing" || k.Env != keys.Production || !strings.HasPrefix(k.Secret, "acme_live_") ||
		!slices.Equal(k.Scopes, []string{"proxy", "sdk"}) || *k.Quota != 5 || k.Metadata["team"] != "pay" {
		t.Fatalf("created %+v", k.Key)
	}
	if k.CreatedBy != "admin" {
		t.Fatalf("created_by %q, want the acting key's name", k.CreatedBy)
	}
	if loc := r.header.Get("Location"); loc != "/v1/keys/"+k.ID {
		t.Fatalf("Location %q", loc)
	}
	// The secret works, and it is the key's only appearance with a secret.
	found, err := ts.st.Find(t.Context(), k.Secret)
	if err != nil || found.ID != k.ID {
		t.Fatalf("the secret does not find the key: %v", err)
	}
	got := ts.call("GET", "/v1/keys/"+k.ID, admin, nil)
	want(t, got, 200, "")
	if strings.Contains(string(got.body), "secret") {
		t.Fatal("GET shows a secret")
	}

	// Defaults: development, prefix sk, a generated name.
	r = ts.call("POST", "/v1/keys", admin, `{}`)
	want(t, r, http.StatusCreated, "")
	r.decode(t, &k)
	if k.Env != keys.Development || !strings.HasPrefix(k.Secret, "sk_test_") || k.Name == "" {
		t.Fatalf("defaults: %+v", k.Key)
	}

	want(t, ts.call("POST", "/v1/keys", admin, api.CreateRequest{Name: "billing"}), http.StatusConflict, api.CodeConflict)
	for body, code := range map[string]string{
		``:                            api.CodeInvalidJSON,
		`{`:                           api.CodeInvalidJSON,
		`[]`:                          api.CodeInvalidJSON,
		`{"name": 5}`:                 api.CodeInvalidJSON,
		`{"nmae": "typo"}`:            api.CodeInvalidJSON,
		`{} {}`:                       api.CodeInvalidJSON,
		`{"env": "moon"}`:             api.CodeInvalidRequest,
		`{"name": "has space"}`:       api.CodeInvalidRequest,
		`{"prefix": "UPPER"}`:         api.CodeInvalidRequest,
		`{"quota": -1}`:               api.CodeInvalidRequest,
		`{"allowed_ips": ["10.1/8"]}`: api.CodeInvalidRequest,
		`{"scopes": ["bad scope"]}`:   api.CodeInvalidRequest,
		`{"rate_limit": {"count": 0, "unit": "second"}}`: api.CodeInvalidRequest,
	} {
		r := ts.call("POST", "/v1/keys", admin, body)
		if r.status != 400 || r.errCode(t) != code {
			t.Errorf("body %q: %d %s, want 400 %s", body, r.status, r.body, code)
		}
	}
	big := fmt.Sprintf(`{"description": %q}`, strings.Repeat("x", api.MaxBodyBytes))
	want(t, ts.call("POST", "/v1/keys", admin, big), http.StatusRequestEntityTooLarge, api.CodeBodyTooLarge)
}

func TestBodyLimitWithoutContentLength(t *testing.T) {
	ts := start(t)
	big := fmt.Sprintf(`{"description": %q}`, strings.Repeat("x", api.MaxBodyBytes))
	req, err := http.NewRequest("POST", ts.url+"/v1/keys", struct{ *strings.Reader }{strings.NewReader(big)})
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+ts.tok["admin"])
	resp, err := ts.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || resp.ContentLength == 0 {
		t.Fatalf("chunked body over the limit: %d", resp.StatusCode)
	}
}

func TestGetByIDOrName(t *testing.T) {
	ts := start(t)
	for _, ref := range []string{ts.keys["plain"].ID, "plain"} {
		r := ts.call("GET", "/v1/keys/"+ref, ts.tok["read"], nil)
		want(t, r, 200, "")
		var k keys.Key
		r.decode(t, &k)
		if k.ID != ts.keys["plain"].ID {
			t.Fatalf("GET %s: %s", ref, k.ID)
		}
	}
	r := ts.call("GET", "/v1/keys/nobody", ts.tok["read"], nil)
	want(t, r, 404, api.CodeNotFound)
	if r.errCode(t) != api.CodeNotFound || !strings.Contains(string(r.body), `key \"nobody\" not found`) {
		t.Fatalf("404 body %s", r.body)
	}
}

func TestList(t *testing.T) {
	ts := start(t)
	read := ts.tok["read"]
	for i := range 5 {
		ts.mint(keys.CreateParams{Name: fmt.Sprintf("k%d", i), Scopes: []string{"page"}, Env: keys.Staging})
	}
	gone, _ := ts.mint(keys.CreateParams{Name: "gone", Scopes: []string{"page"}})
	ts.st.Revoke(t.Context(), gone.ID, "")

	var names []string
	path := "/v1/keys?scope=page&limit=2"
	pages := 0
	for {
		r := ts.call("GET", path, read, nil)
		want(t, r, 200, "")
		var page api.KeyList
		r.decode(t, &page)
		pages++
		for _, k := range page.Keys {
			names = append(names, k.Name)
		}
		if page.NextCursor == "" {
			break
		}
		// A key created between pages does not disturb the next one.
		if pages == 1 {
			ts.mint(keys.CreateParams{Name: "late", Scopes: []string{"page"}})
		}
		path = "/v1/keys?scope=page&limit=2&cursor=" + page.NextCursor
	}
	if want := []string{"k4", "k3", "k2", "k1", "k0"}; !slices.Equal(names, want) || pages != 3 {
		t.Fatalf("pages %d: %v, want %v", pages, names, want)
	}

	list := func(query string) []string {
		t.Helper()
		r := ts.call("GET", "/v1/keys?"+query, read, nil)
		want(t, r, 200, "")
		var page api.KeyList
		r.decode(t, &page)
		var out []string
		for _, k := range page.Keys {
			out = append(out, k.Name)
		}
		return out
	}
	if got := list("scope=page&all=true&env=development"); !slices.Equal(got, []string{"late", "gone"}) {
		t.Fatalf("all, development: %v", got)
	}
	if got := list("status=revoked"); !slices.Equal(got, []string{"gone"}) {
		t.Fatalf("revoked: %v", got)
	}
	if got := list("unused=60&scope=page"); len(got) != 0 {
		t.Fatalf("unused: %v", got)
	}
	ts.clock.Advance(time.Hour)
	if got := list("unused=60&scope=page&env=staging"); len(got) != 5 {
		t.Fatalf("unused after an hour: %v", got)
	}
	for _, q := range []string{"env=moon", "status=gone", "all=maybe", "limit=0", "limit=1001", "expiring=-5",
		"unused=x", "scope=bad%20scope", "cursor=nonsense", "colour=blue", "env=prod&env=dev", "since=1"} {
		want(t, ts.call("GET", "/v1/keys?"+q, read, nil), 400, api.CodeInvalidRequest)
	}
}

func TestUpdate(t *testing.T) {
	ts := start(t)
	admin := ts.tok["admin"]
	r := ts.call("PATCH", "/v1/keys/plain", admin, api.UpdateRequest{
		Description: ptr("new"), AddScopes: []string{"b"}, RemoveScopes: []string{"sdk"}, Quota: ptr(int64(3)),
		SetMetadata: map[string]string{"o": "p"}, AddAllowedIPs: []string{"10.0.0.0/8"},
	})
	want(t, r, 200, "")
	var k keys.Key
	r.decode(t, &k)
	if k.Description != "new" || !slices.Equal(k.Scopes, []string{"b"}) || *k.QuotaRemaining != 3 || k.Metadata["o"] != "p" {
		t.Fatalf("updated %+v", k)
	}
	r = ts.call("PATCH", "/v1/keys/plain", admin, `{"clear_quota": true, "remove_allowed_ips": ["10.0.0.0/8"]}`)
	want(t, r, 200, "")
	r.decode(t, &k)
	if k.Quota != nil || len(k.AllowedIPs) != 0 {
		t.Fatalf("cleared %+v", k)
	}
	want(t, ts.call("PATCH", "/v1/keys/plain", admin, `{}`), 400, api.CodeInvalidRequest)
	want(t, ts.call("PATCH", "/v1/keys/plain", admin, `{"scopes": ["a"]}`), 400, api.CodeInvalidJSON)
	want(t, ts.call("PATCH", "/v1/keys/plain", admin, nil), 400, api.CodeInvalidJSON)
	want(t, ts.call("PATCH", "/v1/keys/nobody", admin, api.UpdateRequest{Description: ptr("x")}), 404, api.CodeNotFound)
	want(t, ts.call("PATCH", "/v1/keys/plain", admin, api.UpdateRequest{Name: ptr("read")}), 409, api.CodeConflict)
	ts.st.Revoke(t.Context(), "plain", "")
	want(t, ts.call("PATCH", "/v1/keys/plain", admin, api.UpdateRequest{Description: ptr("x")}), 409, api.CodeRevoked)
}

func TestRotate(t *testing.T) {
	ts := start(t)
	admin := ts.tok["admin"]
	old := ts.tok["plain"]
	r := ts.call("POST", "/v1/keys/plain/rotate", admin, api.RotateRequest{GraceSeconds: 3600})
	want(t, r, 200, "")
	var k api.IssuedKey
	r.decode(t, &k)
	if k.Secret == "" || k.Secret == old || k.RotatedAt == nil || k.ID != ts.keys["plain"].ID {
		t.Fatalf("rotated %+v", k)
	}
	verify := func(tok string) keys.Code {
		r := ts.call("POST", "/v1/verify", ts.tok["verify"], api.VerifyRequest{Key: tok})
		want(t, r, 200, "")
		var res keys.VerifyResult
		r.decode(t, &res)
		return res.Code
	}
	if verify(old) != keys.Valid || verify(k.Secret) != keys.Valid {
		t.Fatal("during the grace period both secrets work")
	}
	ts.clock.Advance(2 * time.Hour)
	if verify(old) != keys.CodeRevoked {
		t.Fatal("after the grace period the old secret works")
	}
	// No body, or an empty one: the old secret stops at once.
	want(t, ts.call("POST", "/v1/keys/plain/rotate", admin, nil), 200, "")
	want(t, ts.call("POST", "/v1/keys/plain/rotate", admin, `{}`), 200, "")
	want(t, ts.call("POST", "/v1/keys/plain/rotate", admin, api.RotateRequest{GraceSeconds: -1}), 400, api.CodeInvalidRequest)
	want(t, ts.call("POST", "/v1/keys/plain/rotate", admin, `{"grace": "1h"}`), 400, api.CodeInvalidJSON)
	want(t, ts.call("POST", "/v1/keys/nobody/rotate", admin, nil), 404, api.CodeNotFound)
	ts.st.Revoke(t.Context(), "plain", "")
	want(t, ts.call("POST", "/v1/keys/plain/rotate", admin, nil), 409, api.CodeRevoked)
}

func TestRevokeDisableEnable(t *testing.T) {
	ts := start(t)
	admin := ts.tok["admin"]
	r := ts.call("POST", "/v1/keys/plain/disable", admin, nil)
	want(t, r, 200, "")
	var k keys.Key
	r.decode(t, &k)
	if k.Status != keys.Disabled {
		t.Fatalf("disabled: %s", k.Status)
	}
	r = ts.call("POST", "/v1/keys/plain/enable", admin, `{}`)
	want(t, r, 200, "")
	r.decode(t, &k)
	if k.Status != keys.Active {
		t.Fatalf("enabled: %s", k.Status)
	}
	want(t, ts.call("POST", "/v1/keys/plain/disable", admin, `{"why": "x"}`), 400, api.CodeInvalidJSON)
	want(t, ts.call("POST", "/v1/keys/nobody/enable", admin, nil), 404, api.CodeNotFound)
	want(t, ts.call("POST", "/v1/keys/nobody/revoke", admin, nil), 404, api.CodeNotFound)

	r = ts.call("POST", "/v1/keys/plain/revoke", admin, api.RevokeRequest{Reason: "leaked"})
	want(t, r, 200, "")
	r.decode(t, &k)
	if k.Status != keys.Revoked || k.RevokeReason != "leaked" {
		t.Fatalf("revoked: %+v", k)
	}
	r = ts.call("POST", "/v1/keys/"+k.ID+"/revoke", admin, api.RevokeRequest{Reason: "again"})
	want(t, r, 200, "")
	r.decode(t, &k)
	if k.RevokeReason != "leaked" {
		t.Fatal("revoking a revoked key changed it")
	}
	want(t, ts.call("POST", "/v1/keys/plain/enable", admin, nil), 409, api.CodeRevoked)
	want(t, ts.call("POST", "/v1/keys/plain/disable", admin, nil), 409, api.CodeRevoked)
}

func TestUsageAndLookup(t *testing.T) {
	ts := start(t)
	for range 3 {
		want(t, ts.call("POST", "/v1/verify", ts.tok["verify"], api.VerifyRequest{Key: ts.tok["plain"], IP: "192.0.2.9"}), 200, "")
	}
	r := ts.call("GET", "/v1/keys/plain/usage?limit=2", ts.tok["read"], nil)
	want(t, r, 200, "")
	var rep keys.UsageReport
	r.decode(t, &rep)
	if rep.Key.UsageCount != 3 || len(rep.Events) != 2 || rep.Events[0].IP != "192.0.2.9" || rep.Daily[0].Total != 3 {
		t.Fatalf("usage %+v", rep)
	}
	since := ts.clock.Now().Add(time.Minute).Format(time.RFC3339)
	r = ts.call("GET", "/v1/keys/plain/usage?since="+since, ts.tok["read"], nil)
	want(t, r, 200, "")
	r.decode(t, &rep)
	if len(rep.Events) != 0 {
		t.Fatalf("usage since a minute ahead: %+v", rep.Events)
	}
	want(t, ts.call("GET", "/v1/keys/plain/usage?since=yesterday", ts.tok["read"], nil), 400, api.CodeInvalidRequest)
	want(t, ts.call("GET", "/v1/keys/plain/usage?limit=0", ts.tok["read"], nil), 400, api.CodeInvalidRequest)
	want(t, ts.call("GET", "/v1/keys/nobody/usage", ts.tok["read"], nil), 404, api.CodeNotFound)

	r = ts.call("POST", "/v1/keys/lookup", ts.tok["read"], api.KeyRequest{Key: ts.tok["plain"]})
	want(t, r, 200, "")
	var k keys.Key
	r.decode(t, &k)
	if k.Name != "plain" || k.UsageCount != 3 {
		t.Fatalf("lookup %+v (a lookup records no use)", k)
	}
	// A revoked key's secret still finds it.
	ts.st.Revoke(t.Context(), ts.keys["plain"].ID, "")
	want(t, ts.call("POST", "/v1/keys/lookup", ts.tok["read"], api.KeyRequest{Key: ts.tok["plain"]}), 200, "")
	unknown, err := apikey.New("sk", apikey.TagTest)
	if err != nil {
		t.Fatal(err)
	}
	want(t, ts.call("POST", "/v1/keys/lookup", ts.tok["read"], api.KeyRequest{Key: unknown.String()}), 404, api.CodeNotFound)
	want(t, ts.call("POST", "/v1/keys/lookup", ts.tok["read"], api.KeyRequest{Key: "sk_test_x"}), 400, api.CodeInvalidRequest)
	want(t, ts.call("POST", "/v1/keys/lookup", ts.tok["read"], `{"token": "x"}`), 400, api.CodeInvalidJSON)
}

func TestUnroutedRequests(t *testing.T) {
	ts := start(t)
	r := ts.call("DELETE", "/v1/keys/plain", ts.tok["owner"], nil)
	want(t, r, http.StatusMethodNotAllowed, api.CodeMethodNotAllowed)
	if !strings.Contains(r.header.Get("Allow"), "PATCH") {
		t.Fatalf("Allow %q", r.header.Get("Allow"))
	}
	want(t, ts.call("PUT", "/v1/verify", "", nil), http.StatusMethodNotAllowed, api.CodeMethodNotAllowed)
	want(t, ts.call("GET", "/v2/keys", "", nil), http.StatusNotFound, api.CodeNotFound)
	want(t, ts.call("GET", "/v1/keys/plain/secret", ts.tok["owner"], nil), http.StatusNotFound, api.CodeNotFound)
}

func ptr[T any](v T) *T { return &v }
