package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keyctl/keyctl/apikey"
)

// Checker verifies keys for a long-running server. Most verifications change
// nothing but a key's usage: Check decides those with a read on a pool of
// reader connections, beside other requests and beside the one writer, and
// records their use in the background, many uses to a transaction. A
// verification that would spend quota or rate limit is not decided there:
// Check reports it as exact, and the caller verifies it with VerifyBatch, in
// a write transaction, so that quotas stay exact across processes.
type Checker interface {
	Check(ctx context.Context, req VerifyRequest) (res *VerifyResult, exact bool, err error)
	// CheckToken is Check for a caller's own token, which comes again and
	// again: a valid verification is reused for as long as nothing it
	// depends on has changed in the database (its use is still recorded,
	// and expiry, address and grace are judged anew each time).
	CheckToken(ctx context.Context, req VerifyRequest) (res *VerifyResult, exact bool, err error)
	// CheckCall is CheckToken for a caller's token and then, if allow
	// permits, Check for req, with one read for both when it can.
	CheckCall(ctx context.Context, token VerifyRequest, allow func(*VerifyResult) bool, req VerifyRequest) (res, tokenRes *VerifyResult, exact bool, err error)
	// Flush returns once every use checked so far is written, so that what
	// is read next sees them.
	Flush(ctx context.Context) error
	// Close records every use checked so far and stops.
	Close() error
}

// ErrClosed: the checker was closed and checks no more keys.
var ErrClosed = errors.New("closed")

const (
	flushEvery = 20 * time.Millisecond // how long a use waits, at most, to be written
	flushBatch = 1024                  // uses written by one transaction, at most
	pruneEvery = time.Hour             // how often the whole usage log is trimmed
)

type sqliteChecker struct {
	s       *SQLite
	read    *sql.DB
	stmt    *sql.Stmt
	version *sql.Stmt

	cacheMu sync.Mutex
	cache   map[string]tokenCheck // by digest
	uses    chan use
	done    chan error

	mu     sync.RWMutex // held for reading while sending on uses
	closed bool

	closeOnce sync.Once
	closeErr  error
}

// use is one verification to record: the key, when, the result, the
// address; or, with flushed set, a request to write what came before it now
// and then close flushed.
type use struct {
	keyID   string
	at      time.Time
	code    Code
	ip      string
	flushed chan struct{}
}

// NewChecker opens a pool of readers beside the store's writer and starts
// the goroutine that records uses.
func (s *SQLite) NewChecker(readers int) (Checker, error) {
	read, err := sql.Open("sqlite", s.dsn)
	if err != nil {
		return nil, err
	}
	read.SetMaxOpenConns(readers)
	read.SetMaxIdleConns(readers)
	stmt, err := read.Prepare(`SELECT (SELECT version FROM state WHERE id = 1), ` + strings.TrimPrefix(verifyKeyQuery, "SELECT "))
	if err != nil {
		read.Close()
		return nil, fmt.Errorf("preparing the reader: %w", err)
	}
	version, err := read.Prepare(`SELECT version FROM state WHERE id = 1`)
	if err != nil {
		read.Close()
		return nil, fmt.Errorf("preparing the reader: %w", err)
	}
	c := &sqliteChecker{s: s, read: read, stmt: stmt, version: version, cache: map[string]tokenCheck{},
		uses: make(chan use, 4*flushBatch), done: make(chan error, 1)}
	go c.record()
	return c, nil
}

// tokenCheck is a key as a valid verification of a token found it, at a
// version of the database.
type tokenCheck struct {
	version    int64
	key        Key
	secretEnds *time.Time
}

func (c *sqliteChecker) Check(ctx context.Context, req VerifyRequest) (*VerifyResult, bool, error) {
	res, _, exact, err := c.CheckCall(ctx, VerifyRequest{}, nil, req)
	return res, exact, err
}

func (c *sqliteChecker) CheckToken(ctx context.Context, req VerifyRequest) (*VerifyResult, bool, error) {
	if bad := c.malformed(req); bad != nil {
		return bad, false, nil
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return nil, false, ErrClosed
	}
	var version int64
	if err := c.version.QueryRowContext(ctx).Scan(&version); err != nil {
		return nil, false, err
	}
	return c.token(ctx, req, version)
}

