package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/keyctl/keyctl/apikey"
	"github.com/keyctl/keyctl/store/decide"
	"github.com/keyctl/keyctl/store/keys"
)

// The fast path verifies keys for a long-running server. Most
// verifications change nothing but a key's usage: Check decides those with a
// read on a pool of reader connections, beside other requests and beside the
// one writer, and records their use in the background, many uses to a
// transaction. A verification that would spend quota or rate limit is not
// decided there: Check reports it as exact, and the caller verifies it with
// VerifyBatch, in a write transaction, so that quotas stay exact across
// processes. The readers are opened at the first check.

const (
	flushEvery = 20 * time.Millisecond // how long a use waits, at most, to be written
	flushBatch = 1024                  // uses written by one transaction, at most
	pruneEvery = time.Hour             // how often the whole usage log is trimmed
)

type checker struct {
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
	code    keys.Code
	ip      string
	flushed chan struct{}
}

// fastPath returns the store's checker, opening it the first time.
func (s *SQLite) fastPath() (*checker, error) {
	s.fastMu.Lock()
	defer s.fastMu.Unlock()
	if s.closed {
		return nil, keys.ErrClosed
	}
	if s.fast == nil {
		c, err := s.newChecker(s.readers)
		if err != nil {
			return nil, err
		}
		s.fast = c
	}
	return s.fast, nil
}

// Check verifies req on a reader when that decides it; exact reports that it
// must be verified with VerifyBatch instead.
func (s *SQLite) Check(ctx context.Context, req keys.VerifyRequest) (*keys.VerifyResult, bool, error) {
	c, err := s.fastPath()
	if err != nil {
		return nil, false, err
	}
	return c.Check(ctx, req)
}

// CheckToken is Check for a caller's own token, which comes again and again:
// a valid verification is reused for as long as nothing it depends on has
// changed in the database (its use is still recorded, and expiry, address and
// grace are judged anew each time).
func (s *SQLite) CheckToken(ctx context.Context, req keys.VerifyRequest) (*keys.VerifyResult, bool, error) {
	c, err := s.fastPath()
	if err != nil {
		return nil, false, err
	}
	return c.CheckToken(ctx, req)
}

// CheckCall is CheckToken for a caller's token and then, if allow permits,
// Check for req, with one read for both when it can.
func (s *SQLite) CheckCall(ctx context.Context, token keys.VerifyRequest, allow func(*keys.VerifyResult) bool, req keys.VerifyRequest) (res, tokRes *keys.VerifyResult, exact bool, err error) {
	c, err := s.fastPath()
	if err != nil {
		return nil, nil, false, err
	}
	return c.CheckCall(ctx, token, allow, req)
}

// Flush returns once every use checked so far is written, so that what is
// read next sees them.
func (s *SQLite) Flush(ctx context.Context) error {
	s.fastMu.Lock()
	c := s.fast
	s.fastMu.Unlock()
	if c == nil {
		return nil
	}
	return c.Flush(ctx)
}

// newChecker opens a pool of readers beside the store's writer and starts
// the goroutine that records uses.
func (s *SQLite) newChecker(readers int) (*checker, error) {
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
	c := &checker{s: s, read: read, stmt: stmt, version: version, cache: map[string]tokenCheck{},
		uses: make(chan use, 4*flushBatch), done: make(chan error, 1)}
	go c.record()
	return c, nil
}

// tokenCheck is a key as a valid verification of a token found it, at a
// version of the database.
type tokenCheck struct {
	version    int64
	key        keys.Key
	secretEnds *time.Time
}

func (c *checker) Check(ctx context.Context, req keys.VerifyRequest) (*keys.VerifyResult, bool, error) {
	res, _, exact, err := c.CheckCall(ctx, keys.VerifyRequest{}, nil, req)
	return res, exact, err
}

func (c *checker) CheckToken(ctx context.Context, req keys.VerifyRequest) (*keys.VerifyResult, bool, error) {
	if bad := c.malformed(req); bad != nil {
		return bad, false, nil
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return nil, false, keys.ErrClosed
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
func (c *checker) CheckCall(ctx context.Context, token keys.VerifyRequest, allow func(*keys.VerifyResult) bool, req keys.VerifyRequest) (res, tokRes *keys.VerifyResult, exact bool, err error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return nil, nil, false, keys.ErrClosed
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
		return keys.NotFoundResult(), tokRes, false, nil
	}
	res, exact = c.decide(row.key, row.secretEnds, req, row.tat, true)
	return res, tokRes, exact, nil
}

// keyRow is a key as read for a verification, with the database's version
// at that read.
type keyRow struct {
	found      bool
	version    int64
	key        *keys.Key
	secretEnds *time.Time
	tat        int64
}

func (c *checker) malformed(req keys.VerifyRequest) *keys.VerifyResult {
	if _, err := apikey.Parse(req.Token); err != nil {
		return keys.MalformedResult()
	}
	return nil
}

// lookup finds the key a digest belongs to.
func (c *checker) lookup(ctx context.Context, digest []byte) (keyRow, error) {
	var r keyRow
	k, ends, err := c.s.scanVerifyRow(c.stmt.QueryRowContext(ctx, digest), digest, &r.tat, &r.version)
	r.found, r.key, r.secretEnds = k != nil, k, ends
	return r, err
}

// token verifies a caller's token, reusing its last valid verification if
// the database is still at the version it was made at.
func (c *checker) token(ctx context.Context, req keys.VerifyRequest, version int64) (*keys.VerifyResult, bool, error) {
	digest := apikey.Digest(req.Token, c.s.pepper)
	c.cacheMu.Lock()
	tc, ok := c.cache[string(digest)]
	c.cacheMu.Unlock()
	if ok && tc.version == version {
		k := tc.key
		res, exact := c.decide(&k, tc.secretEnds, req, 0, false)
		return res, exact, nil
	}
	row, err := c.lookup(ctx, digest)
	if err != nil || !row.found {
		return keys.NotFoundResult(), false, err
	}
	snapshot := tokenCheck{version: row.version, key: *row.key, secretEnds: row.secretEnds}
	res, exact := c.decide(row.key, row.secretEnds, req, row.tat, true)
	if res != nil && res.Code == keys.Valid {
		// A map emptied when full, not an LRU: the tokens that call a
		// server are few and come again and again, and on that load (a hit
		// from two goroutines, an add every 64 calls) the map took 38-56 ns
		// a call and github.com/hashicorp/golang-lru/v2 99-107 ns, measured
		// side by side; the map is also a few lines, not a dependency.
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
func (c *checker) decide(k *keys.Key, secretEnds *time.Time, req keys.VerifyRequest, tat int64, fresh bool) (*keys.VerifyResult, bool) {
	exact := decide.Exact(k, req)
	if exact && !fresh {
		return nil, true
	}
	out := decide.Decide(decide.State{Key: k, SecretEnds: secretEnds, RateTAT: tat}, req, c.s.now())
	switch out.Result.Code {
	case keys.Valid, keys.RateLimited, keys.QuotaExceeded:
		if exact {
			return nil, true // decided in a write transaction, with the current counters
		}
	}
	c.uses <- use{keyID: k.ID, at: out.Use.At, code: out.Use.Code, ip: out.Use.IP}
	return out.Result, false
}

// record writes queued uses, as soon as one is waiting and no more often
// than the writer can take them: whatever queues meanwhile (up to flushEvery
// later) goes into the same transaction. A flush request writes at once.
func (c *checker) record() {
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

func (c *checker) Flush(ctx context.Context) error {
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

func (c *checker) Close() error {
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
