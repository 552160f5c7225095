package server

import (
	"testing"
	"time"

	"github.com/keyctl/keyctl/api"
	"github.com/keyctl/keyctl/store/keys"
)

// verifyCode verifies tok through the API and returns the result's code.
func (ts *testServer) verifyCode(tok string) keys.Code {
	ts.t.Helper()
	r := ts.call("POST", "/v1/verify", ts.tok["verify"], api.VerifyRequest{Key: tok})
	want(ts.t, r, 200, "")
	var res keys.VerifyResult
	r.decode(ts.t, &res)
	return res.Code
}

func (ts *testServer) rotate(ref string, grace int64) string {
	ts.t.Helper()
	r := ts.call("POST", "/v1/keys/"+ref+"/rotate", ts.tok["admin"], api.RotateRequest{GraceSeconds: grace})
	want(ts.t, r, 200, "")
	var k api.IssuedKey
	r.decode(ts.t, &k)
	return k.Secret
}

// A rotation whose secret the client could not deliver is undone by that
// secret, in a body: the previous secrets work exactly as before it.
func TestUndoRotate(t *testing.T) {
	ts := start(t)
	admin := ts.tok["admin"]
	first := ts.tok["plain"]
	second := ts.rotate("plain", 3600) // first lives on for an hour
	third := ts.rotate("plain", 0)     // ends first and second now
	before := ts.keys["plain"]
	if ts.verifyCode(first) != keys.CodeRevoked || ts.verifyCode(second) != keys.CodeRevoked {
		t.Fatal("a rotation without grace ends the older secrets")
	}
	fourth := ts.rotate("plain", 0)

	// Not the current secret: 409, nothing changes.
	want(t, ts.call("POST", "/v1/keys/plain/rotate/undo", admin, api.UndoRotateRequest{Secret: third}), 409, api.CodeConflict)
	want(t, ts.call("POST", "/v1/keys/plain/rotate/undo", admin, api.UndoRotateRequest{Secret: "nonsense"}), 400, api.CodeInvalidRequest)
	want(t, ts.call("POST", "/v1/keys/plain/rotate/undo", admin, `{}`), 400, api.CodeInvalidRequest)
	want(t, ts.call("POST", "/v1/keys/plain/rotate/undo", admin, nil), 400, api.CodeInvalidJSON)
	want(t, ts.call("POST", "/v1/keys/plain/rotate/undo", ts.tok["read"], api.UndoRotateRequest{Secret: fourth}), 403, api.CodeForbidden)
	// Another key's current secret undoes nothing of this one.
	ts.mint(keys.CreateParams{Name: "other"})
	want(t, ts.call("POST", "/v1/keys/other/rotate/undo", admin, api.UndoRotateRequest{Secret: fourth}), 409, api.CodeConflict)

	r := ts.call("POST", "/v1/keys/plain/rotate/undo", admin, api.UndoRotateRequest{Secret: fourth})
	want(t, r, 200, "")
	var k keys.Key
	r.decode(t, &k)
	if ts.verifyCode(fourth) != keys.NotFound || ts.verifyCode(third) != keys.Valid {
		t.Fatalf("after the undo the third secret is current again and the fourth is gone")
	}
	if k.Start != third[:16] || k.RotatedAt == nil || k.ID != before.ID {
		t.Fatalf("undone key %+v, want start %s", k, third[:16])
	}
	// Undone once is undone: the secret is gone.
	want(t, ts.call("POST", "/v1/keys/plain/rotate/undo", admin, api.UndoRotateRequest{Secret: fourth}), 409, api.CodeConflict)

	// A grace cut short by the undone rotation is given back.
	fifth := ts.rotate("plain", 7200)
	sixth := ts.rotate("plain", 0)
	want(t, ts.call("POST", "/v1/keys/plain/rotate/undo", admin, api.UndoRotateRequest{Secret: sixth}), 200, "")
	if ts.verifyCode(third) != keys.Valid || ts.verifyCode(fifth) != keys.Valid {
		t.Fatal("the undo gives the older secret its grace back")
	}
	ts.clock.Advance(3 * time.Hour)
	if ts.verifyCode(third) != keys.CodeRevoked || ts.verifyCode(fifth) != keys.Valid {
		t.Fatal("the older secret's grace ends when it did before the undone rotation")
	}

	// Too late: only within the undo window.
	seventh := ts.rotate("plain", 0)
	ts.clock.Advance(11 * time.Minute)
	want(t, ts.call("POST", "/v1/keys/plain/rotate/undo", admin, api.UndoRotateRequest{Secret: seventh}), 409, api.CodeConflict)

	entries, err := ts.st.Audit(t.Context(), keys.AuditFilter{Action: keys.ActionUndoRotate})
	if err != nil || len(entries) != 2 || entries[0].Changes["start"].To == nil {
		t.Fatalf("undo audit entries %v, %v", entries, err)
	}
}

