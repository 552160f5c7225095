package server

import (
	"net/http"
	"strings"
	"testing"

	"github.com/keyctl/keyctl/api"
	"github.com/keyctl/keyctl/store/keys"
)

func TestAuditThroughTheAPI(t *testing.T) {
	ts := start(t)
	created := ts.call("POST", "/v1/keys", ts.tok["admin"], api.CreateRequest{Name: "audited", Scopes: []string{"sdk"}})
	want(t, created, 201, "")
	// A refused admin call is audited too.
	want(t, ts.call("POST", "/v1/keys/audited/disable", ts.tok["read"], nil), 403, api.CodeForbidden)
	// A note rides along with the change.
	r := ts.send("POST", "/v1/keys/audited/revoke", api.RevokeRequest{Reason: "leaked"}, func(h http.Header) {
		h.Set("Authorization", "Bearer "+ts.tok["admin"])
		h.Set(api.NoteHeader, "leak response: found in app.env:3")
	})
	want(t, r, 200, "")

	var entries []keys.AuditEntry
	r = ts.call("GET", "/v1/audit?key=audited", ts.tok["read"], nil)
	want(t, r, 200, "")
	r.decode(t, &entries)
	var got []string
	for _, e := range entries {
		got = append(got, e.Action+" by "+e.Actor.Name+" ("+e.Actor.Kind+") "+e.Note)
		if e.Actor.Address == "" {
			t.Errorf("entry %d has no client address", e.Seq)
		}
	}
	wantEntries := []string{
		"create by admin (key) ",
		"denied by read (key) ",
		"revoke by admin (key) leak response: found in app.env:3",
	}
	if strings.Join(got, "\n") != strings.Join(wantEntries, "\n") {
		t.Fatalf("audit entries:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantEntries, "\n"))
	}
	if ch := entries[1].Changes["required_scope"]; ch.To != api.ScopeAdmin {
		t.Errorf("denied entry changes = %v", entries[1].Changes)
	}
	if strings.Contains(string(r.body), ts.tok["admin"]) || strings.Contains(string(r.body), ts.tok["read"]) {
		t.Fatal("the audit trail holds a token")
	}

	r = ts.call("GET", "/v1/audit?action=denied&limit=1", ts.tok["read"], nil)
	want(t, r, 200, "")
	r.decode(t, &entries)
	if len(entries) != 1 || entries[0].Action != "denied" {
		t.Fatalf("filtered entries = %+v", entries)
	}
	want(t, ts.call("GET", "/v1/audit?action=explode", ts.tok["read"], nil), 400, api.CodeInvalidRequest)
	want(t, ts.call("GET", "/v1/audit?since=yesterday", ts.tok["read"], nil), 400, api.CodeInvalidRequest)
	want(t, ts.call("GET", "/v1/audit", ts.tok["verify"], nil), 403, api.CodeForbidden)
	want(t, ts.call("GET", "/v1/audit", "", nil), 401, api.CodeUnauthorized)

	var check keys.AuditCheck
	r = ts.call("GET", "/v1/audit/verify", ts.tok["read"], nil)
	want(t, r, 200, "")
	r.decode(t, &check)
	if !check.OK || check.Entries < 3 {
		t.Fatalf("check = %+v", check)
	}
}
