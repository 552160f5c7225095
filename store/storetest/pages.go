package storetest

import (
	"fmt"
	"slices"
	"time"

	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/keys"
)

// testPagerKeys: a page follows the key its cursor names, newest first, so
// that paging through the keys while others are created meanwhile gives
// every key that was there exactly once, in order, and none created after
// the first page.
func testPagerKeys(h *H) {
	p := pagerOf(h, h.A)
	var want []string
	for i := range 13 {
		k, _ := h.create(keys.CreateParams{Name: fmt.Sprintf("p%02d", i), Env: keys.Staging})
		want = append(want, k.ID)
		if i%5 == 4 {
			h.Clock.Advance(time.Second) // some keys share a second, some do not
		}
	}
	h.create(keys.CreateParams{Name: "other-env"}) // filtered in SQL
	if _, err := h.A.Revoke(h.ctx, "p03", ""); err != nil {
		h.Fatal(err)
	}
	slices.Reverse(want)
	live := slices.DeleteFunc(slices.Clone(want), func(id string) bool { return id == h.get(h.A, "p03").ID })

	f := keys.ListFilter{Env: keys.Staging}
	var got []string
	cursor, pages := "", 0
	for {
		page, next, err := p.ListPage(h.ctx, f, cursor, 4)
		if err != nil {
			h.Fatalf("page %d: %v", pages, err)
		}
		for _, k := range page {
			got = append(got, k.ID)
		}
		pages++
		if next == "" {
			break
		}
		// Keys created between pages, in the same second as the last
		// ones and in a later one, on the other handle.
		h.createVia(h.B, keys.CreateParams{Name: fmt.Sprintf("new%d", pages), Env: keys.Staging})
		if pages%2 == 0 {
			h.Clock.Advance(time.Second)
		}
		cursor = next
	}
	if !slices.Equal(got, live) {
		h.Fatalf("paged %d keys in %d pages:\n got %v\nwant %v", len(got), pages, got, live)
	}
	if pages < (len(live)+3)/4 {
		h.Fatalf("%d pages of at most 4 for %d keys", pages, len(live))
	}
	// With the revoked one and those created meanwhile, in one page.
	page, next, err := p.ListPage(h.ctx, keys.ListFilter{Env: keys.Staging, All: true}, "", 100)
	if err != nil || next != "" || len(page) != len(want)+pages-1 {
		h.Fatalf("one page of every key: %d keys, next %q, %v; want %d", len(page), next, err, len(want)+pages-1)
	}
	if _, _, err := p.ListPage(h.ctx, f, "not-a-cursor", 4); err == nil {
		h.Fatal("a cursor the store did not give was accepted")
	}
}

// testPagerAudit: audit pages go forward from the oldest entry, or backward
// from the newest for the N most recent; together they are what Audit
// gives, whatever is appended between pages.
func testPagerAudit(h *H) {
	p := pagerOf(h, h.A)
	for i := range 9 {
		h.create(keys.CreateParams{Name: fmt.Sprintf("a%d", i)})
		if _, err := h.A.Update(h.ctx, fmt.Sprintf("a%d", i), keys.UpdateParams{Description: ptr("d")}); err != nil {
			h.Fatal(err)
		}
	}
	all := h.audit(keys.AuditFilter{})
	var got []int64
	cursor := ""
	for {
		page, next, err := p.AuditPage(h.ctx, keys.AuditFilter{}, cursor, 5)
		if err != nil {
			h.Fatal(err)
		}
		for _, e := range page {
			got = append(got, e.Seq)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if len(got) != len(all) || !slices.IsSorted(got) || got[0] != all[0].Seq || got[len(got)-1] != all[len(all)-1].Seq {
		h.Fatalf("forward pages: %v, want the %d entries in order", got, len(all))
	}
	// The 7 most recent updates, backward in pages of 3, while changes are
	// made meanwhile: the newest ones as of the first page.
	f := keys.AuditFilter{Action: keys.ActionUpdate, Limit: 7}
	want := h.audit(f)
	var back []*keys.AuditEntry
	cursor, wanted := "", f.Limit
	for wanted > 0 {
		page, next, err := p.AuditPage(h.ctx, f, cursor, min(wanted, 3))
		if err != nil {
			h.Fatal(err)
		}
		back = append(slices.Clone(page), back...)
		wanted -= len(page)
		if _, err := h.B.Update(h.ctx, "a0", keys.UpdateParams{Description: ptr(fmt.Sprint(wanted))}); err != nil {
			h.Fatal(err)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if len(back) != len(want) {
		h.Fatalf("backward pages: %d entries, want %d", len(back), len(want))
	}
	for i := range want {
		if back[i].Seq != want[i].Seq || back[i].Action != keys.ActionUpdate {
			h.Fatalf("backward pages: entry %d is %d (%s), want %d", i, back[i].Seq, back[i].Action, want[i].Seq)
		}
	}
}

func pagerOf(h *H, s store.Store) store.Pager {
	p, ok := s.(store.Pager)
	if !ok {
		h.Skip("the store is not a store.Pager")
	}
	return p
}

// createVia creates a key through s.
func (h *H) createVia(s store.Store, p keys.CreateParams) *keys.Key {
	h.Helper()
	if p.Env == "" {
		p.Env = keys.Production
	}
	if p.Prefix == "" {
		p.Prefix = "sk"
	}
	k, _, err := s.Create(h.ctx, p)
	if err != nil {
		h.Fatalf("create %q: %v", p.Name, err)
	}
	return k
}
