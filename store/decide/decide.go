// Package decide is the verification's one set of rules: given a key's
// state, the presented secret's, the request and the time, it says whether
// the key may be used and what the use spends and records. It does no I/O:
// every store, the service's fast path and any later backend call the same
// function, and only persist what it returns.
package decide

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/keyctl/keyctl/store/keys"
)

// State is what a verification is decided on.
type State struct {
	// Key is the key as stored: Stored holds its stored status; Status is
	// derived again at the time of the decision.
	Key *keys.Key
	// SecretEnds is when the presented secret stops working: nil for the
	// key's current secret, the end of its grace for an older one.
	SecretEnds *time.Time
	// RateTAT is the rate limiter's state: GCRA's theoretical arrival time,
	// in Unix nanoseconds (0 for a key never limited).
	RateTAT int64
}

// Outcome is a decision and what it changes.
type Outcome struct {
	// Result is the answer. Its Key is the key as it is after the use: its
	// status at the time, the quota left, and the use counted.
	Result *keys.VerifyResult
	// Spent is true when the use spends quota or rate limit: QuotaRemaining
	// and RateTAT are then to be written, in the transaction that read
	// them, or the decision is void.
	Spent          bool
	QuotaRemaining *int64
	RateTAT        int64
	// Use is the entry for the key's usage: every found key's verification
	// counts, whatever its result.
	Use Use
}

// Use is one verification, as recorded in a key's usage.
type Use struct {
	At   time.Time
	Code keys.Code
	IP   string // the client's address in canonical form, "" when none was given
}

// Exact reports whether a verification of k for req depends on counters
// that several callers may spend at once (quota, rate limit): such a
// verification must be decided on state read in the transaction that
// writes what it spends.
func Exact(k *keys.Key, req keys.VerifyRequest) bool {
	return req.Cost > 0 && (k.RateLimit != nil || k.QuotaRemaining != nil)
}

// Decide runs the checks in their documented order; the first failure
// decides: revoked (or an old secret past its grace), disabled, expired,
// environment, address, scope, rate limit, quota. A refused use spends
// nothing. st is left as it was.
func Decide(st State, req keys.VerifyRequest, now time.Time) Outcome {
	k := *st.Key
	k.Status = keys.StatusAt(k.Stored, k.ExpiresAt, now)
	out := Outcome{RateTAT: st.RateTAT, QuotaRemaining: k.QuotaRemaining}
	res, spent := check(&k, st, req, now, &out)
	out.Result, out.Spent = res, spent
	out.Use = markUsed(&k, req, res.Code, now)
	return out
}

