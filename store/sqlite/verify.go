package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keyctl/keyctl/apikey"
	"github.com/keyctl/keyctl/store/decide"
	"github.com/keyctl/keyctl/store/keys"
)

// Verify decides whether req's key may be used, in the documented check
// order, and records the use in the same transaction: usage for every found
// key, and the rate limit and quota only for a valid use, so that a rejected
// call spends nothing. Immediate transactions make the quota exact across
// processes.
func (s *SQLite) Verify(ctx context.Context, req keys.VerifyRequest) (*keys.VerifyResult, error) {
	res, err := s.VerifyBatch(ctx, []keys.VerifyRequest{req})
	if err != nil {
		return nil, err
	}
	return res[0], nil
}

// VerifyBatch verifies many requests in one transaction, one after the
// other, exactly as if each were verified alone. A server that batches the
// requests arriving at the same moment pays for one commit, not one each.
func (s *SQLite) VerifyBatch(ctx context.Context, reqs []keys.VerifyRequest) ([]*keys.VerifyResult, error) {
	out := make([]*keys.VerifyResult, len(reqs))
	digests := make([][]byte, len(reqs))
	pending := false
	for i, req := range reqs {
		if _, err := apikey.Parse(req.Token); err != nil {
			out[i] = keys.MalformedResult()
			continue
		}
		if req.Cost < 0 {
			return nil, fmt.Errorf("%w: cost %d is negative", keys.ErrInvalid, req.Cost)
		}
		digests[i] = apikey.Digest(req.Token, s.pepper)
		pending = true
	}
	if !pending {
		return out, nil
	}
	// A verification records its use: it writes.
	if err := s.writable(); err != nil {
		return nil, err
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

func (s *SQLite) verifyOne(tx *writeTx, req keys.VerifyRequest, digest []byte) (*keys.VerifyResult, error) {
	var tat, rowid int64
	k, ends, err := s.scanVerifyRow(tx.queryRow(verifyWriteQuery, digest), digest, &tat, &rowid)
	if err != nil || k == nil {
		return keys.NotFoundResult(), err
	}
	out := decide.Decide(decide.State{Key: k, SecretEnds: ends, RateTAT: tat}, req, s.now())
	return out.Result, s.recordUse(tx, rowid, out)
}

// scanVerifyRow reads a row of verifyKeyQuery, preceded by the columns
// prefix receives, into a key, the secret's end and the rate limiter's state
// tat, and checks the digest in constant time. The key is nil when no secret
// has the digest.
func (s *SQLite) scanVerifyRow(row scanner, digest []byte, tat *int64, prefix ...any) (*keys.Key, *time.Time, error) {
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
	s.pepperProven()
	return k, fromUnix(endsAt), nil
}

type scanFunc func(dest ...any) error

func (f scanFunc) Scan(dest ...any) error { return f(dest...) }

// recordUse writes what a verification changed: an entry in the key's
// usage log for every found key, and the rate limiter and quota when the
// use spent them. The log is pruned to the retention now and then, not on
// every call.
func (s *SQLite) recordUse(tx *writeTx, rowid int64, out decide.Outcome) error {
	k := out.Result.Key
	if out.Spent {
		if err := tx.exec(spendQuery, out.RateTAT, ptrValue(out.QuotaRemaining), rowid); err != nil {
			return err
		}
	}
	if err := tx.exec(logUseQuery, k.ID, k.UsageCount, out.Use.At.UnixMilli(), out.Use.Code, out.Use.IP, k.LastUsedIP); err != nil {
		return err
	}
	return s.pruneUsage(tx, k.ID, k.UsageCount, k.UsageCount)
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
	if err := s.writable(); err != nil {
		return err
	}
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
func (s *SQLite) Usage(ctx context.Context, ref string, q keys.UsageQuery) (*keys.UsageReport, error) {
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
	rep := &keys.UsageReport{Key: k, Retention: keys.FormatDuration(s.retention), Events: []keys.UsageEvent{}, Daily: []keys.DailyUsage{}}
	rows, err := s.reads().QueryContext(ctx, `SELECT at, code, ip FROM usage_events WHERE key_id = ? AND at >= ?
		ORDER BY n DESC LIMIT ?`, k.ID, since.UnixMilli(), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var e keys.UsageEvent
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
	days, err := s.reads().QueryContext(ctx, `SELECT date(at / 1000, 'unixepoch') AS day, code, count(*)
		FROM usage_events WHERE key_id = ? AND at >= ? GROUP BY day, code ORDER BY day DESC, code`,
		k.ID, since.UnixMilli())
	if err != nil {
		return nil, err
	}
	defer days.Close()
	for days.Next() {
		var day string
		var code keys.Code
		var n int64
		if err := days.Scan(&day, &code, &n); err != nil {
			return nil, err
		}
		if len(rep.Daily) == 0 || rep.Daily[len(rep.Daily)-1].Day != day {
			rep.Daily = append(rep.Daily, keys.DailyUsage{Day: day, Codes: map[keys.Code]int64{}})
		}
		d := &rep.Daily[len(rep.Daily)-1]
		d.Total += n
		d.Codes[code] = n
	}
	return rep, days.Err()
}
