package server

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keyctl/keyctl/api"
	"github.com/keyctl/keyctl/apikey"
	"github.com/keyctl/keyctl/store/keys"
)

// TestAccessTable checks every route against every kind of token: each row
// of the scope table, a key without keyctl scopes, and no token.
func TestAccessTable(t *testing.T) {
	ts := start(t)
	type route struct {
		method, path string
		body         any
		ok           int
		need         string // the scope that allows it
	}
	target := func() string {
		k, _ := ts.mint(keys.CreateParams{Scopes: []string{"sdk"}})
		return k.ID
	}
	routes := func() []route {
		return []route{
			{"POST", "/v1/keys", api.CreateRequest{Scopes: []string{"sdk"}}, 201, api.ScopeAdmin},
			{"GET", "/v1/keys", nil, 200, api.ScopeRead},
			{"POST", "/v1/keys/lookup", api.KeyRequest{Key: ts.tok["plain"]}, 200, api.ScopeRead},
			{"GET", "/v1/keys/" + target(), nil, 200, api.ScopeRead},
			{"PATCH", "/v1/keys/" + target(), api.UpdateRequest{AddScopes: []string{"x"}}, 200, api.ScopeAdmin},
			{"POST", "/v1/keys/" + target() + "/rotate", api.RotateRequest{}, 200, api.ScopeAdmin},
			{"POST", "/v1/keys/" + target() + "/revoke", api.RevokeRequest{Reason: "test"}, 200, api.ScopeAdmin},
			{"POST", "/v1/keys/" + target() + "/disable", nil, 200, api.ScopeAdmin},
			{"POST", "/v1/keys/" + target() + "/enable", nil, 200, api.ScopeAdmin},
			{"GET", "/v1/keys/" + target() + "/usage", nil, 200, api.ScopeRead},
			{"POST", "/v1/verify", api.VerifyRequest{Key: ts.tok["plain"]}, 200, api.ScopeVerify},
			{"GET", "/v1/audit", nil, 200, api.ScopeRead},
			{"GET", "/v1/audit/verify", nil, 200, api.ScopeRead},
		}
	}
	allowed := map[string]map[string]bool{
		"owner":  {api.ScopeAdmin: true, api.ScopeRead: true, api.ScopeVerify: true},
		"admin":  {api.ScopeAdmin: true, api.ScopeRead: true, api.ScopeVerify: true},
		"read":   {api.ScopeRead: true},
		"verify": {api.ScopeVerify: true},
		"plain":  {},
	}
	for who, may := range allowed {
		for _, rt := range routes() {
			before := ts.usageCount(who)
			r := ts.call(rt.method, rt.path, ts.tok[who], rt.body)
			switch {
			case may[rt.need]:
				want(t, r, rt.ok, "")
			default:
				if r.status != http.StatusForbidden || r.errCode(t) != api.CodeForbidden {
					t.Errorf("%s: %s %s: %d %s, want 403 forbidden", who, rt.method, rt.path, r.status, r.body)
				}
			}
			// Every use of a token counts in its key's usage, allowed or not.
			if got := ts.usageCount(who); got != before+1 {
				t.Errorf("%s: %s %s: usage_count went from %d to %d", who, rt.method, rt.path, before, got)
			}
		}
	}
	for _, rt := range routes() {
		r := ts.call(rt.method, rt.path, "", rt.body)
		want(t, r, http.StatusUnauthorized, api.CodeUnauthorized)
		if r.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s %s: a 401 without WWW-Authenticate", rt.method, rt.path)
		}
	}
}

// TestTokensThatMayNotBeUsed: a malformed, unknown, revoked, disabled or
// expired token is 401; one over its rate limit 429; one from an address it
// does not allow 403.
func TestTokensThatMayNotBeUsed(t *testing.T) {
	ts := start(t)
	admin := func(p keys.CreateParams) (*keys.Key, string) {
		p.Scopes = []string{api.ScopeAdmin}
		return ts.mint(p)
	}
	revoked, revokedTok := admin(keys.CreateParams{})
	if _, err := ts.st.Revoke(t.Context(), revoked.ID, "gone"); err != nil {
		t.Fatal(err)
	}
	disabled, disabledTok := admin(keys.CreateParams{})
	if _, err := ts.st.SetDisabled(t.Context(), disabled.ID, true); err != nil {
		t.Fatal(err)
	}
	exp := ts.clock.Now().Add(time.Hour)
	_, expiredTok := admin(keys.CreateParams{ExpiresAt: &exp})
	_, spentTok := admin(keys.CreateParams{Quota: new(int64)})
	_, limitedTok := admin(keys.CreateParams{RateLimit: &keys.RateLimit{Count: 1, Unit: "hour"}})
	_, elsewhereTok := admin(keys.CreateParams{AllowedIPs: []string{"192.0.2.1"}})
	ts.clock.Advance(2 * time.Hour)
	unknown, err := apikey.New("sk", apikey.TagTest)
	if err != nil {
		t.Fatal(err)
	}
	plain := ts.tok["plain"]
	badSum := plain[:len(plain)-1] + string("AB"[min(1, strings.Count(plain[len(plain)-1:], "A"))])

	for name, tok := range map[string]string{
		"malformed": "not-a-key", "unknown": unknown.String(),
		"bad checksum": badSum, "revoked": revokedTok, "disabled": disabledTok,
		"expired": expiredTok, "quota spent": spentTok,
	} {
		r := ts.call("GET", "/v1/keys", tok, nil)
		if r.status != 401 || r.errCode(t) != api.CodeUnauthorized {
			t.Errorf("%s token: %d %s, want 401 unauthorized", name, r.status, r.body)
		}
	}
	want(t, ts.call("GET", "/v1/keys", limitedTok, nil), 200, "")
	r := ts.call("GET", "/v1/keys", limitedTok, nil)
	want(t, r, http.StatusTooManyRequests, api.CodeRateLimited)
	if r.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	want(t, ts.call("GET", "/v1/keys", elsewhereTok, nil), http.StatusForbidden, api.CodeForbidden)
	want(t, ts.send("GET", "/v1/keys", nil, func(h http.Header) { h.Set("Authorization", "Basic "+ts.tok["admin"]) }),
		401, api.CodeUnauthorized)
	want(t, ts.send("GET", "/v1/keys", nil, func(h http.Header) { h.Set("Authorization", "Bearer ") }),
		401, api.CodeUnauthorized)
}