// CheckCall verifies a caller's token and then, if allow says its result
// permits, req: one read for both when the token's last verification can be
// reused, since the read of req's key also tells the database's version. It
// returns req's result (nil when the token does not allow it) and the
// token's. exact with a token result means req must be verified in a write
// transaction; exact without one, that the token must be (and then req).
// With an empty token, only req is verified.
func (c *sqliteChecker) CheckCall(ctx context.Context, token VerifyRequest, allow func(*VerifyResult) bool, req VerifyRequest) (res, tokRes *VerifyResult, exact bool, err error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return nil, nil, false, ErrClosed
	}
	var row keyRow
	bad := c.malformed(req)
	if bad == nil {
		if row, err = c.lookup(ctx, apikey.Digest(req.Token, c.s.pepper)); err != nil {
			return nil, nil, false, err
		}
	}
	if token.Token != "" {
		if tokRes = c.malformed(token); tokRes == nil {
			if row.found {
				tokRes, exact, err = c.token(ctx, token, row.version)
			} else {
				var version int64
				if err = c.version.QueryRowContext(ctx).Scan(&version); err == nil {
					tokRes, exact, err = c.token(ctx, token, version)
				}
			}
			if err != nil || exact {
				// A token that spends quota or rate limit is verified
				// exactly, and the call with it.
				return nil, nil, exact, err
			}
		}
		if !allow(tokRes) {
			return nil, tokRes, false, nil
		}
	}
	switch {
	case bad != nil:
		return bad, tokRes, false, nil
	case !row.found:
		return NotFoundResult(), tokRes, false, nil
	}
	res, exact = c.decide(row.key, row.secretEnds, req, row.tat, true)
	return res, tokRes, exact, nil
}

// keyRow is a key as read for a verification, with the database's version
// at that read.
type keyRow struct {
	found      bool
	version    int64
	key        *Key
	secretEnds *time.Time
	tat        int64
}

func (c *sqliteChecker) malformed(req VerifyRequest) *VerifyResult {
	if _, err := apikey.Parse(req.Token); err != nil {
		return MalformedResult()
	}
	return nil
}

// lookup finds the key a digest belongs to.
func (c *sqliteChecker) lookup(ctx context.Context, digest []byte) (keyRow, error) {
	var r keyRow
	k, ends, err := c.s.scanVerifyRow(c.stmt.QueryRowContext(ctx, digest), digest, &r.tat, &r.version)
	r.found, r.key, r.secretEnds = k != nil, k, ends
	return r, err
}

// token verifies a caller's token, reusing its last valid verification if
// the database is still at the version it was made at.
func (c *sqliteChecker) token(ctx context.Context, req VerifyRequest, version int64) (*VerifyResult, bool, error) {
	digest := apikey.Digest(req.Token, c.s.pepper)
	c.cacheMu.Lock()
	tc, ok := c.cache[string(digest)]
	c.cacheMu.Unlock()
	if ok && tc.version == version {
		k := tc.key
		k.Scopes, k.AllowedIPs = slices.Clone(k.Scopes), slices.Clone(k.AllowedIPs)
		res, exact := c.decide(&k, tc.secretEnds, req, 0, false)
		return res, exact, nil
	}
	row, err := c.lookup(ctx, digest)
	if err != nil || !row.found {
		return NotFoundResult(), false, err
	}
	snapshot := tokenCheck{version: row.version, key: *row.key, secretEnds: row.secretEnds}
	res, exact := c.decide(row.key, row.secretEnds, req, row.tat, true)
	if res != nil && res.Code == Valid {
		c.cacheMu.Lock()
		if len(c.cache) > 10000 {
			clear(c.cache)
		}
		c.cache[string(digest)] = snapshot
		c.cacheMu.Unlock()
	}
	return res, exact, nil
}

// decide judges a key read from the database (or reused) and queues its
// use, or reports that the verification must be exact.
func (c *sqliteChecker) decide(k *Key, secretEnds *time.Time, req VerifyRequest, tat int64, fresh bool) (*VerifyResult, bool) {
	now := c.s.now()
	k.Status = StatusAt(k.stored, k.ExpiresAt, now)
	spends := req.Cost > 0 && (k.RateLimit != nil || k.QuotaRemaining != nil)
	if spends && !fresh {
		return nil, true
	}
	res := decide(k, secretEnds, req, now, &tat)
	if spends && (res.Code == Valid || res.Code == RateLimited || res.Code == QuotaExceeded) {
		return nil, true // decided in a write transaction, with the current counters
	}
	ip := markUsed(k, req, now)
	c.uses <- use{keyID: k.ID, at: now, code: res.Code, ip: ip}
	return res, false
}

