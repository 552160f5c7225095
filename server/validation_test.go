package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keyctl/keyctl/api"
	"github.com/keyctl/keyctl/store/keys"
	"github.com/keyctl/keyctl/store/sqlite"
)

// TestAPIValidatesAsTheCLI: every field goes through the parser and the
// normalization of the command line's flag.
func TestAPIValidatesAsTheCLI(t *testing.T) {
	ts := start(t)
	admin := ts.tok["admin"]
	r := ts.call("POST", "/v1/keys", admin, `{"name": "aliased", "env": "prod", "allowed_ips": ["10.1.2.3/8", "::ffff:192.0.2.1"],
		"rate_limit": {"count": 1, "unit": "s"}}`)
	want(t, r, http.StatusCreated, "")
	var k api.IssuedKey
	r.decode(t, &k)
	if k.Env != keys.Production || strings.Join(k.AllowedIPs, ",") != "10.0.0.0/8,192.0.2.1" || *k.RateLimit != (keys.RateLimit{Count: 1, Unit: "second"}) {
		t.Fatalf("stored as given, not as the flags would: %s", r.body)
	}
	// The unit alias is enforced as a second, not as a day.
	verify := func() keys.VerifyResult {
		r := ts.call("POST", "/v1/verify", ts.tok["verify"], api.VerifyRequest{Key: k.Secret, IP: "10.9.9.9"})
		var res keys.VerifyResult
		r.decode(t, &res)
		return res
	}
	verify()
	if res := verify(); res.Code != keys.RateLimited || res.RetryAt.Sub(ts.clock.Now()) > time.Second {
		t.Fatalf("second call: %+v", res)
	}
	r = ts.call("PATCH", "/v1/keys/aliased", admin, `{"rate_limit": {"count": 5, "unit": "h"}, "add_allowed_ips": ["2001:DB8::1"]}`)
	want(t, r, 200, "")
	r.decode(t, &k.Key)
	if k.RateLimit.Unit != "hour" || !strings.Contains(strings.Join(k.AllowedIPs, ","), "2001:db8::1") {
		t.Fatalf("update stored as given: %s", r.body)
	}

	past := ts.clock.Now().Add(-time.Second).Format(time.RFC3339)
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/keys", `{"expires_at": "` + past + `"}`},
		{"PATCH", "/v1/keys/plain", `{"expires_at": "` + past + `"}`},
		{"PATCH", "/v1/keys/plain", `{"quota": 5, "clear_quota": true}`},
		{"POST", "/v1/keys", `{"rate_limit": {"count": 1, "unit": "fortnight"}}`},
		{"POST", "/v1/keys/plain/rotate", `{"grace_seconds": 9223372036854775807}`},
		{"POST", "/v1/keys/plain/rotate", `{"grace_seconds": 9223372037}`},
	} {
		r := ts.call(c.method, c.path, admin, c.body)
		if r.status != 400 || r.errCode(t) != api.CodeInvalidRequest {
			t.Errorf("%s %s %s: %d %s, want 400 invalid_request", c.method, c.path, c.body, r.status, r.body)
		}
	}
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/keys", `null`},
		{"POST", "/v1/keys", `  `},
		{"POST", "/v1/keys", `"x"`},
		{"PATCH", "/v1/keys/plain", `null`},
		{"POST", "/v1/keys/plain/rotate", `null`},
		{"POST", "/v1/keys/plain/revoke", ` `},
		{"POST", "/v1/keys/plain/disable", `null`},
		{"POST", "/v1/verify", `null`},
		{"POST", "/v1/keys/lookup", `null`},
		{"POST", "/v1/credentials/revoke", `null`},
		{"POST", "/v1/keys", `{"rate_limit": {"count": 1, "unit": "s", "burst": 5}}`},
	} {
		r := ts.call(c.method, c.path, admin, c.body)
		if r.status != 400 || r.errCode(t) != api.CodeInvalidJSON {
			t.Errorf("%s %s %q: %d %s, want 400 invalid_json", c.method, c.path, c.body, r.status, r.body)
		}
	}
	if k, _ := ts.st.Get(t.Context(), "plain"); k.Status != keys.Active || k.RotatedAt != nil || k.ExpiresAt != nil {
		t.Fatalf("a refused call changed the key: %+v", k)
	}
}

