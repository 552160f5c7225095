package postgres

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keyctl/keyctl/store/chain"
	"github.com/keyctl/keyctl/store/keys"
)

// Pages are read with a keyset cursor, as on SQLite (store.Pager): the keys
// after the one the cursor names, along the index keys_created
// (created_at DESC, seq DESC), or the audit entries after (or before) a
// sequence number. Filters SQL can apply on the index's rows are applied
// there, the rest by keys.ListFilter.Match and keys.AuditFilter.Match; a
// page reads at most scanBound rows, so that its cost is bounded whatever
// the filter, and may then be short and still name a next one.

// scanBound is how many rows a page reads at most, for a page of limit.
func scanBound(limit int) int { return min(max(10*limit, 1000), 10000) }

// ListPage returns up to limit keys that match f, newest first, after the
// key cursor names.
func (p *Postgres) ListPage(ctx context.Context, f keys.ListFilter, cursor string, limit int) ([]*keys.Key, string, error) {
	if limit < 1 {
		return nil, "", fmt.Errorf("%w: page size %d is not positive", keys.ErrInvalid, limit)
	}
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	switch {
	case f.Status == keys.Revoked:
		where = append(where, `k.status = 'revoked'`)
	case !f.All:
		where = append(where, `k.status <> 'revoked'`)
	}
	if f.Env != "" {
		where = append(where, `k.env = `+arg(string(f.Env)))
	}
	if cursor != "" {
		bad := fmt.Errorf("%w: cursor %q is not one this store gave", keys.ErrInvalid, cursor)
		id, err := base64.RawURLEncoding.DecodeString(cursor)
		if err != nil {
			return nil, "", bad
		}
		var created time.Time
		var seq int64
		err = p.pool.QueryRow(ctx, `SELECT created_at, seq FROM keys WHERE id = $1`, string(id)).Scan(&created, &seq)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, "", bad
		}
		if err != nil {
			return nil, "", classify(err)
		}
		where = append(where, `(k.created_at, k.seq) < (`+arg(created)+`, `+arg(seq)+`)`)
	}
	query := `SELECT ` + keyColumns + keyFrom
	if len(where) > 0 {
		query += `WHERE ` + strings.Join(where, " AND ")
	}
	bound := scanBound(limit)
	rows, err := p.pool.Query(ctx, query+` ORDER BY k.created_at DESC, k.seq DESC LIMIT `+arg(bound), args...)
	if err != nil {
		return nil, "", classify(err)
	}
	defer rows.Close()
	now := p.now()
	page := []*keys.Key{}
	read, last := 0, ""
	for rows.Next() {
		k, err := p.scanKey(rows)
		if err != nil {
			return nil, "", err
		}
		read, last = read+1, k.ID
		if !f.Match(k, now) {
			continue
		}
		if len(page) == limit {
			return page, keyCursor(page[limit-1].ID), nil
		}
		page = append(page, k)
	}
	if err := rows.Err(); err != nil {
		return nil, "", classify(err)
	}
	if read == bound {
		return page, keyCursor(last), nil
	}
	return page, "", nil
}

func keyCursor(id string) string { return base64.RawURLEncoding.EncodeToString([]byte(id)) }

// AuditPage returns up to limit entries that match f, oldest first within
// the page: forward from the oldest (or after cursor) when f.Limit is zero,
// else backward from the newest (or before cursor).
func (p *Postgres) AuditPage(ctx context.Context, f keys.AuditFilter, cursor string, limit int) ([]*keys.AuditEntry, string, error) {
	if limit < 1 {
		return nil, "", fmt.Errorf("%w: page size %d is not positive", keys.ErrInvalid, limit)
	}
	back := f.Limit > 0
	from, err := auditCursorSeq(cursor, back)
	if err != nil {
		return nil, "", err
	}
	bound := scanBound(limit)
	query := `SELECT seq, content, prev_hash, hash, scheme FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2`
	if back {
		query = `SELECT seq, content, prev_hash, hash, scheme FROM audit WHERE seq < $1 ORDER BY seq DESC LIMIT $2`
	}
	rows, err := p.pool.Query(ctx, query, from, bound)
	if err != nil {
		return nil, "", classify(err)
	}
	defer rows.Close()
	page := []*keys.AuditEntry{}
	read, last, next := 0, int64(0), ""
	for rows.Next() {
		var r chain.Row
		if err := rows.Scan(&r.Seq, &r.Content, &r.PrevHash, &r.Hash, &r.Scheme); err != nil {
			return nil, "", err
		}
		read, last = read+1, r.Seq
		e, err := r.Entry()
		if err != nil {
			return nil, "", err
		}
		if !f.Match(e) {
			continue
		}
		if len(page) == limit {
			next = auditCursor(page[limit-1].Seq, back)
			break
		}
		page = append(page, e)
	}
	if err := rows.Err(); err != nil {
		return nil, "", classify(err)
	}
	if next == "" && read == bound {
		next = auditCursor(last, back)
	}
	if back {
		slices.Reverse(page)
	}
	return page, next, nil
}

// An audit cursor is the sequence number a page stopped at, and which way
// it goes: "a" (after) forward, "b" (before) backward.
func auditCursor(seq int64, back bool) string {
	dir := "a"
	if back {
		dir = "b"
	}
	return base64.RawURLEncoding.EncodeToString([]byte(dir + strconv.FormatInt(seq, 10)))
}

func auditCursorSeq(cursor string, back bool) (int64, error) {
	if cursor == "" {
		if back {
			return 1<<63 - 1, nil
		}
		return 0, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err == nil && len(b) > 1 && (b[0] == 'b') == back && (b[0] == 'a' || b[0] == 'b') {
		if seq, err := strconv.ParseInt(string(b[1:]), 10, 64); err == nil && seq >= 0 {
			return seq, nil
		}
	}
	return 0, fmt.Errorf("%w: cursor %q is not one this store gave for this query", keys.ErrInvalid, cursor)
}
