package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/keyctl/keyctl/apikey"
	"github.com/keyctl/keyctl/store/keys"
)

func testCreate(h *H) {
	exp := Epoch.Add(48 * time.Hour)
	k, secret := h.create(keys.CreateParams{
		Name: "billing", Description: "billing service", Scopes: []string{"sdk", "proxy", "sdk"},
		ExpiresAt: &exp, AllowedIPs: []string{"10.0.0.0/8", "::1"}, Quota: ptr(int64(5)),
		RateLimit: &keys.RateLimit{Count: 100, Unit: "minute"}, Metadata: map[string]string{"team": "pay"},
	})
	tok, err := apikey.Parse(secret)
	if err != nil || !strings.HasPrefix(secret, "sk_live_") {
		h.Fatalf("secret %q: %v", secret, err)
	}
	if k.Start != tok.Start() || !strings.HasPrefix(secret, k.Start) {
		h.Errorf("start %q is not the secret's start", k.Start)
	}
	want := keys.Key{ID: k.ID, Name: "billing", Description: "billing service", Start: k.Start, Prefix: "sk",
		Scopes: []string{"proxy", "sdk"}, Env: keys.Production, Status: keys.Active, ExpiresAt: &exp,
		AllowedIPs: []string{"10.0.0.0/8", "::1"}, Quota: ptr(int64(5)), QuotaRemaining: ptr(int64(5)),
		RateLimit: &keys.RateLimit{Count: 100, Unit: "minute"}, Metadata: map[string]string{"team": "pay"},
		CreatedAt: Epoch, UpdatedAt: Epoch, CreatedBy: k.CreatedBy}
	sameKey(h, "created", k, &want)
	if !strings.HasPrefix(k.ID, "key_") || k.CreatedBy == "" {
		h.Errorf("id %q, created_by %q", k.ID, k.CreatedBy)
	}
	for _, s := range []string{k.ID, "billing"} {
		sameKey(h, "get "+s, h.get(h.B, s), &want)
	}

	// A name is generated when none is given; development keys are test keys.
	g, secret := h.create(keys.CreateParams{Env: keys.Development})
	if keys.ValidateName(g.Name) != nil || !strings.HasPrefix(secret, "sk_test_") || g.Env != keys.Development {
		h.Fatalf("generated %q (%s), secret %q", g.Name, g.Env, secret)
	}
	if len(g.Scopes) != 0 || g.Scopes == nil || g.Metadata == nil || g.AllowedIPs == nil || g.Quota != nil || g.RateLimit != nil {
		h.Errorf("a key without settings: %+v", g)
	}
}

