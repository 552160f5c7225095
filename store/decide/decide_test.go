package decide

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/keyctl/keyctl/store/keys"
)

var now = time.Date(2026, 11, 1, 12, 0, 0, 500_000_000, time.UTC)

func ptr[T any](v T) *T { return &v }

// key is an active production key with scope sdk, changed by opts.
func key(opts ...func(*keys.Key)) *keys.Key {
	k := &keys.Key{ID: "key_1", Name: "k", Env: keys.Production, Stored: keys.Active, Status: keys.Active,
		Scopes: []string{"read", "sdk"}, AllowedIPs: []string{}, UsageCount: 7}
	for _, o := range opts {
		o(k)
	}
	return k
}

func revoked(k *keys.Key) {
	k.Stored, k.RevokedAt, k.RevokeReason = keys.Revoked, ptr(now.Add(-time.Hour)), "leaked"
}
func disabled(k *keys.Key)                  { k.Stored = keys.Disabled }
func expiresAt(t time.Time) func(*keys.Key) { return func(k *keys.Key) { k.ExpiresAt = &t } }
func env(e keys.Env) func(*keys.Key)        { return func(k *keys.Key) { k.Env = e } }
func allow(ips ...string) func(*keys.Key)   { return func(k *keys.Key) { k.AllowedIPs = ips } }
func quota(total, left int64) func(*keys.Key) {
	return func(k *keys.Key) { k.Quota, k.QuotaRemaining = &total, &left }
}
func rate(n int64, unit string) func(*keys.Key) {
	return func(k *keys.Key) { k.RateLimit = &keys.RateLimit{Count: n, Unit: unit} }
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// TestDecide covers the check order, one case per rule and per boundary:
// each case names the code it expects and a fragment of the reason.
func TestDecide(t *testing.T) {
	third := time.Second / 3 // the interval of a 3/s rate limit, in whole nanoseconds
	burstTAT := now.UnixNano() + 3*int64(third)
	cases := []struct {
		name   string
		key    *keys.Key
		ends   *time.Time // the presented secret's end of grace
		tat    int64
		req    keys.VerifyRequest
		code   keys.Code
		reason string
	}{
		{"valid", key(), nil, 0, keys.VerifyRequest{Cost: 1}, keys.Valid, "may be used"},
		{"revoked", key(revoked), nil, 0, keys.VerifyRequest{Cost: 1}, keys.CodeRevoked, "revoked at 2026-11-01T11:00:00Z: leaked"},
		{"revoked without a time or reason", key(func(k *keys.Key) { k.Stored = keys.Revoked }), nil, 0, keys.VerifyRequest{}, keys.CodeRevoked, "the key was revoked"},
		{"grace ends exactly now", key(), ptr(now), 0, keys.VerifyRequest{}, keys.CodeRevoked, "replaced by a rotation"},
		{"grace ended before now", key(), ptr(now.Add(-time.Nanosecond)), 0, keys.VerifyRequest{}, keys.CodeRevoked, "stopped working at"},
		{"grace ends a nanosecond after now", key(), ptr(now.Add(time.Nanosecond)), 0, keys.VerifyRequest{}, keys.Valid, ""},
		{"disabled", key(disabled), nil, 0, keys.VerifyRequest{}, keys.CodeDisabled, "disabled"},
		{"expires exactly now", key(expiresAt(now)), nil, 0, keys.VerifyRequest{}, keys.CodeExpired, "expired at"},
		{"expires a nanosecond after now", key(expiresAt(now.Add(time.Nanosecond))), nil, 0, keys.VerifyRequest{}, keys.Valid, ""},
		{"expired long ago", key(expiresAt(now.Add(-24 * time.Hour))), nil, 0, keys.VerifyRequest{}, keys.CodeExpired, "2026-10-31T12:00:00Z"},
		{"any environment", key(env(keys.Staging)), nil, 0, keys.VerifyRequest{}, keys.Valid, ""},
		{"the right environment", key(env(keys.Staging)), nil, 0, keys.VerifyRequest{Env: keys.Staging}, keys.Valid, ""},
		{"wrong environment", key(env(keys.Staging)), nil, 0, keys.VerifyRequest{Env: keys.Production}, keys.Forbidden, "the key is for staging, not production"},

		{"allowlist, no address given", key(allow("10.0.0.1")), nil, 0, keys.VerifyRequest{}, keys.Forbidden, "none was given"},
		{"allowlist, exact address", key(allow("10.0.0.1")), nil, 0, keys.VerifyRequest{IP: ip("10.0.0.1")}, keys.Valid, ""},
		{"allowlist, other address", key(allow("10.0.0.1")), nil, 0, keys.VerifyRequest{IP: ip("10.0.0.2")}, keys.Forbidden, "10.0.0.2 is not in the key's allowlist"},
		{"IPv4-mapped IPv6 against an address", key(allow("10.0.0.1")), nil, 0, keys.VerifyRequest{IP: ip("::ffff:10.0.0.1")}, keys.Valid, ""},
		{"IPv4-mapped IPv6 against a CIDR", key(allow("10.0.0.0/8")), nil, 0, keys.VerifyRequest{IP: ip("::ffff:10.255.255.255")}, keys.Valid, ""},
		{"IPv4-mapped IPv6 outside a CIDR", key(allow("10.0.0.0/8")), nil, 0, keys.VerifyRequest{IP: ip("::ffff:11.0.0.0")}, keys.Forbidden, "not in the key's allowlist"},
		{"CIDR first address", key(allow("192.0.2.0/24")), nil, 0, keys.VerifyRequest{IP: ip("192.0.2.0")}, keys.Valid, ""},
		{"CIDR last address", key(allow("192.0.2.0/24")), nil, 0, keys.VerifyRequest{IP: ip("192.0.2.255")}, keys.Valid, ""},
		{"CIDR one below", key(allow("192.0.2.0/24")), nil, 0, keys.VerifyRequest{IP: ip("192.0.1.255")}, keys.Forbidden, "192.0.1.255"},
		{"CIDR one above", key(allow("192.0.2.0/24")), nil, 0, keys.VerifyRequest{IP: ip("192.0.3.0")}, keys.Forbidden, "192.0.3.0"},
		{"CIDR /32", key(allow("192.0.2.7/32")), nil, 0, keys.VerifyRequest{IP: ip("192.0.2.7")}, keys.Valid, ""},
		{"CIDR /0 holds every IPv4 address", key(allow("0.0.0.0/0")), nil, 0, keys.VerifyRequest{IP: ip("203.0.113.9")}, keys.Valid, ""},
		{"an IPv4 CIDR does not hold IPv6", key(allow("0.0.0.0/0")), nil, 0, keys.VerifyRequest{IP: ip("2001:db8::1")}, keys.Forbidden, "2001:db8::1"},
		{"IPv6 CIDR first address", key(allow("2001:db8::/64")), nil, 0, keys.VerifyRequest{IP: ip("2001:db8::")}, keys.Valid, ""},
		{"IPv6 CIDR last address", key(allow("2001:db8::/64")), nil, 0, keys.VerifyRequest{IP: ip("2001:db8::ffff:ffff:ffff:ffff")}, keys.Valid, ""},
		{"IPv6 CIDR one above", key(allow("2001:db8::/64")), nil, 0, keys.VerifyRequest{IP: ip("2001:db8:0:1::")}, keys.Forbidden, ""},
		{"IPv6 address", key(allow("::1")), nil, 0, keys.VerifyRequest{IP: ip("::1")}, keys.Valid, ""},
		{"second entry of the list", key(allow("10.0.0.1", "2001:db8::/32")), nil, 0, keys.VerifyRequest{IP: ip("2001:db8:ffff::1")}, keys.Valid, ""},

		{"no scopes asked", key(), nil, 0, keys.VerifyRequest{Scopes: nil}, keys.Valid, ""},
		{"every scope held", key(), nil, 0, keys.VerifyRequest{Scopes: []string{"sdk", "read"}}, keys.Valid, ""},
		{"one scope missing", key(), nil, 0, keys.VerifyRequest{Scopes: []string{"sdk", "write"}}, keys.Forbidden, "does not hold write"},
		{"missing scopes sorted and once", key(), nil, 0, keys.VerifyRequest{Scopes: []string{"z", "a", "z"}}, keys.Forbidden, "does not hold a,z"},
		{"scopes are exact, not patterns", key(func(k *keys.Key) { k.Scopes = []string{"sdk:*"} }), nil, 0, keys.VerifyRequest{Scopes: []string{"sdk:read"}}, keys.Forbidden, "sdk:read"},

		{"rate limit, first call", key(rate(3, "second")), nil, 0, keys.VerifyRequest{Cost: 1}, keys.Valid, ""},
		{"rate limit, the burst's last call", key(rate(3, "second")), nil, burstTAT - int64(third), keys.VerifyRequest{Cost: 1}, keys.Valid, ""},
		{"rate limit, one past the burst", key(rate(3, "second")), nil, burstTAT, keys.VerifyRequest{Cost: 1}, keys.RateLimited, "rate limit 3/s exceeded"},
		{"rate limit, cost 0 spends no token", key(rate(3, "second")), nil, burstTAT, keys.VerifyRequest{Cost: 0}, keys.Valid, ""},
		{"rate limit, a state from the past", key(rate(3, "second")), nil, now.Add(-time.Hour).UnixNano(), keys.VerifyRequest{Cost: 1}, keys.Valid, ""},

		{"quota equal to the cost", key(quota(10, 3)), nil, 0, keys.VerifyRequest{Cost: 3}, keys.Valid, ""},
		{"quota one short of the cost", key(quota(10, 2)), nil, 0, keys.VerifyRequest{Cost: 3}, keys.QuotaExceeded, "2 of 10 uses remain; this call asked for 3 uses"},
		{"quota spent, cost 0", key(quota(10, 0)), nil, 0, keys.VerifyRequest{Cost: 0}, keys.Valid, ""},
		{"quota spent", key(quota(10, 0)), nil, 0, keys.VerifyRequest{Cost: 1}, keys.QuotaExceeded, "0 of 10"},
		{"quota without a total", key(func(k *keys.Key) { k.QuotaRemaining = ptr(int64(0)) }), nil, 0, keys.VerifyRequest{Cost: 1}, keys.QuotaExceeded, "0 of 0"},

		// The order: with two failures, the earlier check decides.
		{"revoked before a grace end", key(revoked), ptr(now.Add(-time.Hour)), 0, keys.VerifyRequest{}, keys.CodeRevoked, "the key was revoked"},
		{"revoked before expired", key(revoked, expiresAt(now)), nil, 0, keys.VerifyRequest{}, keys.CodeRevoked, "the key was revoked"},
		{"grace end before disabled", key(disabled), ptr(now), 0, keys.VerifyRequest{}, keys.CodeRevoked, "replaced by a rotation"},
		{"disabled before expired", key(disabled, expiresAt(now)), nil, 0, keys.VerifyRequest{}, keys.CodeDisabled, ""},
		{"expired before environment", key(expiresAt(now), env(keys.Staging)), nil, 0, keys.VerifyRequest{Env: keys.Production}, keys.CodeExpired, ""},
		{"environment before address", key(env(keys.Staging), allow("10.0.0.1")), nil, 0, keys.VerifyRequest{Env: keys.Production}, keys.Forbidden, "wrong environment"},
		{"address before scope", key(allow("10.0.0.1")), nil, 0, keys.VerifyRequest{IP: ip("10.0.0.2"), Scopes: []string{"x"}}, keys.Forbidden, "address not allowed"},
		{"scope before rate limit", key(rate(3, "second")), nil, burstTAT, keys.VerifyRequest{Cost: 1, Scopes: []string{"x"}}, keys.Forbidden, "missing scope"},
		{"rate limit before quota", key(rate(3, "second"), quota(1, 0)), nil, burstTAT, keys.VerifyRequest{Cost: 1}, keys.RateLimited, ""},
		{"scope before quota", key(quota(1, 0)), nil, 0, keys.VerifyRequest{Cost: 1, Scopes: []string{"x"}}, keys.Forbidden, "missing scope"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := *c.key
			out := Decide(State{Key: c.key, SecretEnds: c.ends, RateTAT: c.tat}, c.req, now)
			r := out.Result
			if r.Code != c.code || !strings.Contains(r.Reason, c.reason) {
				t.Fatalf("%s %q, want %s with %q", r.Code, r.Reason, c.code, c.reason)
			}
			if r.Valid != (c.code == keys.Valid) || r.HTTPStatus != c.code.HTTPStatus() || r.Key == nil || r.Key.ID != "key_1" {
				t.Errorf("derived fields: %+v", r)
			}
			if c.key.UsageCount != before.UsageCount || c.key.Status != before.Status || c.key.QuotaRemaining != before.QuotaRemaining {
				t.Errorf("Decide changed the state it was given: %+v", c.key)
			}
			// Every found key's use counts, whatever the result.
			if r.Key.UsageCount != before.UsageCount+1 || out.Use.Code != c.code || !out.Use.At.Equal(now) {
				t.Errorf("use: count %d, %+v", r.Key.UsageCount, out.Use)
			}
			if r.Code != keys.Valid && (out.Spent || out.RateTAT != c.tat || out.QuotaRemaining != c.key.QuotaRemaining) {
				t.Errorf("a refused use spent: spent %v, tat %d, quota %v", out.Spent, out.RateTAT, out.QuotaRemaining)
			}
			if r.Code == keys.RateLimited && r.RetryAt == nil || r.Code != keys.RateLimited && r.RetryAt != nil {
				t.Errorf("retry_at %v with %s", r.RetryAt, r.Code)
			}
		})
	}
}