// An admin may not undo a rotation of a key that holds keyctl:* scopes, as
// it may not rotate one.
func TestUndoRotateNeedsOwnerForReservedScopes(t *testing.T) {
	ts := start(t)
	r := ts.call("POST", "/v1/keys/read/rotate", ts.tok["owner"], nil)
	want(t, r, 200, "")
	var k api.IssuedKey
	r.decode(t, &k)
	want(t, ts.call("POST", "/v1/keys/read/rotate/undo", ts.tok["admin"], api.UndoRotateRequest{Secret: k.Secret}), 403, api.CodeForbidden)
	want(t, ts.call("POST", "/v1/keys/read/rotate/undo", ts.tok["owner"], api.UndoRotateRequest{Secret: k.Secret}), 200, "")
}

func TestSecretsAndEndGrace(t *testing.T) {
	ts := start(t)
	admin := ts.tok["admin"]
	old := ts.tok["plain"]
	secret := ts.rotate("plain", 3600)

	r := ts.call("GET", "/v1/keys/plain/secrets", ts.tok["read"], nil)
	want(t, r, 200, "")
	var list api.SecretList
	r.decode(t, &list)
	if len(list.Secrets) != 2 || !list.Secrets[0].Current || list.Secrets[0].Start != secret[:16] ||
		list.Secrets[1].Current || list.Secrets[1].Start != old[:16] || list.Secrets[1].EndsAt == nil {
		t.Fatalf("secrets %+v", list.Secrets)
	}
	want(t, ts.call("POST", "/v1/keys/plain/end-grace", ts.tok["read"], nil), 403, api.CodeForbidden)

	r = ts.call("POST", "/v1/keys/plain/end-grace", admin, nil)
	want(t, r, 200, "")
	var res api.EndGraceResult
	r.decode(t, &res)
	if res.Ended != 1 || res.Key.ID != ts.keys["plain"].ID {
		t.Fatalf("end-grace %+v", res)
	}
	if ts.verifyCode(old) != keys.CodeRevoked || ts.verifyCode(secret) != keys.Valid {
		t.Fatal("end-grace stops the old secret and keeps the current one")
	}
	r = ts.call("POST", "/v1/keys/plain/end-grace", admin, `{}`)
	want(t, r, 200, "")
	r.decode(t, &res)
	if res.Ended != 0 {
		t.Fatalf("a second end-grace ended %d", res.Ended)
	}
	// Ended secrets are not brought back by undoing the rotation.
	want(t, ts.call("POST", "/v1/keys/plain/rotate/undo", admin, api.UndoRotateRequest{Secret: secret}), 409, api.CodeConflict)

	want(t, ts.call("GET", "/v1/keys/nobody/secrets", ts.tok["read"], nil), 404, api.CodeNotFound)
	ts.st.Revoke(t.Context(), "plain", "")
	want(t, ts.call("POST", "/v1/keys/plain/end-grace", admin, nil), 409, api.CodeRevoked)
	r = ts.call("GET", "/v1/keys/plain/secrets", ts.tok["read"], nil)
	want(t, r, 200, "")
	r.decode(t, &list)
	if len(list.Secrets) != 0 {
		t.Fatalf("a revoked key has live secrets: %+v", list.Secrets)
	}
}