// sameKey compares the stored fields of two keys.
func sameKey(h *H, what string, got, want *keys.Key) {
	h.Helper()
	eqInt := func(a, b *int64) bool { return a == nil && b == nil || a != nil && b != nil && *a == *b }
	eqRate := func(a, b *keys.RateLimit) bool { return a == nil && b == nil || a != nil && b != nil && *a == *b }
	ok := got.ID == want.ID && got.Name == want.Name && got.Description == want.Description &&
		got.Start == want.Start && got.Prefix == want.Prefix && slices.Equal(got.Scopes, want.Scopes) &&
		got.Env == want.Env && got.Status == want.Status && eqTime(got.ExpiresAt, want.ExpiresAt) &&
		slices.Equal(got.AllowedIPs, want.AllowedIPs) && eqInt(got.Quota, want.Quota) &&
		eqInt(got.QuotaRemaining, want.QuotaRemaining) && eqRate(got.RateLimit, want.RateLimit) &&
		len(got.Metadata) == len(want.Metadata) && got.CreatedAt.Equal(want.CreatedAt) &&
		got.UpdatedAt.Equal(want.UpdatedAt) && got.CreatedBy == want.CreatedBy &&
		eqTime(got.RotatedAt, want.RotatedAt) && eqTime(got.RevokedAt, want.RevokedAt) && got.RevokeReason == want.RevokeReason
	for k, v := range want.Metadata {
		ok = ok && got.Metadata[k] == v
	}
	if !ok {
		h.Fatalf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func testCreateInvalid(h *H) {
	before := len(h.audit(keys.AuditFilter{}))
	bad := []keys.CreateParams{
		{Name: "-dash-first"},
		{Name: strings.Repeat("n", 65)},
		{Name: "has space"},
		{Env: "moon"},
		{Prefix: "Bad Prefix"},
		{Scopes: []string{"bad scope"}},
		{Scopes: []string{""}},
		{Name: "key_4f3GhT9kLmNpQr2s"},                           // looks like an id
		{Name: "sk_live_AbCd1234efGH5678ijKL9012mnOP34562CohsL"}, // looks like a secret
		{AllowedIPs: []string{"not-an-ip"}},
		{Quota: ptr(int64(-1))},
		{RateLimit: &keys.RateLimit{Count: 0, Unit: "second"}},
		{RateLimit: &keys.RateLimit{Count: 5, Unit: "fortnight"}},
		{RateLimit: &keys.RateLimit{Count: keys.MaxRateCount + 1, Unit: "second"}},
		{Metadata: map[string]string{"a=b": "c"}},
		// Every stored field is bounded.
		{Description: strings.Repeat("d", keys.MaxDescriptionLen+1)},
		{Scopes: manyOf("s", keys.MaxScopes+1)},
		{AllowedIPs: manyIPs(keys.MaxAllowedIPs + 1)},
		{Metadata: map[string]string{strings.Repeat("k", keys.MaxMetaKeyLen+1): "v"}},
		{Metadata: map[string]string{"k": strings.Repeat("v", keys.MaxMetaValueLen+1)}},
		{Metadata: manyMeta(keys.MaxMetadata + 1)},
		{ExpiresAt: ptr(Epoch.Add(-time.Second))}, // in the past
	}
	for _, p := range bad {
		if p.Env == "" {
			p.Env = keys.Production
		}
		if p.Prefix == "" {
			p.Prefix = "sk"
		}
		_, secret, err := h.A.Create(h.ctx, p)
		h.wantErr("create "+strings.TrimSpace(strings.ReplaceAll(fmtParams(p), "\n", " ")), err, keys.ErrInvalid)
		if secret != "" {
			h.Errorf("a refused create returned a secret")
		}
	}
	if n := len(h.audit(keys.AuditFilter{})); n != before {
		h.Fatalf("refused creates left %d audit entries", n-before)
	}
	all, err := h.A.List(h.ctx, keys.ListFilter{All: true})
	if err != nil {
		h.Fatal(err)
	}
	for _, k := range all {
		if k.Name == "has space" || k.Env == "moon" {
			h.Fatalf("a refused create left key %+v", k)
		}
	}
}

func fmtParams(p keys.CreateParams) string {
	return strings.Join([]string{p.Name, string(p.Env), p.Prefix, strings.Join(p.Scopes, ","), strings.Join(p.AllowedIPs, ",")}, " ")
}

func testCreateNameInUse(h *H) {
	first, _ := h.create(keys.CreateParams{Name: "dup"})
	_, secret, err := h.B.Create(h.ctx, keys.CreateParams{Name: "dup", Env: keys.Production, Prefix: "sk"})
	h.wantErr("a second live key named dup", err, keys.ErrConflict)
	if secret != "" {
		h.Fatal("a refused create returned a secret")
	}
	// A disabled key keeps its name; a revoked one frees it.
	if _, err := h.A.SetDisabled(h.ctx, "dup", true); err != nil {
		h.Fatal(err)
	}
	_, _, err = h.B.Create(h.ctx, keys.CreateParams{Name: "dup", Env: keys.Production, Prefix: "sk"})
	h.wantErr("a name held by a disabled key", err, keys.ErrConflict)
	if _, err := h.A.Revoke(h.ctx, "dup", "reissued"); err != nil {
		h.Fatal(err)
	}
	second, _ := h.create(keys.CreateParams{Name: "dup"})
	if second.ID == first.ID {
		h.Fatal("the new key has the revoked key's id")
	}
	if got := h.get(h.B, "dup"); got.ID != second.ID {
		h.Fatalf("dup names %s, want the live key %s", got.ID, second.ID)
	}
	if got := h.get(h.B, first.ID); got.Status != keys.Revoked {
		h.Fatalf("the revoked key by id: %s", got.Status)
	}
}

func testGetAndNames(h *H) {
	_, err := h.A.Get(h.ctx, "nobody")
	h.wantErr("get an unknown name", err, keys.ErrNotFound)
	_, err = h.B.Get(h.ctx, "key_0000000000000000")
	h.wantErr("get an unknown id", err, keys.ErrNotFound)

	// A name is the live key of that name, else the one revoked most
	// recently.
	old, _ := h.create(keys.CreateParams{Name: "svc"})
	h.Clock.Advance(time.Second)
	if _, err := h.A.Revoke(h.ctx, "svc", "one"); err != nil {
		h.Fatal(err)
	}
	newer, _ := h.create(keys.CreateParams{Name: "svc"})
	h.Clock.Advance(time.Second)
	if _, err := h.A.Revoke(h.ctx, "svc", "two"); err != nil {
		h.Fatal(err)
	}
	if got := h.get(h.B, "svc"); got.ID != newer.ID {
		h.Fatalf("svc names %s, want the one revoked last, %s", got.ID, newer.ID)
	}
	live, _ := h.create(keys.CreateParams{Name: "svc"})
	if got := h.get(h.B, "svc"); got.ID != live.ID {
		h.Fatalf("svc names %s, want the live key %s", got.ID, live.ID)
	}
	if got := h.get(h.B, old.ID); got.Name != "svc" || got.RevokeReason != "one" {
		h.Fatalf("by id: %+v", got)
	}
	// A name shaped like a key id would make a KEY argument ambiguous: it
	// is refused, and the key keeps its name.
	other, _ := h.create(keys.CreateParams{Name: "other"})
	if _, err := h.A.Update(h.ctx, "other", keys.UpdateParams{Name: ptr(live.ID)}); !errors.Is(err, keys.ErrInvalid) {
		h.Fatalf("name a key like another's id: %v, want ErrInvalid", err)
	}
	if got := h.get(h.B, other.ID); got.Name != "other" {
		h.Fatalf("a refused rename changed the key: %+v", got)
	}
}

func testFind(h *H) {
	k, secret := h.create(keys.CreateParams{Name: "f"})
	got, err := h.B.Find(h.ctx, secret)
	if err != nil || got.ID != k.ID {
		h.Fatalf("find: %v, %v", got, err)
	}
	if got.UsageCount != 0 {
		h.Fatalf("find recorded a use: %d", got.UsageCount)
	}
	_, rotated, err := h.A.Rotate(h.ctx, "f", time.Hour)
	if err != nil {
		h.Fatal(err)
	}
	for _, s := range []string{secret, rotated} {
		if got, err := h.B.Find(h.ctx, s); err != nil || got.ID != k.ID {
			h.Fatalf("find a current or earlier secret: %v, %v", got, err)
		}
	}
	if _, err := h.A.Revoke(h.ctx, "f", ""); err != nil {
		h.Fatal(err)
	}
	if got, err := h.B.Find(h.ctx, rotated); err != nil || got.Status != keys.Revoked {
		h.Fatalf("find a revoked key's secret: %v, %v", got, err)
	}
	_, err = h.B.Find(h.ctx, apikeyNew(h))
	h.wantErr("find an unknown token", err, keys.ErrNotFound)
	_, err = h.B.Find(h.ctx, "sk_live_notakey")
	h.wantErr("find a malformed token", err, keys.ErrInvalid)
}

// apikeyNew is a well-formed token no store has.
func apikeyNew(h *H) string {
	tok, err := apikey.New("sk", "live")
	if err != nil {
		h.Fatal(err)
	}
	return tok.String()
}

func testList(h *H) {
	mk := func(name string, env keys.Env, scopes ...string) *keys.Key {
		k, _ := h.create(keys.CreateParams{Name: name, Env: env, Scopes: scopes})
		h.Clock.Advance(time.Second)
		return k
	}
	a := mk("a", keys.Production, "sdk")
	b := mk("b", keys.Staging, "sdk", "proxy")
	c := mk("c", keys.Production, "proxy")
	d := mk("d", keys.Development)
	e := mk("e", keys.Production, "sdk")
	if _, err := h.A.SetDisabled(h.ctx, "d", true); err != nil {
		h.Fatal(err)
	}
	if _, err := h.A.Revoke(h.ctx, "e", ""); err != nil {
		h.Fatal(err)
	}
	ids := func(f keys.ListFilter) []string {
		h.Helper()
		got, err := h.B.List(h.ctx, f)
		if err != nil {
			h.Fatalf("list %+v: %v", f, err)
		}
		mine := map[string]bool{a.ID: true, b.ID: true, c.ID: true, d.ID: true, e.ID: true}
		var out []string
		for _, k := range got {
			if mine[k.ID] {
				out = append(out, k.Name)
			}
		}
		return out
	}
	for _, tc := range []struct {
		f    keys.ListFilter
		want string
	}{
		{keys.ListFilter{}, "d c b a"},
		{keys.ListFilter{All: true}, "e d c b a"},
		{keys.ListFilter{Env: keys.Production}, "c a"},
		{keys.ListFilter{Env: keys.Production, All: true}, "e c a"},
		{keys.ListFilter{Scope: "sdk"}, "b a"},
		{keys.ListFilter{Scope: "proxy", Env: keys.Staging}, "b"},
		{keys.ListFilter{Status: keys.Disabled}, "d"},
		{keys.ListFilter{Status: keys.Revoked}, "e"},
		{keys.ListFilter{Status: keys.Active}, "c b a"},
		{keys.ListFilter{Scope: "none"}, ""},
	} {
		if got := strings.Join(ids(tc.f), " "); got != tc.want {
			h.Errorf("list %+v: %q, want %q (newest first)", tc.f, got, tc.want)
		}
	}
}

func testListTimeFilters(h *H) {
	exp := Epoch.Add(time.Hour)
	soon, _ := h.create(keys.CreateParams{Name: "soon", ExpiresAt: &exp})
	_, usedSecret := h.create(keys.CreateParams{Name: "used"})
	h.create(keys.CreateParams{Name: "idle"})
	names := func(f keys.ListFilter) string {
		h.Helper()
		got, err := h.B.List(h.ctx, f)
		if err != nil {
			h.Fatal(err)
		}
		var out []string
		for _, k := range got {
			if k.Name == "soon" || k.Name == "used" || k.Name == "idle" {
				out = append(out, k.Name)
			}
		}
		slices.Sort(out)
		return strings.Join(out, " ")
	}
	// Expiring: expires after now and within the window, both ends exact.
	if got := names(keys.ListFilter{Expiring: time.Hour}); got != "soon" {
		h.Errorf("expiring within 1h: %q", got)
	}
	if got := names(keys.ListFilter{Expiring: time.Hour - time.Second}); got != "" {
		h.Errorf("expiring within 59m59s: %q", got)
	}
	h.Clock.Advance(30 * time.Minute)
	if code := h.code(usedSecret); code != keys.Valid {
		h.Fatalf("verify: %s", code)
	}
	h.settle()
	h.Clock.Advance(30 * time.Minute)
	if got := names(keys.ListFilter{Expiring: time.Hour}); got != "" {
		h.Errorf("an expired key is not expiring: %q", got)
	}
	if got := names(keys.ListFilter{Status: keys.Expired}); got != "soon" {
		h.Errorf("status expired: %q", got)
	}
	if k := h.get(h.B, soon.ID); k.Status != keys.Expired {
		h.Errorf("a key at its expiry reads %s", k.Status)
	}
	// Unused: neither used nor created within the window, both ends exact.
	if got := names(keys.ListFilter{Unused: time.Hour}); got != "idle soon" {
		h.Errorf("unused for 1h: %q", got)
	}
	if got := names(keys.ListFilter{Unused: time.Hour + time.Second}); got != "" {
		h.Errorf("unused for 1h1s: %q", got)
	}
	if got := names(keys.ListFilter{Unused: 30 * time.Minute}); got != "idle soon used" {
		h.Errorf("unused for 30m: %q", got)
	}
}

func testUpdate(h *H) {
	k, secret := h.create(keys.CreateParams{Name: "u", Scopes: []string{"a", "b"}, AllowedIPs: []string{"10.0.0.1"},
		Metadata: map[string]string{"keep": "1", "drop": "2"}, Quota: ptr(int64(3))})
	h.Clock.Advance(time.Minute)
	exp := Epoch.Add(24 * time.Hour)
	got, err := h.B.Update(h.ctx, "u", keys.UpdateParams{
		Name: ptr("u2"), Description: ptr("new"), AddScopes: []string{"c", "a"}, RemoveScopes: []string{"b"},
		ExpiresAt: &exp, AddIPs: []string{"192.0.2.0/24"}, RemoveIPs: []string{"10.0.0.1"},
		Quota: ptr(int64(10)), RateLimit: &keys.RateLimit{Count: 5, Unit: "hour"},
		SetMeta: map[string]string{"new": "3"}, RemoveMeta: []string{"drop"},
	})
	if err != nil {
		h.Fatal(err)
	}
	want := *k
	want.Name, want.Description, want.Scopes, want.ExpiresAt = "u2", "new", []string{"a", "c"}, &exp
	want.AllowedIPs, want.Quota, want.QuotaRemaining = []string{"192.0.2.0/24"}, ptr(int64(10)), ptr(int64(10))
	want.RateLimit, want.Metadata = &keys.RateLimit{Count: 5, Unit: "hour"}, map[string]string{"keep": "1", "new": "3"}
	want.UpdatedAt = Epoch.Add(time.Minute)
	sameKey(h, "updated", got, &want)
	sameKey(h, "read back", h.get(h.A, k.ID), &want)
	if _, err := h.A.Get(h.ctx, "u"); err == nil {
		h.Error("the old name still resolves")
	}
	// Clearing: expiry, quota, rate limit.
	got, err = h.A.Update(h.ctx, "u2", keys.UpdateParams{ClearExpiry: true, ClearQuota: true, ClearRateLimit: true})
	if err != nil {
		h.Fatal(err)
	}
	if got.ExpiresAt != nil || got.Quota != nil || got.QuotaRemaining != nil || got.RateLimit != nil {
		h.Fatalf("cleared: %+v", got)
	}
	// The secret is the same one, and the key is who it was.
	if res := h.verify(h.B, keys.VerifyRequest{Token: secret, Scopes: []string{"c"}, IP: mustAddr("192.0.2.200"), Cost: 1}); res.Code != keys.Valid || res.Key.ID != k.ID {
		h.Fatalf("after update: %s %s", res.Code, res.Reason)
	}
	// Renaming a key to its own name is no conflict.
	if _, err := h.B.Update(h.ctx, "u2", keys.UpdateParams{Name: ptr("u2")}); err != nil {
		h.Fatalf("rename to its own name: %v", err)
	}
}

func testUpdateErrors(h *H) {
	h.create(keys.CreateParams{Name: "x"})
	h.create(keys.CreateParams{Name: "y"})
	before := len(h.audit(keys.AuditFilter{}))
	_, err := h.B.Update(h.ctx, "x", keys.UpdateParams{Name: ptr("y")})
	h.wantErr("rename onto a live key's name", err, keys.ErrConflict)
	_, err = h.B.Update(h.ctx, "nobody", keys.UpdateParams{Description: ptr("d")})
	h.wantErr("update an unknown key", err, keys.ErrNotFound)
	for _, p := range []keys.UpdateParams{
		{Name: ptr("bad name")}, {AddScopes: []string{"bad scope"}}, {AddIPs: []string{"10.0.0.300"}},
		{Quota: ptr(int64(-5))}, {RateLimit: &keys.RateLimit{Count: -1, Unit: "second"}},
		{SetMeta: map[string]string{"": "v"}},
	} {
		_, err = h.B.Update(h.ctx, "x", p)
		h.wantErr("an invalid update", err, keys.ErrInvalid)
	}
	if n := len(h.audit(keys.AuditFilter{})); n != before {
		h.Fatalf("refused updates left %d audit entries", n-before)
	}
	if k := h.get(h.A, "x"); k.Name != "x" || len(k.Scopes) != 0 {
		h.Fatalf("a refused update changed the key: %+v", k)
	}
	// An update that changes nothing leaves no audit entry.
	if _, err := h.B.Update(h.ctx, "x", keys.UpdateParams{Description: ptr("")}); err != nil {
		h.Fatal(err)
	}
	if n := len(h.audit(keys.AuditFilter{})); n != before {
		h.Fatalf("an update that changed nothing was audited")
	}
	if _, err := h.A.Revoke(h.ctx, "x", ""); err != nil {
		h.Fatal(err)
	}
	_, err = h.B.Update(h.ctx, "x", keys.UpdateParams{Description: ptr("d")})
	h.wantErr("update a revoked key", err, keys.ErrRevoked)
}

func testRotate(h *H) {
	k, old := h.create(keys.CreateParams{Name: "r", Scopes: []string{"sdk"}, Quota: ptr(int64(100))})
	if h.code(old) != keys.Valid {
		h.Fatal("the first secret does not verify")
	}
	h.settle()
	h.Clock.Advance(time.Minute)
	rotatedAt := h.Clock.Now()
	got, secret, err := h.B.Rotate(h.ctx, "r", time.Hour)
	if err != nil {
		h.Fatal(err)
	}
	if secret == old || !strings.HasPrefix(secret, "sk_live_") || got.Start == k.Start || !strings.HasPrefix(secret, got.Start) {
		h.Fatalf("rotated: secret %q, start %q", secret, got.Start)
	}
	// Identity, settings and usage are kept.
	if got.ID != k.ID || got.Name != "r" || !slices.Equal(got.Scopes, k.Scopes) || *got.QuotaRemaining != 99 ||
		got.UsageCount != 1 || !got.CreatedAt.Equal(k.CreatedAt) || got.RotatedAt == nil || !got.RotatedAt.Equal(rotatedAt) {
		h.Fatalf("rotated key: %+v", got)
	}
	// Both secrets work during the grace period, up to its last second.
	h.Clock.Advance(time.Hour - time.Second)
	if h.code(old) != keys.Valid || h.code(secret) != keys.Valid {
		h.Fatal("a secret fails within the grace period")
	}
	h.Clock.Advance(time.Second)
	if res := h.verify(h.B, keys.VerifyRequest{Token: old, Cost: 1}); res.Code != keys.CodeRevoked || res.Key.ID != k.ID {
		h.Fatalf("the old secret at the end of its grace: %s", res.Code)
	}
	if h.code(secret) != keys.Valid {
		h.Fatal("the new secret fails")
	}
	// Without grace, the old secret stops at once.
	_, third, err := h.A.Rotate(h.ctx, k.ID, 0)
	if err != nil {
		h.Fatal(err)
	}
	if h.code(secret) != keys.CodeRevoked || h.code(third) != keys.Valid {
		h.Fatal("rotation without grace")
	}
	_, _, err = h.A.Rotate(h.ctx, "r", -time.Second)
	h.wantErr("a negative grace", err, keys.ErrInvalid)
	_, _, err = h.A.Rotate(h.ctx, "nobody", 0)
	h.wantErr("rotate an unknown key", err, keys.ErrNotFound)
	if _, err := h.A.Revoke(h.ctx, "r", ""); err != nil {
		h.Fatal(err)
	}
	_, s, err := h.B.Rotate(h.ctx, "r", 0)
	h.wantErr("rotate a revoked key", err, keys.ErrRevoked)
	if s != "" {
		h.Fatal("a refused rotation returned a secret")
	}
	if h.code(third) != keys.CodeRevoked {
		h.Fatal("a revoked key's secret verifies")
	}
}

func testRotateGraceOverlap(h *H) {
	_, first := h.create(keys.CreateParams{Name: "g"})
	_, second, err := h.A.Rotate(h.ctx, "g", 2*time.Hour)
	if err != nil {
		h.Fatal(err)
	}
	// A second rotation's grace ends every older secret's no later than
	// its own; it never extends one.
	_, third, err := h.B.Rotate(h.ctx, "g", time.Hour)
	if err != nil {
		h.Fatal(err)
	}
	h.Clock.Advance(time.Hour - time.Second)
	if h.code(first) != keys.Valid || h.code(second) != keys.Valid || h.code(third) != keys.Valid {
		h.Fatal("a secret fails within the grace")
	}
	h.Clock.Advance(time.Second)
	if h.code(first) != keys.CodeRevoked || h.code(second) != keys.CodeRevoked || h.code(third) != keys.Valid {
		h.Fatal("the shorter grace does not end the older secrets")
	}
	_, fourth, err := h.A.Rotate(h.ctx, "g", 3*time.Hour)
	if err != nil {
		h.Fatal(err)
	}
	h.Clock.Advance(3 * time.Hour)
	if h.code(first) != keys.CodeRevoked || h.code(third) != keys.CodeRevoked || h.code(fourth) != keys.Valid {
		h.Fatal("a longer grace revived an ended secret, or did not end")
	}
}

func testDisableEnable(h *H) {
	_, secret := h.create(keys.CreateParams{Name: "d"})
	before := len(h.audit(keys.AuditFilter{}))
	got, err := h.B.SetDisabled(h.ctx, "d", true)
	if err != nil || got.Status != keys.Disabled {
		h.Fatalf("disable: %v, %v", got, err)
	}
	if h.code(secret) != keys.CodeDisabled {
		h.Fatal("a disabled key verifies")
	}
	// Asking for the state a key is in changes nothing.
	if got, err = h.A.SetDisabled(h.ctx, "d", true); err != nil || got.Status != keys.Disabled {
		h.Fatalf("disable again: %v, %v", got, err)
	}
	if got, err = h.B.SetDisabled(h.ctx, "d", false); err != nil || got.Status != keys.Active {
		h.Fatalf("enable: %v, %v", got, err)
	}
	if got, err = h.A.SetDisabled(h.ctx, "d", false); err != nil || got.Status != keys.Active {
		h.Fatalf("enable again: %v, %v", got, err)
	}
	if h.code(secret) != keys.Valid {
		h.Fatal("an enabled key fails")
	}
	var actions []string
	for _, e := range h.audit(keys.AuditFilter{})[before:] {
		actions = append(actions, e.Action)
	}
	if got := strings.Join(actions, " "); got != "disable enable" {
		h.Fatalf("audited %q, want \"disable enable\"", got)
	}
	_, err = h.A.SetDisabled(h.ctx, "nobody", true)
	h.wantErr("disable an unknown key", err, keys.ErrNotFound)
	if _, err := h.A.Revoke(h.ctx, "d", ""); err != nil {
		h.Fatal(err)
	}
	for _, disabled := range []bool{true, false} {
		_, err = h.B.SetDisabled(h.ctx, "d", disabled)
		h.wantErr("disable or enable a revoked key", err, keys.ErrRevoked)
	}
}

func testRevoke(h *H) {
	k, secret := h.create(keys.CreateParams{Name: "v"})
	h.Clock.Advance(time.Minute)
	got, err := h.B.Revoke(h.ctx, "v", "leaked in a log")
	if err != nil {
		h.Fatal(err)
	}
	at := Epoch.Add(time.Minute)
	if got.Status != keys.Revoked || got.RevokedAt == nil || !got.RevokedAt.Equal(at) || got.RevokeReason != "leaked in a log" {
		h.Fatalf("revoked: %+v", got)
	}
	res := h.verify(h.A, keys.VerifyRequest{Token: secret, Cost: 1})
	if res.Code != keys.CodeRevoked || !strings.Contains(res.Reason, "leaked in a log") || res.Key == nil || res.Key.ID != k.ID {
		h.Fatalf("verify a revoked key: %+v", res)
	}
	// Revoking again returns the key as it is, and records nothing.
	before := len(h.audit(keys.AuditFilter{}))
	h.Clock.Advance(time.Minute)
	again, err := h.A.Revoke(h.ctx, k.ID, "another reason")
	if err != nil || again.RevokeReason != "leaked in a log" || !again.RevokedAt.Equal(at) {
		h.Fatalf("revoke again: %+v, %v", again, err)
	}
	if n := len(h.audit(keys.AuditFilter{})); n != before {
		h.Fatal("revoking a revoked key was audited")
	}
	_, err = h.A.Revoke(h.ctx, "nobody", "")
	h.wantErr("revoke an unknown key", err, keys.ErrNotFound)
	// Permanent: nothing brings it back, even after its name is reused.
	h.create(keys.CreateParams{Name: "v"})
	for what, err := range map[string]error{
		"enable":  second(h.A.SetDisabled(h.ctx, k.ID, false)),
		"update":  second(h.A.Update(h.ctx, k.ID, keys.UpdateParams{Description: ptr("x")})),
		"rotate":  third(h.A.Rotate(h.ctx, k.ID, 0)),
		"disable": second(h.A.SetDisabled(h.ctx, k.ID, true)),
	} {
		h.wantErr(what+" a revoked key", err, keys.ErrRevoked)
	}
	if h.code(secret) != keys.CodeRevoked {
		h.Fatal("a revoked key verifies")
	}
}

func second[T any](_ T, err error) error        { return err }
func third[T, U any](_ T, _ U, err error) error { return err }

func manyOf(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return out
}

func manyIPs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("10.0.%d.%d", i/250, i%250+1)
	}
	return out
}

