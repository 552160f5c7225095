package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"sync"
	"testing"

	"github.com/keyctl/keyctl/api"
	"github.com/keyctl/keyctl/apikey"
	"github.com/keyctl/keyctl/store/keys"
)

// TestVerifyAlways200 checks that every result code comes back with 200 and
// the result object, as keyctl verify -o json prints it.
func TestVerifyAlways200(t *testing.T) {
	ts := start(t)
	tok := ts.tok["verify"]
	mint := func(p keys.CreateParams) string { _, s := ts.mint(p); return s }
	revoked, disabled := mint(keys.CreateParams{Name: "r"}), mint(keys.CreateParams{Name: "d"})
	ts.st.Revoke(t.Context(), "r", "leaked")
	ts.st.SetDisabled(t.Context(), "d", true)
	unknown, _ := apikey.New("sk", apikey.TagTest)
	cases := []struct {
		req  api.VerifyRequest
		code keys.Code
	}{
		{api.VerifyRequest{Key: mint(keys.CreateParams{Scopes: []string{"a"}, Env: keys.Staging}), Scopes: []string{"a"}, Env: "stage"}, keys.Valid},
		{api.VerifyRequest{Key: "nope"}, keys.Malformed},
		{api.VerifyRequest{Key: ""}, keys.Malformed},
		{api.VerifyRequest{Key: unknown.String()}, keys.NotFound},
		{api.VerifyRequest{Key: revoked}, keys.CodeRevoked},
		{api.VerifyRequest{Key: disabled}, keys.CodeDisabled},
		{api.VerifyRequest{Key: mint(keys.CreateParams{}), Scopes: []string{"admin"}}, keys.Forbidden},
		{api.VerifyRequest{Key: mint(keys.CreateParams{}), Env: "production"}, keys.Forbidden},
		{api.VerifyRequest{Key: mint(keys.CreateParams{AllowedIPs: []string{"10.0.0.0/8"}}), IP: "192.0.2.1"}, keys.Forbidden},
		{api.VerifyRequest{Key: mint(keys.CreateParams{AllowedIPs: []string{"10.0.0.0/8"}}), IP: "10.1.2.3"}, keys.Valid},
		{api.VerifyRequest{Key: mint(keys.CreateParams{Quota: ptr(int64(0))})}, keys.QuotaExceeded},
		{api.VerifyRequest{Key: mint(keys.CreateParams{Quota: ptr(int64(0))}), Cost: ptr(int64(0))}, keys.Valid},
	}
	for _, c := range cases {
		r := ts.call("POST", "/v1/verify", tok, c.req)
		want(t, r, 200, "")
		var res keys.VerifyResult
		r.decode(t, &res)
		if res.Code != c.code || res.Valid != (c.code == keys.Valid) || res.HTTPStatus != c.code.HTTPStatus() || res.Reason == "" {
			t.Errorf("verify %+v: %+v, want %s", c.req, res, c.code)
		}
		if (res.Key == nil) != (c.code == keys.Malformed || c.code == keys.NotFound) {
			t.Errorf("verify %+v: key %v", c.req, res.Key)
		}
	}
	limited := mint(keys.CreateParams{RateLimit: &keys.RateLimit{Count: 1, Unit: "hour"}})
	want(t, ts.call("POST", "/v1/verify", tok, api.VerifyRequest{Key: limited}), 200, "")
	r := ts.call("POST", "/v1/verify", tok, api.VerifyRequest{Key: limited})
	var res keys.VerifyResult
	r.decode(t, &res)
	if res.Code != keys.RateLimited || res.RetryAt == nil || res.HTTPStatus != 429 {
		t.Fatalf("rate limited: %+v", res)
	}

	for _, body := range []string{`{"key": "x", "cost": -1}`, `{"key": "x", "env": "moon"}`, `{"key": "x", "ip": "300.1.1.1"}`,
		`{"key": "x", "ip": "fe80::1%eth0"}`, `{"key": "x", "scopes": ["bad scope"]}`} {
		want(t, ts.call("POST", "/v1/verify", tok, body), 400, api.CodeInvalidRequest)
	}
	for _, body := range []string{`{"key": "x", "extra": 1}`, `{"key": 1}`, `nope`} {
		want(t, ts.call("POST", "/v1/verify", tok, body), 400, api.CodeInvalidJSON)
	}
	// Authentication comes before the body, as on every route.
	want(t, ts.call("POST", "/v1/verify", "", `nope`), 401, api.CodeUnauthorized)
	want(t, ts.call("POST", "/v1/verify", "sk_test_nope", `nope`), 401, api.CodeUnauthorized)
	want(t, ts.call("POST", "/v1/verify", ts.tok["read"], `nope`), 403, api.CodeForbidden)
	want(t, ts.call("POST", "/v1/verify", tok, `{"key": "`+string(make([]byte, api.MaxBodyBytes))+`"}`),
		http.StatusRequestEntityTooLarge, api.CodeBodyTooLarge)
}

