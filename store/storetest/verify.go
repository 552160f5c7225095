package storetest

import (
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/keyctl/keyctl/store/keys"
)

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// testVerifyCodes checks that each code of the check order reaches the
// caller through the store, with the key for every found one.
func testVerifyCodes(h *H) {
	exp := Epoch.Add(time.Hour)
	_, valid := h.create(keys.CreateParams{Name: "valid", Scopes: []string{"sdk"}})
	_, revoked := h.create(keys.CreateParams{Name: "revoked"})
	_, disabled := h.create(keys.CreateParams{Name: "disabled"})
	_, expired := h.create(keys.CreateParams{Name: "expired", ExpiresAt: &exp})
	_, staging := h.create(keys.CreateParams{Name: "staging", Env: keys.Staging})
	_, listed := h.create(keys.CreateParams{Name: "listed", AllowedIPs: []string{"192.0.2.0/24"}})
	_, limited := h.create(keys.CreateParams{Name: "limited", RateLimit: &keys.RateLimit{Count: 1, Unit: "hour"}})
	_, quota := h.create(keys.CreateParams{Name: "quota", Quota: ptr(int64(0))})
	if _, err := h.A.Revoke(h.ctx, "revoked", "gone"); err != nil {
		h.Fatal(err)
	}
	if _, err := h.A.SetDisabled(h.ctx, "disabled", true); err != nil {
		h.Fatal(err)
	}
	if h.code(limited) != keys.Valid {
		h.Fatal("the rate limit's first call")
	}
	h.Clock.Advance(time.Hour)
	req := func(tok string) keys.VerifyRequest { return keys.VerifyRequest{Token: tok, Cost: 1} }
	cases := []struct {
		name string
		req  keys.VerifyRequest
		code keys.Code
		key  string // the name of the key the result carries; "" for none
	}{
		{"valid", keys.VerifyRequest{Token: valid, Scopes: []string{"sdk"}, Env: keys.Production, IP: mustAddr("198.51.100.7"), Cost: 1}, keys.Valid, "valid"},
		{"malformed", req("sk_live_nope"), keys.Malformed, ""},
		{"not a token at all", req("hello"), keys.Malformed, ""},
		{"a checksum that does not hold", req(valid[:len(valid)-1] + flip(valid[len(valid)-1])), keys.Malformed, ""},
		{"not found", req(apikeyNew(h)), keys.NotFound, ""},
		{"revoked", req(revoked), keys.CodeRevoked, "revoked"},
		{"disabled", req(disabled), keys.CodeDisabled, "disabled"},
		{"expired", req(expired), keys.CodeExpired, "expired"},
		{"wrong environment", keys.VerifyRequest{Token: staging, Env: keys.Production, Cost: 1}, keys.Forbidden, "staging"},
		{"address not listed", keys.VerifyRequest{Token: listed, IP: mustAddr("192.0.3.1"), Cost: 1}, keys.Forbidden, "listed"},
		{"no address given", req(listed), keys.Forbidden, "listed"},
		{"IPv4-mapped address", keys.VerifyRequest{Token: listed, IP: mustAddr("::ffff:192.0.2.9"), Cost: 1}, keys.Valid, "listed"},
		{"missing scope", keys.VerifyRequest{Token: valid, Scopes: []string{"sdk", "admin"}, Cost: 1}, keys.Forbidden, "valid"},
		{"rate limited", req(limited), keys.Valid, "limited"},
		{"rate limited again", req(limited), keys.RateLimited, "limited"},
		{"quota exceeded", req(quota), keys.QuotaExceeded, "quota"},
	}
	for i, c := range cases {
		res := h.verify(h.handle(i), c.req)
		if res.Code != c.code || res.Valid != (c.code == keys.Valid) || res.HTTPStatus != c.code.HTTPStatus() || res.Reason == "" {
			h.Errorf("%s: %+v, want %s", c.name, res, c.code)
			continue
		}
		if c.key == "" && res.Key != nil || c.key != "" && (res.Key == nil || res.Key.Name != c.key) {
			h.Errorf("%s: the result's key is %+v, want %q", c.name, res.Key, c.key)
		}
		if (res.Code == keys.RateLimited) != (res.RetryAt != nil) {
			h.Errorf("%s: retry_at %v", c.name, res.RetryAt)
		}
	}
	if _, err := h.A.Verify(h.ctx, keys.VerifyRequest{Token: valid, Cost: -1}); err == nil {
		h.Error("a negative cost was decided")
	} else {
		h.wantErr("a negative cost", err, keys.ErrInvalid)
	}
}

