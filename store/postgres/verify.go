package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keyctl/keyctl/apikey"
	"github.com/keyctl/keyctl/store/decide"
	"github.com/keyctl/keyctl/store/keys"
)

// Verify decides whether req's key may be used and records the use, in one
// transaction that holds the key's row: the quota and the rate limit a
// valid use spends are written from the state the decision read, so they
// stay exact across replicas.
func (p *Postgres) Verify(ctx context.Context, req keys.VerifyRequest) (*keys.VerifyResult, error) {
	res, err := p.VerifyBatch(ctx, []keys.VerifyRequest{req})
	if err != nil {
		return nil, err
	}
	return res[0], nil
}

// verifyQuery reads the secrets with the given digests and their keys, and
// locks the keys' rows in the order of their ids, so that two replicas'
// batches never wait on each other in a cycle.
const verifyQuery = `SELECT s.digest, s.ends_at, k.rate_tat, ` + keyColumns + `
	FROM secrets s JOIN keys k ON k.id = s.key_id LEFT JOIN key_usage u ON u.key_id = k.id
	WHERE s.digest = ANY($1) ORDER BY k.id FOR NO KEY UPDATE OF k`

// VerifyBatch verifies many requests in one transaction, one after the
// other, exactly as if each were verified alone.
func (p *Postgres) VerifyBatch(ctx context.Context, reqs []keys.VerifyRequest) ([]*keys.VerifyResult, error) {
	var digests [][]byte
	byReq := make([][]byte, len(reqs))
	for i, req := range reqs {
		if _, err := apikey.Parse(req.Token); err != nil {
			continue
		}
		if req.Cost < 0 {
			return nil, fmt.Errorf("%w: cost %d is negative", keys.ErrInvalid, req.Cost)
		}
		byReq[i] = apikey.Digest(req.Token, p.pepper)
		digests = append(digests, byReq[i])
	}
	if len(digests) == 0 {
		out := make([]*keys.VerifyResult, len(reqs))
		for i := range out {
			out[i] = keys.MalformedResult()
		}
		return out, nil
	}
	var out []*keys.VerifyResult
	var err error
	for range 5 {
		if out, err = p.verifyTx(ctx, reqs, byReq, digests); !retryable(err) {
			break
		}
	}
	if err != nil {
		return nil, classify(err)
	}
	return out, nil
}

// verifyTx runs one verification transaction in two round trips: the
// first begins it and reads and locks the keys, the second writes what the
// decisions spent and recorded, and commits. Like SQLite's
// synchronous=NORMAL, it does not wait for the commit to reach the disk: a
// crash of PostgreSQL itself may lose the last moment's spending and usage,
// never corrupt them. A failure leaves the connection in its transaction,
// and the pool closes it rather than reuse it, which rolls it back.
func (p *Postgres) verifyTx(ctx context.Context, reqs []keys.VerifyRequest, byReq, digests [][]byte) ([]*keys.VerifyResult, error) {
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue("SET LOCAL synchronous_commit = off")
	b.Queue(verifyQuery, digests)
	br := conn.SendBatch(ctx, b)
	_, err = br.Exec()
	if err == nil {
		_, err = br.Exec()
	}
	var found map[string]*verifyRow
	if err == nil {
		found, err = p.scanForVerify(br)
	}
	if err = errors.Join(err, br.Close()); err != nil {
		return nil, err
	}

	out := make([]*keys.VerifyResult, len(reqs))
	var uses []use
	spent := map[string]*verifyRow{}
	for i, req := range reqs {
		row := found[string(byReq[i])]
		switch {
		case byReq[i] == nil:
			out[i] = keys.MalformedResult()
			continue
		case row == nil:
			out[i] = keys.NotFoundResult()
			continue
		}
		o := decide.Decide(decide.State{Key: row.key, SecretEnds: row.ends, RateTAT: *row.tat}, req, p.now())
		out[i] = o.Result
		if o.Spent {
			*row.tat, row.key.QuotaRemaining = o.RateTAT, o.QuotaRemaining
			spent[row.key.ID] = row
		}
		// The next request for this key sees this one's use.
		row.key.UsageCount, row.key.LastUsedAt, row.key.LastUsedIP = o.Result.Key.UsageCount, o.Result.Key.LastUsedAt, o.Result.Key.LastUsedIP
		uses = append(uses, use{keyID: row.key.ID, at: o.Use.At, code: o.Use.Code, ip: o.Use.IP})
	}
	b = &pgx.Batch{}
	if len(spent) > 0 {
		ids, tats, quotas := spendArgs(spent)
		b.Queue(`UPDATE keys SET rate_tat = t.tat, quota_remaining = t.quota
			FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS t(id, tat, quota) WHERE keys.id = t.id`, ids, tats, quotas)
	}
	queueUses(b, uses)
	b.Queue("COMMIT")
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return nil, err
	}
	return out, nil
}

// verifyRow is a key as a verification read it, with the state it spends.
// Secrets of one key share the key and its state.
type verifyRow struct {
	key  *keys.Key
	ends *time.Time
	tat  *int64
}