// TestQuotaUnderLoad: 16 clients verify a key with a quota of 500, 100
// times each: exactly 500 are valid, and after a clean shutdown the key's
// usage count is every verification served.
func TestQuotaUnderLoad(t *testing.T) {
	ts := start(t)
	k, secret := ts.mint(keys.CreateParams{Name: "metered", Quota: ptr(int64(500))})
	const clients, each = 16, 100
	var mu sync.Mutex
	codes := map[keys.Code]int{}
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			c := ts.client(&http.Transport{MaxIdleConnsPerHost: 1})
			defer c.CloseIdleConnections()
			for range each {
				r := postVerify(t, c, ts.url, ts.tok["verify"], secret)
				mu.Lock()
				codes[r]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if codes[keys.Valid] != 500 || codes[keys.QuotaExceeded] != clients*each-500 || len(codes) != 2 {
		t.Fatalf("results %v, want 500 VALID and %d QUOTA_EXCEEDED", codes, clients*each-500)
	}
	ts.stop()
	got, err := ts.st.Get(t.Context(), k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.UsageCount != clients*each || *got.QuotaRemaining != 0 {
		t.Fatalf("usage_count %d, quota_remaining %d; want %d and 0", got.UsageCount, *got.QuotaRemaining, clients*each)
	}
	if n := ts.usageCount("verify"); n != clients*each {
		t.Fatalf("the verify token was used %d times, want %d", n, clients*each)
	}
}

// postVerify verifies secret through POST /v1/verify and returns the code;
// "" after reporting a failure (it may run on any goroutine).
func postVerify(t testing.TB, c *http.Client, url, token, secret string) keys.Code {
	body, _ := json.Marshal(api.VerifyRequest{Key: secret})
	req, err := http.NewRequest("POST", url+"/v1/verify", bytes.NewReader(body))
	if err != nil {
		t.Error(err)
		return ""
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		t.Error(err)
		return ""
	}
	defer resp.Body.Close()
	var res keys.VerifyResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil || resp.StatusCode != 200 {
		t.Errorf("verify: %d %v", resp.StatusCode, err)
		return ""
	}
	return res.Code
}

// TestVerifyAuthenticatesBeforeLookingAtTheKey: a caller without a valid
// token learns nothing about the key it asks about. Here the key's row
// cannot be read (a corrupt column): looking at it first would answer 500,
// telling that the key exists; the caller is refused before.
func TestVerifyAuthenticatesBeforeLookingAtTheKey(t *testing.T) {
	ts := start(t)
	_, secret := ts.mint(keys.CreateParams{Name: "probed"})
	ts.exec(`UPDATE keys SET scopes = 'not json' WHERE name = 'probed'`)
	unknown, _ := apikey.New("sk", apikey.TagTest)
	for _, tok := range []string{"", "sk_test_nope", unknown.String()} {
		r := ts.call("POST", "/v1/verify", tok, api.VerifyRequest{Key: secret})
		want(t, r, http.StatusUnauthorized, api.CodeUnauthorized)
	}
	want(t, ts.call("POST", "/v1/verify", ts.tok["read"], api.VerifyRequest{Key: secret}), http.StatusForbidden, api.CodeForbidden)
	// With a token that may verify, the key is read (and cannot be).
	want(t, ts.call("POST", "/v1/verify", ts.tok["verify"], api.VerifyRequest{Key: secret}), http.StatusInternalServerError, api.CodeInternal)
}