// TestDecideStatus checks the status the result reports: derived at the
// time of the decision, not as read.
func TestDecideStatus(t *testing.T) {
	k := key(expiresAt(now)) // read a moment ago, when it was still active
	if out := Decide(State{Key: k}, keys.VerifyRequest{}, now); out.Result.Key.Status != keys.Expired {
		t.Fatalf("status %s, want expired", out.Result.Key.Status)
	}
	k = key(disabled, expiresAt(now))
	if out := Decide(State{Key: k}, keys.VerifyRequest{}, now); out.Result.Key.Status != keys.Expired {
		t.Fatalf("a disabled key past its expiry reads %s, want expired", out.Result.Key.Status)
	}
}

func TestDecideSpends(t *testing.T) {
	cases := []struct {
		name      string
		key       *keys.Key
		cost      int64
		spent     bool
		remaining *int64
	}{
		{"no limits", key(), 1, false, nil},
		{"quota", key(quota(10, 4)), 3, true, ptr(int64(1))},
		{"quota to zero", key(quota(10, 3)), 3, true, ptr(int64(0))},
		{"quota, cost 0", key(quota(10, 4)), 0, false, ptr(int64(4))},
		{"rate limit", key(rate(5, "minute")), 1, true, nil},
		{"rate limit, cost 0", key(rate(5, "minute")), 0, false, nil},
		{"both", key(rate(5, "minute"), quota(10, 10)), 2, true, ptr(int64(8))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := keys.VerifyRequest{Cost: c.cost}
			if got := Exact(c.key, req); got != c.spent {
				t.Errorf("Exact = %v, want %v", got, c.spent)
			}
			out := Decide(State{Key: c.key, RateTAT: 42}, req, now)
			if out.Result.Code != keys.Valid || out.Spent != c.spent {
				t.Fatalf("%s, spent %v; want VALID, spent %v", out.Result.Code, out.Spent, c.spent)
			}
			if (out.QuotaRemaining == nil) != (c.remaining == nil) || c.remaining != nil && *out.QuotaRemaining != *c.remaining {
				t.Errorf("quota remaining %v, want %v", out.QuotaRemaining, c.remaining)
			}
			if c.remaining != nil && *out.Result.Key.QuotaRemaining != *c.remaining {
				t.Errorf("the result's key has %d remaining", *out.Result.Key.QuotaRemaining)
			}
			wantTAT := int64(42)
			if c.key.RateLimit != nil && c.cost > 0 {
				wantTAT = now.UnixNano() + c.key.RateLimit.Period().Nanoseconds()/c.key.RateLimit.Count
			}
			if out.RateTAT != wantTAT {
				t.Errorf("rate state %d, want %d", out.RateTAT, wantTAT)
			}
		})
	}
}