// record writes queued uses, as soon as one is waiting and no more often
// than the writer can take them: whatever queues meanwhile (up to flushEvery
// later) goes into the same transaction. A flush request writes at once.
func (c *sqliteChecker) record() {
	var (
		batch   []use
		flushes []chan struct{}
		err     error
	)
	add := func(u use) {
		if u.flushed != nil {
			flushes = append(flushes, u.flushed)
		} else {
			batch = append(batch, u)
		}
	}
	lastPrune := time.Now()
	for u := range c.uses {
		if time.Since(lastPrune) > pruneEvery {
			if perr := c.s.PruneUsage(context.Background()); perr != nil {
				err = errors.Join(err, perr)
			}
			lastPrune = time.Now()
		}
		batch, flushes = batch[:0], flushes[:0]
		add(u)
		deadline := time.NewTimer(flushEvery)
	fill:
		for len(batch) < flushBatch && len(flushes) == 0 {
			select {
			case u, ok := <-c.uses:
				if !ok {
					break fill
				}
				add(u)
			case <-deadline.C:
				break fill
			}
		}
		deadline.Stop()
		if len(batch) > 0 {
			if ferr := c.s.recordUses(context.Background(), batch); ferr != nil {
				err = errors.Join(err, ferr)
			}
		}
		for _, f := range flushes {
			close(f)
		}
	}
	c.done <- err
}

func (c *sqliteChecker) Flush(ctx context.Context) error {
	f := make(chan struct{})
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return nil // Close wrote everything
	}
	c.uses <- use{flushed: f}
	c.mu.RUnlock()
	select {
	case <-f:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *sqliteChecker) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		close(c.uses)
		c.mu.Unlock()
		err := <-c.done
		c.stmt.Close()
		c.version.Close()
		c.closeErr = errors.Join(err, c.read.Close())
	})
	return c.closeErr
}

// recordUses adds uses to their keys' usage logs, in one transaction.
func (s *SQLite) recordUses(ctx context.Context, uses []use) error {
	byKey := map[string][]use{}
	var order []string
	for _, u := range uses {
		if _, ok := byKey[u.keyID]; !ok {
			order = append(order, u.keyID)
		}
		byKey[u.keyID] = append(byKey[u.keyID], u)
	}
	return s.writeTx(ctx, func(tx *writeTx) error {
		for _, id := range order {
			us := byKey[id]
			var count int64
			var lastIP string
			if err := tx.queryRow(lastUseQuery, id).Scan(&count, &lastIP); err != nil {
				return fmt.Errorf("recording the use of %s: %w", id, err)
			}
			if err := logUses(tx, id, count+1, lastIP, us); err != nil {
				return err
			}
			if err := s.pruneUsage(tx, id, count+1, count+int64(len(us))); err != nil {
				return err
			}
		}
		return nil
	})
}

// lastUseQuery reads a key's usage count and last address.
const lastUseQuery = `SELECT ` + usageCountExpr + `, ` + lastUsedIPExpr + ` FROM keys k ` + usageJoin + ` WHERE k.id = ?`

// logChunk is how many uses one INSERT statement logs.
const logChunk = 64

var logChunkQuery = "INSERT INTO usage_events (key_id, n, at, code, ip, last_ip) VALUES (?, ?, ?, ?, ?, ?)" +
	strings.Repeat(", (?, ?, ?, ?, ?, ?)", logChunk-1)

// logUses adds a key's uses, numbered from first, to the usage log: a chunk
// of them a statement, the rest one by one. lastIP is the address of the
// last use before them that gave one; each entry carries it forward.
func logUses(tx *writeTx, keyID string, first int64, lastIP string, us []use) error {
	args := make([]any, 0, 6*logChunk)
	for len(us) > 0 {
		chunk, query := us[:1], logUseQuery
		if len(us) >= logChunk {
			chunk, query = us[:logChunk], logChunkQuery
		}
		args = args[:0]
		for i, u := range chunk {
			if u.ip != "" {
				lastIP = u.ip
			}
			args = append(args, keyID, first+int64(i), u.at.UnixMilli(), u.code, u.ip, lastIP)
		}
		if err := tx.exec(query, args...); err != nil {
			return err
		}
		us, first = us[len(chunk):], first+int64(len(chunk))
	}
	return nil
}
