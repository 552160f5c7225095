package server

import (
	"fmt"
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

// TestDenialsAreBounded: a caller refused again and again costs the audit
// trail one entry a minute, with a count; an unauthenticated caller costs
// it nothing; and the caller's text is bounded and escaped.
func TestDenialsAreBounded(t *testing.T) {
	ts := start(t)
	ctx := t.Context()
	count := func() int {
		t.Helper()
		entries, err := ts.st.Audit(ctx, keys.AuditFilter{Action: keys.ActionDenied})
		if err != nil {
			t.Fatal(err)
		}
		return len(entries)
	}
	for range 100 {
		want(t, ts.raw("GET", "/v1/keys", "sk_test_nope", nil), http.StatusUnauthorized, api.CodeUnauthorized)
		want(t, ts.raw("POST", "/v1/keys/plain/disable", "", nil), http.StatusUnauthorized, api.CodeUnauthorized)
	}
	if n := count(); n != 0 {
		t.Fatalf("unauthenticated calls wrote %d audit entries", n)
	}
	const n = 200
	forged := "/v1/keys/a%0Aforged%1B%5B31m" + strings.Repeat("x", 100) + "/disable"
	want(t, ts.call("POST", forged, ts.tok["read"], nil), http.StatusForbidden, api.CodeForbidden)
	for range n - 1 {
		want(t, ts.raw("POST", "/v1/keys/plain/disable", ts.tok["read"], nil), http.StatusForbidden, api.CodeForbidden)
	}
	if got := count(); got != 1 {
		t.Fatalf("%d refusals in a minute wrote %d entries, want 1", n, got)
	}
	ts.clock.Advance(denialEvery)
	want(t, ts.call("POST", "/v1/keys/plain/enable", ts.tok["read"], nil), http.StatusForbidden, api.CodeForbidden)
	want(t, ts.call("POST", "/v1/keys/plain/enable", ts.tok["read"], nil), http.StatusForbidden, api.CodeForbidden)
	m := ts.metricsText()
	if !strings.Contains(m, `keyctl_denied_requests_total{route="POST /v1/keys/{id}/disable"} 200`) {
		t.Fatalf("metrics: %s", grep(m, "keyctl_denied"))
	}
	ts.stop() // writes what is still counted
	entries, err := ts.st.Audit(ctx, keys.AuditFilter{Action: keys.ActionDenied})
	if err != nil {
		t.Fatal(err)
	}
	var counts []float64
	for _, e := range entries {
		counts = append(counts, e.Changes["count"].To.(float64))
		if e.Actor.Name != "read" {
			t.Errorf("entry %d: actor %+v", e.Seq, e.Actor)
		}
	}
	if fmt.Sprint(counts) != "[1 200 1]" {
		t.Fatalf("denied entries count %v refusals, want [1 200 1]", counts)
	}
	ref, _ := entries[0].Changes["ref"].To.(string)
	if !strings.HasPrefix(ref, `a\nforged\x1b[31mxxx`) || len(ref) > 64 || entries[0].KeyName != "" {
		t.Fatalf("the caller's path was stored as %q (key %q)", ref, entries[0].KeyName)
	}
	if entries[1].KeyName != "plain" {
		t.Fatalf("the refused call's key: %+v", entries[1])
	}
}

func TestNoteIsBounded(t *testing.T) {
	ts := start(t)
	note := func(n string) *response {
		return ts.send("POST", "/v1/keys/plain/disable", nil, func(h http.Header) {
			h.Set("Authorization", "Bearer "+ts.tok["admin"])
			h.Set(api.NoteHeader, n)
		})
	}
	r := note(strings.Repeat("x", keys.MaxNote+1))
	want(t, r, http.StatusBadRequest, api.CodeInvalidRequest)
	if !strings.Contains(string(r.body), fmt.Sprint(keys.MaxNote)) {
		t.Fatalf("the refusal does not name the limit: %s", r.body)
	}
	if k, _ := ts.st.Get(t.Context(), "plain"); k.Status != keys.Active {
		t.Fatal("a refused call changed the key")
	}
	want(t, note(strings.Repeat("x", keys.MaxNote)), http.StatusOK, "")
}