func TestDecideRecordsTheUse(t *testing.T) {
	for _, c := range []struct {
		ip, want string
	}{{"", ""}, {"192.0.2.1", "192.0.2.1"}, {"::ffff:192.0.2.1", "192.0.2.1"}, {"2001:db8::1", "2001:db8::1"}} {
		k := key(func(k *keys.Key) { k.LastUsedIP = "198.51.100.1" })
		req := keys.VerifyRequest{}
		if c.ip != "" {
			req.IP = ip(c.ip)
		}
		out := Decide(State{Key: k}, req, now)
		lastIP := c.want
		if lastIP == "" {
			lastIP = "198.51.100.1" // a use without an address keeps the last one
		}
		if out.Use.IP != c.want || out.Result.Key.LastUsedIP != lastIP {
			t.Errorf("ip %q: use %q, last %q", c.ip, out.Use.IP, out.Result.Key.LastUsedIP)
		}
		if at := out.Result.Key.LastUsedAt; at == nil || !at.Equal(now.Truncate(time.Second)) {
			t.Errorf("last used at %v, want %v", at, now.Truncate(time.Second))
		}
	}
}

// TestGCRA walks a rate limit through its burst and its interval, at the
// exact nanoseconds where a call turns from refused to allowed.
func TestGCRA(t *testing.T) {
	r := keys.RateLimit{Count: 3, Unit: "second"}
	interval := time.Second.Nanoseconds() / 3
	t0 := now
	var tat int64
	for i := range 3 {
		next, _, ok := GCRA(tat, t0, r)
		if !ok || next != t0.UnixNano()+int64(i+1)*interval {
			t.Fatalf("burst call %d: ok %v, tat %d", i+1, ok, next)
		}
		tat = next
	}
	next, retry, ok := GCRA(tat, t0, r)
	wantRetry := time.Unix(0, t0.UnixNano()+4*interval-time.Second.Nanoseconds()).UTC()
	if ok || next != tat || !retry.Equal(wantRetry) {
		t.Fatalf("4th call at once: ok %v, tat %d, retry %v (want %v)", ok, next, retry, wantRetry)
	}
	if _, _, ok := GCRA(tat, retry.Add(-time.Nanosecond), r); ok {
		t.Fatal("allowed a nanosecond before retry_at")
	}
	next, _, ok = GCRA(tat, retry, r)
	if !ok || next != tat+interval {
		t.Fatalf("at retry_at: ok %v, tat %d, want %d", ok, next, tat+interval)
	}
	// One call per interval from then on, and not one more.
	tat = next
	if _, _, ok := GCRA(tat, retry, r); ok {
		t.Fatal("a second call at retry_at")
	}
	if _, _, ok := GCRA(tat, retry.Add(time.Duration(interval)), r); !ok {
		t.Fatal("refused one interval after retry_at")
	}
	// After a full idle period the whole burst is back.
	tat = t0.UnixNano() + 3*interval
	later := time.Unix(0, tat)
	for i := range 3 {
		if tat, _, ok = GCRA(tat, later, r); !ok {
			t.Fatalf("burst after an idle period, call %d refused", i+1)
		}
	}
	if _, _, ok := GCRA(tat, later, r); ok {
		t.Fatal("a burst of 4 after an idle period")
	}
}