func check(k *keys.Key, st State, req keys.VerifyRequest, now time.Time, out *Outcome) (*keys.VerifyResult, bool) {
	switch {
	case k.Status == keys.Revoked:
		reason := "the key was revoked"
		if k.RevokedAt != nil {
			reason += " at " + k.RevokedAt.Format(time.RFC3339)
		}
		if k.RevokeReason != "" {
			reason += ": " + k.RevokeReason
		}
		return keys.NewResult(keys.CodeRevoked, reason, k), false
	case st.SecretEnds != nil && !now.Before(*st.SecretEnds):
		return keys.NewResult(keys.CodeRevoked, "this secret was replaced by a rotation; it stopped working at "+
			st.SecretEnds.Format(time.RFC3339), k), false
	case k.Stored == keys.Disabled:
		return keys.NewResult(keys.CodeDisabled, "the key is disabled", k), false
	case k.Status == keys.Expired:
		return keys.NewResult(keys.CodeExpired, "the key expired at "+k.ExpiresAt.Format(time.RFC3339), k), false
	case req.Env != "" && k.Env != req.Env:
		return keys.NewResult(keys.Forbidden, fmt.Sprintf("wrong environment: the key is for %s, not %s", k.Env, req.Env), k), false
	}
	if len(k.AllowedIPs) > 0 {
		if !req.IP.IsValid() {
			return keys.NewResult(keys.Forbidden, "address not allowed: the key accepts only listed addresses and none was given", k), false
		}
		if !IPAllowed(k.AllowedIPs, req.IP) {
			return keys.NewResult(keys.Forbidden, "address not allowed: "+req.IP.String()+" is not in the key's allowlist", k), false
		}
	}
	var missing []string
	for _, sc := range req.Scopes {
		if !slices.Contains(k.Scopes, sc) {
			missing = append(missing, sc)
		}
	}
	if len(missing) > 0 {
		return keys.NewResult(keys.Forbidden, "missing scope: the key does not hold "+strings.Join(keys.NormalizeSet(missing), ","), k), false
	}
	newTat := st.RateTAT
	if k.RateLimit != nil && req.Cost > 0 {
		var retry time.Time
		var ok bool
		newTat, retry, ok = GCRA(st.RateTAT, now, *k.RateLimit)
		if !ok {
			res := keys.NewResult(keys.RateLimited, fmt.Sprintf("rate limit %s exceeded; the next call is allowed at %s",
				k.RateLimit, retry.UTC().Format(time.RFC3339Nano)), k)
			res.RetryAt = &retry
			return res, false
		}
	}
	if k.QuotaRemaining != nil && *k.QuotaRemaining < req.Cost {
		return keys.NewResult(keys.QuotaExceeded, quotaReason(*k.QuotaRemaining, derefOr(k.Quota, *k.QuotaRemaining), req.Cost), k), false
	}
	spent := Exact(k, req)
	out.RateTAT = newTat
	if k.QuotaRemaining != nil {
		left := *k.QuotaRemaining - req.Cost
		k.QuotaRemaining = &left
		out.QuotaRemaining = &left
	}
	return keys.NewResult(keys.Valid, "the key may be used", k), spent
}

// quotaReason says why a quota refused a call: what remains of how much,
// and what the call asked for.
func quotaReason(remaining, quota, cost int64) string {
	uses := func(n int64) string {
		if n == 1 {
			return "1 use"
		}
		return fmt.Sprintf("%d uses", n)
	}
	remain := fmt.Sprintf("%d of %s remain", remaining, uses(quota))
	if remaining == 1 {
		remain = fmt.Sprintf("1 of %s remains", uses(quota))
	}
	if remaining == 0 {
		return fmt.Sprintf("the quota is spent: %s; this call asked for %s", remain, uses(cost))
	}
	return fmt.Sprintf("the quota is short: %s; this call asked for %s", remain, uses(cost))
}

func derefOr(p *int64, v int64) int64 {
	if p == nil {
		return v
	}
	return *p
}

// markUsed counts a use in k as a store will once it is written, and
// returns the use.
func markUsed(k *keys.Key, req keys.VerifyRequest, code keys.Code, now time.Time) Use {
	k.UsageCount++
	at := now.UTC().Truncate(time.Second)
	k.LastUsedAt = &at
	u := Use{At: now, Code: code}
	if req.IP.IsValid() {
		u.IP = req.IP.Unmap().String()
		k.LastUsedIP = u.IP
	}
	return u
}

// IPAllowed reports whether ip is one of allowed's addresses or in one of
// its CIDR ranges.
func IPAllowed(allowed []string, ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, a := range allowed {
		if p, err := netip.ParsePrefix(a); err == nil && p.Contains(ip) {
			return true
		}
		if addr, err := netip.ParseAddr(a); err == nil && addr == ip {
			return true
		}
	}
	return false
}

// GCRA is the generic cell rate algorithm: a burst of up to Count calls,
// then one call every Period/Count. tat is the theoretical arrival time in
// Unix nanoseconds; it returns the new one, or when the next call may come.
func GCRA(tat int64, now time.Time, r keys.RateLimit) (newTat int64, retry time.Time, ok bool) {
	period := r.Period().Nanoseconds()
	interval := period / r.Count
	t := max(tat, now.UnixNano())
	next := t + interval
	if next-now.UnixNano() > period {
		return tat, time.Unix(0, next-period).UTC(), false
	}
	return next, time.Time{}, true
}