func TestTokenHeaders(t *testing.T) {
	ts := start(t)
	header := func(auth, apiKey string) func(http.Header) {
		return func(h http.Header) {
			if auth != "" {
				h.Set("Authorization", auth)
			}
			if apiKey != "" {
				h.Set("X-API-Key", apiKey)
			}
		}
	}
	good, bad := ts.tok["read"], "sk_test_00000000000000000000000000000000000000"
	want(t, ts.send("GET", "/v1/keys", nil, header("", good)), 200, "")
	want(t, ts.send("GET", "/v1/keys", nil, header("bearer "+good, "")), 200, "")
	// Authorization decides when both are present.
	want(t, ts.send("GET", "/v1/keys", nil, header("Bearer "+good, bad)), 200, "")
	want(t, ts.send("GET", "/v1/keys", nil, header("Bearer "+bad, good)), 401, api.CodeUnauthorized)
	want(t, ts.send("GET", "/v1/keys", nil, header("Bearer "+good, ts.tok["verify"])), 200, "")
	want(t, ts.send("GET", "/v1/keys", nil, header("Bearer "+ts.tok["verify"], good)), 403, api.CodeForbidden)
}

// TestAdminMayNotGrantKeyctlScopes: only an owner makes keys more powerful
// than an admin; rotating a key hands out its secret, so the same holds.
func TestAdminMayNotGrantKeyctlScopes(t *testing.T) {
	ts := start(t)
	admin, owner := ts.tok["admin"], ts.tok["owner"]
	want(t, ts.call("POST", "/v1/keys", admin, api.CreateRequest{Scopes: []string{"sdk", api.ScopeRead}}), 403, api.CodeForbidden)
	want(t, ts.call("POST", "/v1/keys", admin, api.CreateRequest{Scopes: []string{"keyctl:anything"}}), 403, api.CodeForbidden)
	want(t, ts.call("PATCH", "/v1/keys/plain", admin, api.UpdateRequest{AddScopes: []string{api.ScopeOwner}}), 403, api.CodeForbidden)
	want(t, ts.call("POST", "/v1/keys/read/rotate", admin, nil), 403, api.CodeForbidden)
	k, _ := ts.st.Get(t.Context(), "plain")
	if len(k.Scopes) != 1 {
		t.Fatalf("a refused PATCH changed the key: %v", k.Scopes)
	}

	r := ts.call("POST", "/v1/keys", owner, api.CreateRequest{Name: "ops2", Scopes: []string{api.ScopeAdmin}})
	want(t, r, 201, "")
	want(t, ts.call("PATCH", "/v1/keys/plain", owner, api.UpdateRequest{AddScopes: []string{api.ScopeVerify}}), 200, "")
	want(t, ts.call("POST", "/v1/keys/read/rotate", owner, nil), 200, "")
	// A management key (one that holds a keyctl:* scope) is out of an
	// admin's reach altogether: no demotion, renaming, disabling, enabling
	// or revoking of it, and the key is left as it was.
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"POST", "/v1/keys/ops2/disable", nil},
		{"POST", "/v1/keys/ops2/enable", nil},
		{"POST", "/v1/keys/ops2/revoke", nil},
		{"POST", "/v1/keys/owner/rotate", nil},
		{"PATCH", "/v1/keys/ops2", api.UpdateRequest{RemoveScopes: []string{api.ScopeAdmin}}},
		{"PATCH", "/v1/keys/owner", api.UpdateRequest{Name: ptr("renamed")}},
		{"PATCH", "/v1/keys/read", api.UpdateRequest{Description: ptr("x")}},
	} {
		want(t, ts.call(c.method, c.path, admin, c.body), 403, api.CodeForbidden)
	}
	for _, name := range []string{"ops2", "owner", "read"} {
		k, err := ts.st.Get(t.Context(), name)
		if err != nil || k.Status != keys.Active || k.Description != "" || k.RevokedAt != nil {
			t.Fatalf("a refused call changed %s: %+v, %v", name, k, err)
		}
	}
	// An owner may.
	want(t, ts.call("POST", "/v1/keys/ops2/disable", owner, nil), 200, "")
	want(t, ts.call("PATCH", "/v1/keys/ops2", owner, api.UpdateRequest{RemoveScopes: []string{api.ScopeAdmin}}), 200, "")
	// Once it holds no keyctl:* scope, it is an ordinary key again.
	want(t, ts.call("POST", "/v1/keys/ops2/enable", admin, nil), 200, "")
}