func TestFieldLimits(t *testing.T) {
	ts := start(t)
	admin := ts.tok["admin"]
	many := func(n int, f func(i int) string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = f(i)
		}
		return out
	}
	meta := map[string]string{}
	for i := range keys.MaxMetadata + 1 {
		meta[strings.Repeat("k", 1+i%5)+string(rune('a'+i%26))+strings.Repeat("z", i/26)] = "v"
	}
	for name, c := range map[string]api.CreateRequest{
		"description":   {Description: strings.Repeat("d", keys.MaxDescriptionLen+1)},
		"scopes":        {Scopes: many(keys.MaxScopes+1, func(i int) string { return "s" + strings.Repeat("x", i) })},
		"allowed_ips":   {AllowedIPs: many(keys.MaxAllowedIPs+1, func(i int) string { return "10.0.0." + itoa(i) })},
		"metadata":      {Metadata: meta},
		"metadata key":  {Metadata: map[string]string{strings.Repeat("k", keys.MaxMetaKeyLen+1): "v"}},
		"metadata val":  {Metadata: map[string]string{"k": strings.Repeat("v", keys.MaxMetaValueLen+1)}},
		"name":          {Name: strings.Repeat("n", keys.MaxNameLen+1)},
		"a scope's len": {Scopes: []string{strings.Repeat("s", 65)}},
	} {
		r := ts.call("POST", "/v1/keys", admin, c)
		if r.status != 400 || r.errCode(t) != api.CodeInvalidRequest {
			t.Errorf("%s over the limit: %d %s", name, r.status, r.body)
		}
	}
	// An update may not take a key past a limit either.
	r := ts.call("POST", "/v1/keys", admin, api.CreateRequest{Name: "full", Scopes: many(keys.MaxScopes, func(i int) string { return "s" + itoa(i) })})
	want(t, r, http.StatusCreated, "")
	r = ts.call("PATCH", "/v1/keys/full", admin, api.UpdateRequest{AddScopes: []string{"one-more"}})
	want(t, r, 400, api.CodeInvalidRequest)
	if !strings.Contains(string(r.body), "at most 64 scopes") {
		t.Fatalf("the refusal does not name the limit: %s", r.body)
	}
	r = ts.call("POST", "/v1/keys/plain/revoke", admin, api.RevokeRequest{Reason: strings.Repeat("r", keys.MaxReason+1)})
	want(t, r, 400, api.CodeInvalidRequest)
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

// TestRouterErrorsAreJSON: paths the router would redirect (.., //) and
// every error the router itself makes answer in the API's JSON shape.
func TestRouterErrorsAreJSON(t *testing.T) {
	ts := start(t)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, path := range []string{"/v1//keys", "/v1/keys/../keys", "/v1/keys/plain/..", "/v1/./keys", "//v1/keys"} {
		req, _ := http.NewRequest("GET", ts.url+path, nil)
		req.URL.Opaque = path // sent as written, not cleaned by the client
		req.Header.Set("Authorization", "Bearer "+ts.tok["read"])
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e api.Error
		if resp.StatusCode != 404 || json.Unmarshal(body, &e) != nil || e.Error.Code != api.CodeNotFound {
			t.Errorf("GET %s: %d %s %q, want a JSON 404", path, resp.StatusCode, resp.Header.Get("Location"), body)
		}
	}
}

func TestDuplicateTokenHeaders(t *testing.T) {
	ts := start(t)
	for _, name := range []string{"Authorization", "X-API-Key"} {
		r := ts.send("GET", "/v1/keys", nil, func(h http.Header) {
			v := ts.tok["read"]
			if name == "Authorization" {
				v = "Bearer " + v
			}
			h.Add(name, v)
			h.Add(name, v+"x")
		})
		want(t, r, http.StatusBadRequest, api.CodeInvalidRequest)
	}
	// The same value twice is one value.
	want(t, ts.send("GET", "/v1/keys", nil, func(h http.Header) {
		h.Add("X-API-Key", ts.tok["read"])
		h.Add("X-API-Key", ts.tok["read"])
	}), 200, "")
}

// TestClientHangUpIsNot500: a client that goes away mid-request is counted
// as 499, not as a failure of the server, and logs no error.
func TestClientHangUpIsNot500(t *testing.T) {
	ts := start(t)
	slow := &slowUsage{SQLite: ts.st, entered: make(chan struct{}, 1)}
	srv := New(slow, Options{AccessLog: ts.log, Now: ts.clock.Now})
	url, stop := serveOn(t, srv)
	defer stop()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", url+"/v1/keys/plain/usage", nil)
	req.Header.Set("Authorization", "Bearer "+ts.tok["read"])
	go func() {
		<-slow.entered
		cancel()
	}()
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Fatal("the request was answered")
	}
	stop()
	log := ts.log.String()
	if strings.Contains(log, "level=ERROR") || strings.Contains(log, "status=500") || !strings.Contains(log, "status=499") {
		t.Fatalf("a client that hung up:\n%s", log)
	}
}

// slowUsage answers Usage only when the request is canceled.
type slowUsage struct {
	*sqlite.SQLite
	entered chan struct{}
}

func (s *slowUsage) Usage(ctx context.Context, ref string, q keys.UsageQuery) (*keys.UsageReport, error) {
	s.entered <- struct{}{}
	<-ctx.Done()
	return nil, ctx.Err()
}
