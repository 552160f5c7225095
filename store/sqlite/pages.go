package sqlite

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/keyctl/keyctl/store/chain"
	"github.com/keyctl/keyctl/store/keys"
)

// Pages are read with a keyset cursor: the keys after the one the cursor
// names, in the order of an index (created_at, rowid), or the audit entries
// after (or before) a sequence number. Filters that SQL can apply on the
// index's rows (revoked or not, environment) are applied there; the rest
// by keys.ListFilter.Match and keys.AuditFilter.Match, the one definition of
// each filter. A page reads at most scanBound rows, so that its cost is
// bounded whatever the filter: a page may then be short, and still name a
// next one.

// scanBound is how many rows a page reads at most, for a page of limit.
func scanBound(limit int) int { return min(max(10*limit, 1000), 10000) }

// ListPage returns up to limit keys that match f, newest first, after the
// key cursor names.
func (s *SQLite) ListPage(ctx context.Context, f keys.ListFilter, cursor string, limit int) ([]*keys.Key, string, error) {
	if limit < 1 {
		return nil, "", fmt.Errorf("%w: page size %d is not positive", keys.ErrInvalid, limit)
	}
	var where []string
	var args []any
	if !f.All && f.Status != keys.Revoked {
		where = append(where, `k.status <> 'revoked'`)
	}
	if f.Status == keys.Revoked {
		where = append(where, `k.status = 'revoked'`)
	}
	if f.Env != "" {
		where, args = append(where, `k.env = ?`), append(args, f.Env)
	}
	if cursor != "" {
		bad := fmt.Errorf("%w: cursor %q is not one this store gave", keys.ErrInvalid, cursor)
		id, err := base64.RawURLEncoding.DecodeString(cursor)
		if err != nil {
			return nil, "", bad
		}
		var created, rowid int64
		err = s.reads().QueryRowContext(ctx, `SELECT created_at, rowid FROM keys WHERE id = ?`, string(id)).Scan(&created, &rowid)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, "", bad
		}
		if err != nil {
			return nil, "", err
		}
		where, args = append(where, `(k.created_at, k.rowid) < (?, ?)`), append(args, created, rowid)
	}
	query := `SELECT ` + keyColumns + ` FROM keys k ` + usageJoin
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	bound := scanBound(limit)
	rows, err := s.reads().QueryContext(ctx, query+` ORDER BY k.created_at DESC, k.rowid DESC LIMIT ?`, append(args, bound)...)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	now := s.now()
	page := []*keys.Key{}
	read, last := 0, ""
	for rows.Next() {
		k, err := s.scanKey(rows)
		if err != nil {
			return nil, "", err
		}
		read, last = read+1, k.ID
		yieldEvery(read)
		if !f.Match(k, now) {
			continue
		}
		if len(page) == limit {
			return page, keyCursor(page[limit-1].ID), nil
		}
		page = append(page, k)
	}
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	if read == bound {
		return page, keyCursor(last), nil
	}
	return page, "", nil
}

// yieldEvery lets other goroutines run every 32 rows a page reads: a page is
// long work, and verifications waiting for a processor must not wait for
// the whole of it (the runtime preempts only every 10 ms).
func yieldEvery(n int) {
	if n%32 == 0 {
		runtime.Gosched()
	}
}

func keyCursor(id string) string { return base64.RawURLEncoding.EncodeToString([]byte(id)) }

// AuditPage returns up to limit entries that match f, oldest first within
// the page: forward from the oldest (or after cursor) when f.Limit is zero,
// else backward from the newest (or before cursor).
func (s *SQLite) AuditPage(ctx context.Context, f keys.AuditFilter, cursor string, limit int) ([]*keys.AuditEntry, string, error) {
	if limit < 1 {
		return nil, "", fmt.Errorf("%w: page size %d is not positive", keys.ErrInvalid, limit)
	}
	back := f.Limit > 0
	from, err := auditCursorSeq(cursor, back)
	if err != nil {
		return nil, "", err
	}
	bound := scanBound(limit)
	query := `SELECT seq, content, prev_hash, hash, scheme FROM audit WHERE seq > ? ORDER BY seq LIMIT ?`
	if back {
		query = `SELECT seq, content, prev_hash, hash, scheme FROM audit WHERE seq < ? ORDER BY seq DESC LIMIT ?`
	}
	rows, err := s.reads().QueryContext(ctx, query, from, bound)
	if err != nil {
		return nil, "", err
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
		yieldEvery(read)
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
		return nil, "", err
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
