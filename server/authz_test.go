package server

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"

	"github.com/keyctl/keyctl/api"
	"github.com/keyctl/keyctl/store/keys"
)

// TestRenameRacingRotateThroughTheAPI: an owner swaps the names of a
// management key and an ordinary key while an admin rotates and updates by
// those names, concurrently, thousands of times. The admin never receives a
// management key's secret, and never changes one.
func TestRenameRacingRotateThroughTheAPI(t *testing.T) {
	ts := start(t)
	mgmt, mgmtSecret := ts.mint(keys.CreateParams{Name: "alpha", Scopes: []string{api.ScopeRead}})
	plain, _ := ts.mint(keys.CreateParams{Name: "beta", Scopes: []string{"sdk"}})
	swaps, calls := 400, 1200
	if testing.Short() {
		swaps, calls = 50, 150
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range swaps {
			a, b := mgmt.ID, plain.ID
			if i%2 == 1 {
				a, b = b, a
			}
			for _, step := range []struct{ id, name string }{{a, "swap"}, {b, "alpha"}, {a, "beta"}} {
				r := ts.raw("PATCH", "/v1/keys/"+step.id, ts.tok["owner"], api.UpdateRequest{Name: ptr(step.name)})
				if r.status != 200 {
					t.Errorf("owner rename: %d %s", r.status, r.body)
				}
			}
		}
	})
	var mu sync.Mutex
	var secrets []string
	var done, refused int
	for g := range 2 {
		wg.Go(func() {
			for i := g; i < calls; i += 2 {
				name := []string{"alpha", "beta"}[(i/2)%2]
				var r *response
				if i%4 < 2 {
					r = ts.raw("POST", "/v1/keys/"+name+"/rotate", ts.tok["admin"], nil)
				} else {
					r = ts.raw("PATCH", "/v1/keys/"+name, ts.tok["admin"], api.UpdateRequest{Description: ptr("admin")})
				}
				mu.Lock()
				switch r.status {
				case http.StatusOK:
					done++
					var k api.IssuedKey
					if err := json.Unmarshal(r.body, &k); err != nil {
						t.Errorf("%s: %v", r.body, err)
					}
					if k.ID != plain.ID || keys.Management(k.Key) {
						t.Errorf("an admin call changed a management key: %s", r.body)
					}
					if k.Secret != "" {
						secrets = append(secrets, k.Secret)
					}
				case http.StatusForbidden, http.StatusNotFound:
					refused++
				default:
					t.Errorf("admin call: %d %s", r.status, r.body)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	ctx := context.Background()
	for _, secret := range secrets {
		if k, err := ts.st.Find(ctx, secret); err != nil || k.ID != plain.ID {
			t.Fatalf("an admin received the secret of %+v (%v)", k, err)
		}
	}
	k, state, err := ts.st.FindSecret(ctx, mgmtSecret)
	if err != nil || !state.Current || k.Description != "" || k.RotatedAt != nil {
		t.Fatalf("the management key changed: %+v %+v %v", k, state, err)
	}
	if done == 0 || refused == 0 {
		t.Fatalf("%d admin calls done, %d refused: the race was not run", done, refused)
	}
}

// raw is call without the OpenAPI check, for use from several goroutines.
func (ts *testServer) raw(method, path, token string, body any) *response {
	return ts.sendOn(method, path, body, func(h http.Header) { h.Set("Authorization", "Bearer "+token) }, false)
}
