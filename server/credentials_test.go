package server

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keyctl/keyctl/api"
	"github.com/keyctl/keyctl/apikey"
	"github.com/keyctl/keyctl/store/keys"
)

// TestRevokeCredentials: whoever holds a secret kills it without a token;
// the answer is 202 whatever was found.
func TestRevokeCredentials(t *testing.T) {
	ts := start(t)
	ctx := t.Context()
	leaked, leakedTok := ts.mint(keys.CreateParams{Name: "leaked"})
	rotated, oldTok := ts.mint(keys.CreateParams{Name: "rotated"})
	_, newTok, err := ts.st.Rotate(ctx, rotated.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, deadTok := ts.mint(keys.CreateParams{Name: "dead"})
	if _, _, err := ts.st.Rotate(ctx, "dead", 0); err != nil {
		t.Fatal(err)
	}
	unknown, _ := apikey.New("sk", apikey.TagTest)
	accepted := func(body any) {
		t.Helper()
		r := ts.call("POST", "/v1/credentials/revoke", "", body)
		want(t, r, http.StatusAccepted, "")
		if string(r.body) != "{\"status\":\"accepted\"}\n" {
			t.Fatalf("body %s tells something", r.body)
		}
	}
	accepted(api.CredentialsRequest{Credentials: []string{leakedTok, oldTok, deadTok, unknown.String(), "not a key"}})

	k, _ := ts.st.Get(ctx, leaked.ID)
	if k.Status != keys.Revoked || k.RevokeReason != "revoked by the holder of its secret" {
		t.Fatalf("the current secret's key: %+v", k)
	}
	// The old secret in grace is dead now; the key and its current secret
	// are healthy.
	for tok, code := range map[string]keys.Code{oldTok: keys.CodeRevoked, newTok: keys.Valid} {
		r := ts.call("POST", "/v1/verify", ts.tok["verify"], api.VerifyRequest{Key: tok})
		var res keys.VerifyResult
		r.decode(t, &res)
		if res.Code != code {
			t.Errorf("after revoking the old secret: %s, want %s (%s)", res.Code, code, res.Reason)
		}
	}
	if k, _ := ts.st.Get(ctx, "dead"); k.Status != keys.Active {
		t.Fatalf("a dead secret revoked its key: %+v", k)
	}
	entries, err := ts.st.Audit(ctx, keys.AuditFilter{Actor: "holder of the secret"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Action+" "+e.KeyName+" "+e.Actor.Kind+" "+e.Actor.Address)
	}
	if want := "revoke leaked holder 127.0.0.1,end-grace rotated holder 127.0.0.1"; strings.Join(got, ",") != want {
		t.Fatalf("audit: %q, want %q", got, want)
	}

	for _, body := range []string{`{"credentials": []}`, `{"credentials": "x"}`, `{"keys": ["x"]}`,
		fmt.Sprintf(`{"credentials": [%s"x"]}`, strings.Repeat(`"x", `, api.MaxCredentials))} {
		r := ts.call("POST", "/v1/credentials/revoke", "", body)
		if r.status != 400 {
			t.Errorf("%.40s: %d %s, want 400", body, r.status, r.body)
		}
	}
}

func TestRevokeCredentialsIsRateLimitedPerAddress(t *testing.T) {
	ts := start(t)
	body := api.CredentialsRequest{Credentials: []string{"sk_test_nothing"}}
	for range credentialsRate.Count - 1 {
		want(t, ts.call("POST", "/v1/credentials/revoke", "", body), http.StatusAccepted, "")
	}
	want(t, ts.call("POST", "/v1/credentials/revoke", "", body), http.StatusAccepted, "")
	r := ts.call("POST", "/v1/credentials/revoke", "", body)
	want(t, r, http.StatusTooManyRequests, api.CodeRateLimited)
	if r.header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
	ts.clock.Advance(time.Minute)
	want(t, ts.call("POST", "/v1/credentials/revoke", "", body), http.StatusAccepted, "")
}

func TestLookupSaysTheSecretsState(t *testing.T) {
	ts := start(t)
	_, old := ts.mint(keys.CreateParams{Name: "r"})
	if _, _, err := ts.st.Rotate(t.Context(), "r", time.Hour); err != nil {
		t.Fatal(err)
	}
	r := ts.call("POST", "/v1/keys/lookup", ts.tok["read"], api.KeyRequest{Key: old})
	want(t, r, 200, "")
	var k api.FoundKey
	r.decode(t, &k)
	if k.Name != "r" || k.SecretState.Current || k.SecretState.EndsAt == nil || !k.SecretState.EndsAt.Equal(ts.clock.Now().Add(time.Hour)) {
		t.Fatalf("lookup of an old secret: %s", r.body)
	}
	r = ts.call("POST", "/v1/keys/lookup", ts.tok["read"], api.KeyRequest{Key: ts.tok["plain"]})
	r.decode(t, &k)
	if !k.SecretState.Current || k.SecretState.EndsAt != nil {
		t.Fatalf("lookup of a current secret: %s", r.body)
	}
}

// A secret in a URL is refused, and neither looked at nor echoed.
func TestSecretInURLIsRefused(t *testing.T) {
	ts := start(t)
	tok := ts.tok["plain"]
	for _, path := range []string{"/v1/keys/" + tok, "/v1/keys/" + tok + "/usage"} {
		r := ts.call("GET", path, ts.tok["read"], nil)
		want(t, r, http.StatusBadRequest, api.CodeInvalidRequest)
		if strings.Contains(string(r.body), tok[12:]) {
			t.Fatalf("the answer echoes the secret: %s", r.body)
		}
	}
	r := ts.call("POST", "/v1/keys/"+tok+"/revoke", ts.tok["admin"], nil)
	want(t, r, http.StatusBadRequest, api.CodeInvalidRequest)
	if k, _ := ts.st.Get(t.Context(), "plain"); k.Status != keys.Active {
		t.Fatal("a secret in a URL revoked its key")
	}
	if strings.Contains(ts.log.String(), tok[12:]) {
		t.Fatal("the log holds the secret")
	}
}