func manyMeta(n int) map[string]string {
	out := map[string]string{}
	for i := range n {
		out[fmt.Sprintf("k%d", i)] = "v"
	}
	return out
}

func eqTime(a, b *time.Time) bool { return a == nil && b == nil || a != nil && b != nil && a.Equal(*b) }

// testNormalizes: a key's settings are stored as the command line's flags
// would give them, whoever sends them: environment aliases resolved,
// scopes and addresses sorted, deduplicated and canonical, the rate
// limit's unit spelled out, the expiry in whole seconds.
func testNormalizes(h *H) {
	exp := Epoch.Add(time.Hour + 300*time.Millisecond)
	k, _ := h.create(keys.CreateParams{Name: "n", Env: "prod", Scopes: []string{"b", "a", "b"},
		AllowedIPs: []string{"10.0.0.1/8", "::ffff:192.0.2.1", "10.0.0.0/8"}, ExpiresAt: &exp,
		RateLimit: &keys.RateLimit{Count: 5, Unit: "s"}})
	wantExp := Epoch.Add(time.Hour)
	if k.Env != keys.Production || !slices.Equal(k.Scopes, []string{"a", "b"}) ||
		!slices.Equal(k.AllowedIPs, []string{"10.0.0.0/8", "192.0.2.1"}) || !eqTime(k.ExpiresAt, &wantExp) ||
		k.RateLimit == nil || *k.RateLimit != (keys.RateLimit{Count: 5, Unit: "second"}) {
		h.Fatalf("created: %+v", k)
	}
	got, err := h.B.Update(h.ctx, "n", keys.UpdateParams{AddIPs: []string{"172.16.5.4/12"}, RateLimit: &keys.RateLimit{Count: 2, Unit: "M"}})
	if err != nil || !slices.Contains(got.AllowedIPs, "172.16.0.0/12") || *got.RateLimit != (keys.RateLimit{Count: 2, Unit: "minute"}) {
		h.Fatalf("updated: %+v, %v", got, err)
	}
	sameKey(h, "read back", h.get(h.A, "n"), got)
	_, err = h.A.Update(h.ctx, "n", keys.UpdateParams{AddScopes: manyOf("s", keys.MaxScopes)})
	h.wantErr("an update past the scope limit", err, keys.ErrInvalid)
}
