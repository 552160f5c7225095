package server

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestRoutesMatchTheDocument checks the routes the server registers on its
// mux against openapi.json both ways: each route is an operation of the
// document, and each operation a route.
func TestRoutesMatchTheDocument(t *testing.T) {
	ts := start(t)
	if len(ts.srv.patterns) == 0 {
		t.Fatal("no routes registered")
	}
	routes := map[string]bool{}
	for _, p := range ts.srv.patterns {
		method, path, ok := strings.Cut(p, " ")
		if !ok || method == "" {
			t.Errorf("route %q names no method: it would answer every method", p)
			continue
		}
		routes[method+" "+path] = true
		item := ts.doc.Paths.Value(path)
		if item == nil || item.GetOperation(method) == nil {
			t.Errorf("route %s is not in openapi.json", p)
			continue
		}
		op := item.GetOperation(method)
		for _, name := range pathParams(path) {
			if item.Parameters.GetByInAndName("path", name) == nil && op.Parameters.GetByInAndName("path", name) == nil {
				t.Errorf("%s: path parameter %s is not documented", p, name)
			}
		}
	}
	var documented []string
	for path, item := range ts.doc.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" "+path)
			if !routes[method+" "+path] {
				t.Errorf("openapi.json documents %s %s, which the server does not serve", method, path)
			}
		}
	}
	if len(documented) != len(routes) {
		t.Errorf("%d operations documented, %d routes served", len(documented), len(routes))
	}
	// Each route answers on its method: none is shadowed by another.
	for p := range routes {
		method, path, _ := strings.Cut(p, " ")
		req, _ := http.NewRequest(method, ts.url+strings.ReplaceAll(path, "{id}", "some-key"), nil)
		if _, pattern := ts.srv.mux.Handler(req); pattern != p {
			t.Errorf("%s is served by %q", p, pattern)
		}
	}
}

func pathParams(path string) []string {
	var out []string
	for _, seg := range strings.Split(path, "/") {
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			out = append(out, strings.Trim(seg, "{}."))
		}
	}
	return slices.Compact(out)
}
