package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/keyctl/keyctl/apikey"
)

// Verify decides whether req's key may be used, in the documented check
// order, and records the use in the same transaction: usage for every found
// key, and the rate limit and quota only for a valid use, so that a rejected
// call spends nothing. Immediate transactions make the quota exact across
// processes.
func (s *SQLite) Verify(ctx context.Context, req VerifyRequest) (*VerifyResult, error) {
	res, err := s.VerifyBatch(ctx, []VerifyRequest{req})
	if err != nil {
		return nil, err
	}
	return res[0], nil
}

// VerifyBatch verifies many requests in one transaction, one after the
// other, exactly as if each were verified alone. A server that batches the
// requests arriving at the same moment pays for one commit, not one each.
func (s *SQLite) VerifyBatch(ctx context.Context, reqs []VerifyRequest) ([]*VerifyResult, error) {
	out := make([]*VerifyResult, len(reqs))
	digests := make([][]byte, len(reqs))
	pending := false
	for i, req := range reqs {
		if _, err := apikey.Parse(req.Token); err != nil {
			out[i] = MalformedResult()
			continue
		}
		if req.Cost < 0 {
			return nil, fmt.Errorf("%w: cost %d is negative", ErrInvalid, req.Cost)
		}
		digests[i] = apikey.Digest(req.Token, s.pepper)
		pending = true
	}
	if !pending {
		return out, nil
	}
	err := s.writeTx(ctx, func(tx *writeTx) error {
		for i, req := range reqs {
			if digests[i] == nil {
				continue
			}
			res, err := s.verifyOne(tx, req, digests[i])
			if err != nil {
				return err
			}
			out[i] = res
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// verifyKeyQuery finds the secret with a digest and its key in one lookup.
var verifyKeyQuery = `SELECT s.digest, s.ends_at, k.rate_tat, ` + keyColumns + `
	FROM secrets s JOIN keys k ON k.id = s.key_id ` + usageJoin + ` WHERE s.digest = ?`

// verifyWriteQuery is verifyKeyQuery with the key's rowid, by which the
// transaction updates the row it read without a second index lookup.
var verifyWriteQuery = strings.Replace(verifyKeyQuery, "SELECT ", "SELECT k.rowid, ", 1)

func (s *SQLite) verifyOne(tx *writeTx, req VerifyRequest, digest []byte) (*VerifyResult, error) {
	var tat, rowid int64
	k, ends, err := s.scanVerifyRow(tx.queryRow(verifyWriteQuery, digest), digest, &tat, &rowid)
	if err != nil || k == nil {
		return NotFoundResult(), err
	}
	now := s.now()
	res := decide(k, ends, req, now, &tat)
	return res, s.recordUse(tx, rowid, k, req, res, now, tat)
}

// scanVerifyRow reads a row of verifyKeyQuery, preceded by the columns
// prefix receives, into a key, the secret's end and the rate limiter's state
// tat, and checks the digest in constant time. The key is nil when no secret
// has the digest.
func (s *SQLite) scanVerifyRow(row scanner, digest []byte, tat *int64, prefix ...any) (*Key, *time.Time, error) {
	var (
		stored []byte
		endsAt sql.NullInt64
	)
	head := append(append([]any{}, prefix...), &stored, &endsAt, tat)
	k, err := s.scanKey(scanFunc(func(dest ...any) error { return row.Scan(append(head, dest...)...) }))
	if errors.Is(err, sql.ErrNoRows) || err == nil && !apikey.Equal(stored, digest) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	return k, fromUnix(endsAt), nil
}

type scanFunc func(dest ...any) error

func (f scanFunc) Scan(dest ...any) error { return f(dest...) }

// decide runs the checks in their documented order; the first failure
// decides. tat is the rate limiter's state, advanced only for a valid use.
func decide(k *Key, secretEnds *time.Time, req VerifyRequest, now time.Time, tat *int64) *VerifyResult {
	switch {
	case k.Status == Revoked:
		reason := "the key was revoked"
		if k.RevokedAt != nil {
			reason += " at " + k.RevokedAt.Format(time.RFC3339)
		}
		if k.RevokeReason != "" {
			reason += ": " + k.RevokeReason
		}
		return NewResult(CodeRevoked, reason, k)
	case secretEnds != nil && !now.Before(*secretEnds):
		return NewResult(CodeRevoked, "this secret was replaced by a rotation; it stopped working at "+
			secretEnds.Format(time.RFC3339), k)
	case k.stored == Disabled:
		return NewResult(CodeDisabled, "the key is disabled", k)
	case k.Status == Expired:
		return NewResult(CodeExpired, "the key expired at "+k.ExpiresAt.Format(time.RFC3339), k)
	case req.Env != "" && k.Env != req.Env:
		return NewResult(Forbidden, fmt.Sprintf("wrong environment: the key is for %s, not %s", k.Env, req.Env), k)
	}
	if len(k.AllowedIPs) > 0 {
		if !req.IP.IsValid() {
			return NewResult(Forbidden, "address not allowed: the key accepts only listed addresses and none was given", k)
		}
		if !ipAllowed(k.AllowedIPs, req.IP) {
			return NewResult(Forbidden, "address not allowed: "+req.IP.String()+" is not in the key's allowlist", k)
		}
	}
	var missing []string
	for _, sc := range req.Scopes {
		if !slices.Contains(k.Scopes, sc) {
			missing = append(missing, sc)
		}
	}
	if len(missing) > 0 {
		return NewResult(Forbidden, "missing scope: the key does not hold "+strings.Join(NormalizeSet(missing), ","), k)
	}
	newTat := *tat
	if k.RateLimit != nil && req.Cost > 0 {
		var retry time.Time
		var ok bool
		newTat, retry, ok = gcra(*tat, now, *k.RateLimit)
		if !ok {
			res := NewResult(RateLimited, fmt.Sprintf("rate limit %s exceeded; the next call is allowed at %s",
				k.RateLimit, retry.UTC().Format(time.RFC3339Nano)), k)
			res.RetryAt = &retry
			return res
		}
	}
	if k.QuotaRemaining != nil && *k.QuotaRemaining < req.Cost {
		return NewResult(QuotaExceeded, fmt.Sprintf("the quota is spent: %d of %d uses remain, %d needed",
			*k.QuotaRemaining, derefOr(k.Quota, *k.QuotaRemaining), req.Cost), k)
	}
	*tat = newTat
	if k.QuotaRemaining != nil {
		left := *k.QuotaRemaining - req.Cost
		k.QuotaRemaining = &left
	}
	return NewResult(Valid, "the key may be used", k)
}

func derefOr(p *int64, v int64) int64 {
	if p == nil {
		return v
	}
	return *p
}

func ipAllowed(allowed []string, ip netip.Addr) bool {
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

// gcra is the generic cell rate algorithm: a burst of up to Count calls,
// then one call every Period/Count. tat is the theoretical arrival time in
// Unix nanoseconds; it returns the new one, or when the next call may come.
func gcra(tat int64, now time.Time, r RateLimit) (newTat int64, retry time.Time, ok bool) {
	period := r.Period().Nanoseconds()
	interval := period / r.Count
	t := max(tat, now.UnixNano())
	next := t + interval
	if next-now.UnixNano() > period {
		return tat, time.Unix(0, next-period).UTC(), false
	}
	return next, time.Time{}, true
}

// recordUse writes what a verification changed: an entry in the key's
// usage log for every found key, and the rate limiter and quota when res
// spent them. The log is pruned to the retention now and then, not on every
// call.
func (s *SQLite) recordUse(tx *writeTx, rowid int64, k *Key, req VerifyRequest, res *VerifyResult, now time.Time, tat int64) error {
	ip := markUsed(k, req, now)
	if res.Code == Valid && req.Cost > 0 && (k.RateLimit != nil || k.QuotaRemaining != nil) {
		if err := tx.exec(spendQuery, tat, ptrValue(k.QuotaRemaining), rowid); err != nil {
			return err
		}
	}
	if err := tx.exec(logUseQuery, k.ID, k.UsageCount, now.UnixMilli(), res.Code, ip, k.LastUsedIP); err != nil {
		return err
	}
	return s.pruneUsage(tx, k.ID, k.UsageCount, k.UsageCount)
}

// markUsed counts a use in k as the database will once it is written, and
// returns the address, if given.
func markUsed(k *Key, req VerifyRequest, now time.Time) string {
	k.UsageCount++
	at := now.UTC().Truncate(time.Second)
	k.LastUsedAt = &at
	ip := ""
	if req.IP.IsValid() {
		ip = req.IP.Unmap().String()
		k.LastUsedIP = ip
	}
	return ip
}

// pruneUsage trims a key's usage log to the retention each time its count
// passes a multiple of 256, rather than on every use, keeping the last
// entry, which holds the key's usage. The log is in use order (n), and so in
// time order: the cost is that of the entries removed.
func (s *SQLite) pruneUsage(tx *writeTx, keyID string, from, to int64) error {
	if (from-1)/256 == to/256 {
		return nil
	}
	return tx.exec(`DELETE FROM usage_events WHERE key_id = ?1 AND n < coalesce(
		(SELECT n FROM usage_events WHERE key_id = ?1 AND at >= ?2 ORDER BY n LIMIT 1), ?3)`,
		keyID, s.now().Add(-s.retention).UnixMilli(), to)
}

// PruneUsage trims every key's usage log to the retention, keeping each
// key's last entry: the log of a key that is no longer used is trimmed only
// here. A server runs it now and then.
func (s *SQLite) PruneUsage(ctx context.Context) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM usage_events AS e WHERE at < ? AND n <
			(SELECT max(n) FROM usage_events WHERE key_id = e.key_id)`, s.now().Add(-s.retention).UnixMilli())
		return err
	})
}

const (
	spendQuery  = `UPDATE keys SET rate_tat = ?, quota_remaining = ? WHERE rowid = ?`
	logUseQuery = `INSERT INTO usage_events (key_id, n, at, code, ip, last_ip) VALUES (?, ?, ?, ?, ?, ?)`
)

// Usage reports a key's recent verifications and counts per UTC day, from
// the usage log.
func (s *SQLite) Usage(ctx context.Context, ref string, q UsageQuery) (*UsageReport, error) {
	k, err := s.Get(ctx, ref)
	if err != nil {
		return nil, err
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 50
	}
	since := s.now().Add(-s.retention)
	if q.Since.After(since) {
		since = q.Since
	}
	rep := &UsageReport{Key: k, Retention: FormatDuration(s.retention), Events: []UsageEvent{}, Daily: []DailyUsage{}}
	rows, err := s.db.QueryContext(ctx, `SELECT at, code, ip FROM usage_events WHERE key_id = ? AND at >= ?
		ORDER BY n DESC LIMIT ?`, k.ID, since.UnixMilli(), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var e UsageEvent
		var at int64
		if err := rows.Scan(&at, &e.Code, &e.IP); err != nil {
			return nil, err
		}
		e.At = time.UnixMilli(at).UTC()
		rep.Events = append(rep.Events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	days, err := s.db.QueryContext(ctx, `SELECT date(at / 1000, 'unixepoch') AS day, code, count(*)
		FROM usage_events WHERE key_id = ? AND at >= ? GROUP BY day, code ORDER BY day DESC, code`,
		k.ID, since.UnixMilli())
	if err != nil {
		return nil, err
	}
	defer days.Close()
	for days.Next() {
		var day string
		var code Code
		var n int64
		if err := days.Scan(&day, &code, &n); err != nil {
			return nil, err
		}
		if len(rep.Daily) == 0 || rep.Daily[len(rep.Daily)-1].Day != day {
			rep.Daily = append(rep.Daily, DailyUsage{Day: day, Codes: map[Code]int64{}})
		}
		d := &rep.Daily[len(rep.Daily)-1]
		d.Total += n
		d.Codes[code] = n
	}
	return rep, days.Err()
}
