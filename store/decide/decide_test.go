package decide

import (
	"testing"
	"time"

	"github.com/keyctl/keyctl/store/keys"
)

func ptr(n int64) *int64 { return &n }

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