func TestGCRAUnits(t *testing.T) {
	for _, c := range []struct {
		unit   string
		period time.Duration
	}{{"second", time.Second}, {"minute", time.Minute}, {"hour", time.Hour}, {"day", 24 * time.Hour}} {
		r := keys.RateLimit{Count: 1, Unit: c.unit}
		tat, _, ok := GCRA(0, now, r)
		if !ok || tat != now.Add(c.period).UnixNano() {
			t.Errorf("%s: ok %v, tat %v", c.unit, ok, time.Unix(0, tat))
		}
		if _, retry, ok := GCRA(tat, now, r); ok || !retry.Equal(now.Add(c.period)) {
			t.Errorf("%s: second call ok %v, retry %v", c.unit, ok, retry)
		}
	}
}

func TestIPAllowedIgnoresGarbage(t *testing.T) {
	if IPAllowed([]string{"not an address", "10.0.0.0/33"}, ip("10.0.0.1")) {
		t.Fatal("an unparsable entry allowed an address")
	}
}

// The quota's reason states what remains of how much, and what was asked.
func TestQuotaReason(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		quota, remaining, cost int64
		code                   keys.Code
		reason                 string
	}{
		{5, 5, 6, keys.QuotaExceeded, "the quota is short: 5 of 5 uses remain; this call asked for 6 uses"},
		{5, 0, 1, keys.QuotaExceeded, "the quota is spent: 0 of 5 uses remain; this call asked for 1 use"},
		{5, 1, 2, keys.QuotaExceeded, "the quota is short: 1 of 5 uses remains; this call asked for 2 uses"},
		{1, 0, 3, keys.QuotaExceeded, "the quota is spent: 0 of 1 use remain; this call asked for 3 uses"},
		{5, 0, 0, keys.Valid, "the key may be used"},
		{5, 2, 2, keys.Valid, "the key may be used"},
	} {
		k := &keys.Key{ID: "key_x", Stored: keys.Active, Status: keys.Active, Quota: ptr(c.quota), QuotaRemaining: ptr(c.remaining)}
		out := Decide(State{Key: k}, keys.VerifyRequest{Cost: c.cost}, now)
		if out.Result.Code != c.code || out.Result.Reason != c.reason {
			t.Errorf("quota %d, %d left, cost %d: %s %q, want %s %q", c.quota, c.remaining, c.cost,
				out.Result.Code, out.Result.Reason, c.code, c.reason)
		}
	}
}