// flip changes a token's last character to another of the alphabet.
func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

// testVerifyBoundaries moves the clock to the exact instants where an
// expiry, a grace period and a rate limit's window turn.
func testVerifyBoundaries(h *H) {
	exp := Epoch.Add(time.Hour)
	_, expiring := h.create(keys.CreateParams{Name: "expiring", ExpiresAt: &exp})
	_, old := h.create(keys.CreateParams{Name: "rotated"})
	if _, _, err := h.A.Rotate(h.ctx, "rotated", time.Hour); err != nil {
		h.Fatal(err)
	}
	_, limited := h.create(keys.CreateParams{Name: "limited", RateLimit: &keys.RateLimit{Count: 2, Unit: "minute"}})
	for range 2 {
		if h.code(limited) != keys.Valid {
			h.Fatal("the burst")
		}
	}
	res := h.verify(h.B, keys.VerifyRequest{Token: limited, Cost: 1})
	want := Epoch.Add(30 * time.Second)
	if res.Code != keys.RateLimited || res.RetryAt == nil || !res.RetryAt.Equal(want) {
		h.Fatalf("past the burst: %s, retry at %v, want %v", res.Code, res.RetryAt, want)
	}
	h.Clock.Advance(30*time.Second - time.Nanosecond)
	if h.code(limited) != keys.RateLimited {
		h.Fatal("allowed a nanosecond before retry_at")
	}
	h.Clock.Advance(time.Nanosecond)
	if h.code(limited) != keys.Valid {
		h.Fatal("refused at retry_at")
	}
	if h.code(limited) != keys.RateLimited {
		h.Fatal("two calls at retry_at")
	}
	// A call at cost 0 checks without spending a token.
	if res := h.verify(h.B, keys.VerifyRequest{Token: limited, Cost: 0}); res.Code != keys.Valid {
		h.Fatalf("cost 0 while limited: %s", res.Code)
	}
	h.Clock.Advance(time.Hour - 30*time.Second - time.Second)
	if h.code(expiring) != keys.Valid || h.code(old) != keys.Valid {
		h.Fatal("a second before expiry and the grace's end")
	}
	h.Clock.Advance(time.Second)
	if h.code(expiring) != keys.CodeExpired {
		h.Fatal("valid at the instant of expiry")
	}
	if h.code(old) != keys.CodeRevoked {
		h.Fatal("an old secret valid at the instant its grace ends")
	}
	// After a whole window without calls the whole burst is back.
	for range 2 {
		if h.code(limited) != keys.Valid {
			h.Fatal("the burst after an idle window")
		}
	}
	if h.code(limited) != keys.RateLimited {
		h.Fatal("a burst larger than the limit")
	}
}

