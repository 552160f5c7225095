package sqlite

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/keyctl/keyctl/store/keys"
)

// Paging through ListPage yields exactly what List returns, for every
// filter, however small the pages, even when a page's bounded read finds
// nothing that matches.
func TestListPagesAreTheList(t *testing.T) {
	c := newClock()
	s, _ := openTest(t, c)
	ctx := context.Background()
	// Inserted in one transaction, as Create would make them: more keys
	// than a page reads at most, so that a rare filter crosses the bound.
	tx, err := s.db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1200 {
		env, status, scopes := "production", "active", "[]"
		if i%3 == 0 {
			env = "staging"
		}
		if i%500 == 7 {
			scopes = `["rare"]`
		}
		var expires any
		if i%50 == 0 {
			expires = c.t.Add(time.Hour).Unix()
		}
		if i%7 == 0 {
			status = "revoked"
		}
		if i%100 == 0 {
			c.Advance(time.Second) // several keys share a created_at: rowid orders them
		}
		if _, err := tx.Exec(`INSERT INTO keys (id, name, prefix, env, start, status, scopes, expires_at, created_at, updated_at)
			VALUES (?, ?, 'sk', ?, 'sk_live_00000000', ?, ?, ?, ?, ?)`, fmt.Sprintf("key_%016d", i), fmt.Sprintf("k%04d", i),
			env, status, scopes, expires, c.t.Unix(), c.t.Unix()); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	c.Advance(30 * time.Minute)
	for _, f := range []keys.ListFilter{{}, {All: true}, {Env: keys.Staging}, {Status: keys.Revoked}, {Scope: "rare"},
		{Scope: "rare", All: true}, {Expiring: time.Hour}, {Status: keys.Active, Env: keys.Production}} {
		want, err := s.List(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		for _, limit := range []int{1, 7, 100, 1000} {
			if limit == 1 && len(want) > 50 {
				continue // a page a key: long, and no different from 7
			}
			var got []*keys.Key
			cursor, pages := "", 0
			for {
				page, next, err := s.ListPage(ctx, f, cursor, limit)
				if err != nil {
					t.Fatal(err)
				}
				if len(page) > limit {
					t.Fatalf("a page of %d keys for a limit of %d", len(page), limit)
				}
				got, pages = append(got, page...), pages+1
				if next == "" {
					break
				}
				cursor = next
			}
			if !slices.EqualFunc(got, want, func(a, b *keys.Key) bool { return a.ID == b.ID }) {
				t.Fatalf("%+v, pages of %d: %d keys in %d pages, want %d", f, limit, len(got), pages, len(want))
			}
		}
	}
	if _, _, err := s.ListPage(ctx, keys.ListFilter{}, "bm9wZQ", 10); err == nil {
		t.Fatal("a cursor this store never gave was taken")
	}
}

// AuditPage pages forward through the trail, or backward for the most
// recent N, and yields exactly what Audit returns.
func TestAuditPagesAreTheTrail(t *testing.T) {
	c := newClock()
	s, _ := openTest(t, c)
	ctx := context.Background()
	for i := range 300 {
		k, _ := create(t, s, keys.CreateParams{Name: fmt.Sprintf("a%d", i)})
		if i%4 == 0 {
			s.SetDisabled(ctx, k.ID, true)
		}
		c.Advance(time.Second)
	}
	for _, f := range []keys.AuditFilter{{}, {Action: keys.ActionDisable}, {Key: "a17"}, {Limit: 5}, {Limit: 120, Action: keys.ActionCreate},
		{Limit: 1000}, {Since: c.t.Add(-10 * time.Second)}, {Key: "a3", Limit: 2}} {
		want, err := s.Audit(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		for _, size := range []int{1, 9, 1000} {
			var got []*keys.AuditEntry
			cursor := ""
			for {
				limit := size
				if f.Limit > 0 {
					limit = min(size, f.Limit-len(got))
				}
				page, next, err := s.AuditPage(ctx, f, cursor, limit)
				if err != nil {
					t.Fatal(err)
				}
				if f.Limit > 0 {
					got = append(page, got...)
				} else {
					got = append(got, page...)
				}
				if next == "" || f.Limit > 0 && len(got) == f.Limit {
					break
				}
				cursor = next
			}
			if !slices.EqualFunc(got, want, func(a, b *keys.AuditEntry) bool { return a.Seq == b.Seq }) {
				t.Fatalf("%+v, pages of %d: %d entries, want %d", f, size, len(got), len(want))
			}
		}
	}
}