// scanForVerify reads verifyQuery's rows: the keys of the digests, by
// digest.
func (p *Postgres) scanForVerify(br pgx.BatchResults) (map[string]*verifyRow, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	found := map[string]*verifyRow{}
	byKey := map[string]*verifyRow{}
	for rows.Next() {
		var digest []byte
		var ends *time.Time
		var tat int64
		k := &keys.Key{}
		dest, finish := p.keyDest(k)
		if err := rows.Scan(append([]any{&digest, &ends, &tat}, dest...)...); err != nil {
			return nil, err
		}
		finish()
		shared := byKey[k.ID]
		if shared == nil {
			shared = &verifyRow{key: k, tat: &tat}
			byKey[k.ID] = shared
		}
		if ends != nil {
			*ends = ends.UTC()
		}
		found[string(digest)] = &verifyRow{key: shared.key, ends: ends, tat: shared.tat}
	}
	if len(found) > 0 {
		p.pepperProven()
	}
	return found, rows.Err()
}

func spendArgs(spent map[string]*verifyRow) (ids []string, tats []int64, quotas []*int64) {
	for id := range spent {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		tats = append(tats, *spent[id].tat)
		quotas = append(quotas, spent[id].key.QuotaRemaining)
	}
	return ids, tats, quotas
}

// use is one verification to record.
type use struct {
	keyID string
	at    time.Time
	code  keys.Code
	ip    string
}

// queueUses adds to b the statements that record uses: one row each in the
// usage log, and each key's count, last use and last address, added to
// what other replicas recorded. Keys' usage rows are written in the order
// of their ids, so that replicas never deadlock on them.
func queueUses(b *pgx.Batch, uses []use) {
	if len(uses) == 0 {
		return
	}
	n := len(uses)
	ids, ats, codes, ips := make([]string, n), make([]time.Time, n), make([]string, n), make([]string, n)
	type tally struct {
		count int64
		last  time.Time
		ip    string
	}
	per := map[string]*tally{}
	for i, u := range uses {
		ids[i], ats[i], codes[i], ips[i] = u.keyID, u.at.UTC().Truncate(time.Millisecond), string(u.code), u.ip
		t := per[u.keyID]
		if t == nil {
			t = &tally{}
			per[u.keyID] = t
		}
		t.count++
		if at := u.at.UTC().Truncate(time.Second); at.After(t.last) {
			t.last = at
		}
		if u.ip != "" {
			t.ip = u.ip
		}
	}
	b.Queue(`INSERT INTO usage_events (key_id, at, code, ip)
		SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[])`, ids, ats, codes, ips)
	keyIDs := make([]string, 0, len(per))
	for id := range per {
		keyIDs = append(keyIDs, id)
	}
	slices.Sort(keyIDs)
	counts, lasts, lastIPs := make([]int64, len(keyIDs)), make([]time.Time, len(keyIDs)), make([]string, len(keyIDs))
	for i, id := range keyIDs {
		counts[i], lasts[i], lastIPs[i] = per[id].count, per[id].last, per[id].ip
	}
	b.Queue(`INSERT INTO key_usage AS u (key_id, count, last_used_at, last_used_ip)
		SELECT * FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::text[]) ORDER BY 1
		ON CONFLICT (key_id) DO UPDATE SET count = u.count + excluded.count,
			last_used_at = greatest(u.last_used_at, excluded.last_used_at),
			last_used_ip = CASE WHEN excluded.last_used_ip <> '' THEN excluded.last_used_ip ELSE u.last_used_ip END`,
		keyIDs, counts, lasts, lastIPs)
}

// recordUses writes uses in one transaction, in one round trip, without
// waiting for the disk (see verifyTx).
func (p *Postgres) recordUses(ctx context.Context, uses []use) error {
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue("SET LOCAL synchronous_commit = off")
	queueUses(b, uses)
	b.Queue("COMMIT")
	var err error
	for range 5 {
		if err = p.pool.SendBatch(ctx, b).Close(); !retryable(err) {
			break
		}
	}
	return classify(err)
}

// PruneUsage trims the usage log to the retention; counts and last uses
// are kept apart and outlive it. A server runs it now and then.
func (p *Postgres) PruneUsage(ctx context.Context) error {
	_, err := p.pool.Exec(ctx, `DELETE FROM usage_events WHERE at < $1`, p.now().Add(-p.retention))
	return classify(err)
}

// Usage reports a key's recent verifications and counts per UTC day, from
// the usage log.
func (p *Postgres) Usage(ctx context.Context, ref string, q keys.UsageQuery) (*keys.UsageReport, error) {
	k, err := p.Get(ctx, ref)
	if err != nil {
		return nil, err
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 50
	}
	since := p.now().Add(-p.retention)
	if q.Since.After(since) {
		since = q.Since
	}
	rep := &keys.UsageReport{Key: k, Retention: keys.FormatDuration(p.retention), Events: []keys.UsageEvent{}, Daily: []keys.DailyUsage{}}
	rows, err := p.pool.Query(ctx, `SELECT at, code, ip FROM usage_events WHERE key_id = $1 AND at >= $2
		ORDER BY at DESC, id DESC LIMIT $3`, k.ID, since, limit)
	if err != nil {
		return nil, classify(err)
	}
	for rows.Next() {
		var e keys.UsageEvent
		if err := rows.Scan(&e.At, &e.Code, &e.IP); err != nil {
			rows.Close()
			return nil, err
		}
		e.At = e.At.UTC()
		rep.Events = append(rep.Events, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, classify(err)
	}
	days, err := p.pool.Query(ctx, `SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, code, count(*)
		FROM usage_events WHERE key_id = $1 AND at >= $2 GROUP BY day, code ORDER BY day DESC, code`, k.ID, since)
	if err != nil {
		return nil, classify(err)
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
	return rep, classify(days.Err())
}