func testVerifySpendsOnlyWhenValid(h *H) {
	_, tok := h.create(keys.CreateParams{Name: "q", Scopes: []string{"sdk"}, Quota: ptr(int64(5)),
		RateLimit: &keys.RateLimit{Count: 3, Unit: "hour"}})
	check := func(what string, req keys.VerifyRequest, code keys.Code, left int64) {
		h.Helper()
		req.Token = tok
		res := h.verify(h.B, req)
		if res.Code != code || res.Key == nil || res.Key.QuotaRemaining == nil || *res.Key.QuotaRemaining != left {
			h.Fatalf("%s: %s (%s), quota remaining %v, want %s and %d", what, res.Code, res.Reason, res.Key, code, left)
		}
		if got := h.get(h.A, "q"); *got.QuotaRemaining != left {
			h.Fatalf("%s: stored quota remaining %d, want %d", what, *got.QuotaRemaining, left)
		}
	}
	check("a refused scope", keys.VerifyRequest{Scopes: []string{"admin"}, Cost: 1}, keys.Forbidden, 5)
	check("a refused environment", keys.VerifyRequest{Env: keys.Staging, Cost: 4}, keys.Forbidden, 5)
	check("cost 2", keys.VerifyRequest{Cost: 2}, keys.Valid, 3)
	check("cost 0", keys.VerifyRequest{Cost: 0}, keys.Valid, 3)
	check("over the quota", keys.VerifyRequest{Cost: 4}, keys.QuotaExceeded, 3)
	check("equal to the quota", keys.VerifyRequest{Cost: 3}, keys.Valid, 0)
	// Three rate tokens: cost 2 and cost 3 spent two; the refused ones none.
	check("cost 0 when spent", keys.VerifyRequest{Cost: 0}, keys.Valid, 0)
	if _, err := h.A.Update(h.ctx, "q", keys.UpdateParams{Quota: ptr(int64(10))}); err != nil {
		h.Fatal(err)
	}
	check("the third token", keys.VerifyRequest{Cost: 1}, keys.Valid, 9)
	check("no fourth token", keys.VerifyRequest{Cost: 1}, keys.RateLimited, 9)
	h.Clock.Advance(20 * time.Minute)
	check("a token back after an interval", keys.VerifyRequest{Cost: 1}, keys.Valid, 8)
}

func testVerifyRecordsUse(h *H) {
	_, tok := h.create(keys.CreateParams{Name: "u", Scopes: []string{"sdk"}})
	// The result's key counts its own use and every use written before it
	// (a handle that records in the background has written its uses once
	// flushed).
	h.Clock.Advance(time.Minute)
	h.verify(h.A, keys.VerifyRequest{Token: tok, IP: mustAddr("::ffff:198.51.100.1"), Cost: 1})
	h.settle()
	h.Clock.Advance(time.Minute)
	h.verify(h.B, keys.VerifyRequest{Token: tok, Scopes: []string{"nope"}, IP: mustAddr("2001:db8::1"), Cost: 1})
	h.settle()
	h.Clock.Advance(time.Minute)
	res := h.verify(h.A, keys.VerifyRequest{Token: tok, Cost: 0})
	if res.Key.UsageCount != 3 || res.Key.LastUsedIP != "2001:db8::1" || !res.Key.LastUsedAt.Equal(Epoch.Add(3*time.Minute)) {
		h.Fatalf("the result's key: count %d, last %v from %q", res.Key.UsageCount, res.Key.LastUsedAt, res.Key.LastUsedIP)
	}
	h.settle()
	k := h.get(h.B, "u")
	if k.UsageCount != 3 || k.LastUsedIP != "2001:db8::1" || k.LastUsedAt == nil || !k.LastUsedAt.Equal(Epoch.Add(3*time.Minute)) {
		h.Fatalf("stored usage: count %d, last %v from %q", k.UsageCount, k.LastUsedAt, k.LastUsedIP)
	}
	// Malformed and unknown tokens count against no key.
	h.verify(h.A, keys.VerifyRequest{Token: "sk_live_x", Cost: 1})
	h.verify(h.A, keys.VerifyRequest{Token: apikeyNew(h), Cost: 1})
	h.settle()
	if k := h.get(h.B, "u"); k.UsageCount != 3 {
		h.Fatalf("usage %d after others' verifications", k.UsageCount)
	}
}

func testUsage(h *H) {
	_, tok := h.create(keys.CreateParams{Name: "u", Scopes: []string{"sdk"}})
	_, other := h.create(keys.CreateParams{Name: "other"})
	type step struct {
		advance time.Duration
		req     keys.VerifyRequest
		code    keys.Code
	}
	steps := []step{
		{0, keys.VerifyRequest{Token: tok, IP: mustAddr("192.0.2.1"), Cost: 1}, keys.Valid},
		{time.Hour, keys.VerifyRequest{Token: tok, Scopes: []string{"x"}, Cost: 1}, keys.Forbidden},
		{24 * time.Hour, keys.VerifyRequest{Token: tok, IP: mustAddr("192.0.2.2"), Cost: 1}, keys.Valid},
		{time.Minute, keys.VerifyRequest{Token: tok, Cost: 1}, keys.Valid},
	}
	for i, s := range steps {
		h.Clock.Advance(s.advance)
		if res := h.verify(h.handle(i), s.req); res.Code != s.code {
			h.Fatalf("step %d: %s", i, res.Code)
		}
		h.verify(h.handle(i), keys.VerifyRequest{Token: other, Cost: 1})
		// Events are listed in the order they were written, newest first:
		// uses recorded in the background may be written a moment after a
		// later one, so each is written before the next is made.
		h.settle()
	}
	h.settle()
	rep, err := h.B.Usage(h.ctx, "u", keys.UsageQuery{})
	if err != nil {
		h.Fatal(err)
	}
	if rep.Key == nil || rep.Key.Name != "u" || rep.Key.UsageCount != 4 || rep.Retention == "" {
		h.Fatalf("report: %+v", rep)
	}
	var got []string
	for _, e := range rep.Events {
		got = append(got, e.At.UTC().Format("Jan 2 15:04")+" "+string(e.Code)+" "+e.IP)
	}
	want := []string{"Nov 2 13:01 VALID ", "Nov 2 13:00 VALID 192.0.2.2", "Nov 1 13:00 FORBIDDEN ", "Nov 1 12:00 VALID 192.0.2.1"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		h.Fatalf("events, newest first:\n%q\nwant\n%q", got, want)
	}
	if len(rep.Daily) != 2 || rep.Daily[0].Day != "2026-11-02" || rep.Daily[0].Total != 2 || rep.Daily[0].Codes[keys.Valid] != 2 ||
		rep.Daily[1].Day != "2026-11-01" || rep.Daily[1].Total != 2 || rep.Daily[1].Codes[keys.Forbidden] != 1 {
		h.Fatalf("daily: %+v", rep.Daily)
	}
	rep, err = h.A.Usage(h.ctx, "u", keys.UsageQuery{Limit: 1, Since: Epoch.Add(24 * time.Hour)})
	if err != nil {
		h.Fatal(err)
	}
	if len(rep.Events) != 1 || !rep.Events[0].At.Equal(Epoch.Add(25*time.Hour+time.Minute)) || len(rep.Daily) != 1 || rep.Daily[0].Total != 2 {
		h.Fatalf("limit 1, since a day later: %+v", rep)
	}
	_, err = h.A.Usage(h.ctx, "nobody", keys.UsageQuery{})
	h.wantErr("usage of an unknown key", err, keys.ErrNotFound)

	// Past the retention, a use is no longer listed; the count keeps it.
	retention := parseRetention(h, rep.Retention)
	h.Clock.Advance(Epoch.Add(24*time.Hour + retention).Sub(h.Clock.Now()))
	rep, err = h.B.Usage(h.ctx, "u", keys.UsageQuery{})
	if err != nil {
		h.Fatal(err)
	}
	if len(rep.Events) != 2 || rep.Key.UsageCount != 4 || len(rep.Daily) != 1 || rep.Daily[0].Day != "2026-11-02" {
		h.Fatalf("a retention of %s later: %d events, count %d, daily %+v", rep.Retention, len(rep.Events), rep.Key.UsageCount, rep.Daily)
	}
}

// parseRetention reads a usage report's retention, such as "30d" or "12h".
func parseRetention(h *H, s string) time.Duration {
	h.Helper()
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err == nil && n > 0 {
			return time.Duration(n) * 24 * time.Hour
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		h.Fatalf("retention %q", s)
	}
	return d
}
