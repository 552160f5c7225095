package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
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
//
// A caller's own token comes again and again: each reader keeps its last
// valid verification of each token, and reuses it while PRAGMA
// data_version on that reader's connection holds, that is while no other
// connection (this process's writer, another keyctl, the sqlite3 shell) has
// committed anything. SQLite tells every change that way, whoever makes it,
// at the cost of reading one counter.

const (
	flushEvery = 20 * time.Millisecond // how long a use waits, at most, to be written
	flushBatch = 1024                  // uses written by one transaction, at most
	queueUses  = 1024                  // uses waiting for a transaction, at most
	pruneEvery = time.Hour             // how often the whole usage log is trimmed
	maxCached  = 10000                 // token verifications a reader keeps
	queryConns = 2                     // connections for admin calls' reads
)

type checker struct {
	s       *SQLite
	read    *sql.DB
	readers chan *reader
	uses    chan use
	done    chan error

	mu     sync.RWMutex // held for reading while sending on uses
	closed bool

	closeOnce sync.Once
	closeErr  error
}

// reader is one reader connection, used by one verification at a time, with
// its statements (prepared on the driver's connection, as the writer's are:
// database/sql costs more than the queries) and its cache of token
// verifications.
type reader struct {
	conn        *sql.Conn
	lookup      driver.Stmt
	dataVersion driver.Stmt
	cache       map[string]tokenCheck // by digest
}

// use is one verification to record: the key, when, the result, the
// address; or, with flushed set, a request to write what came before it now
// and then send the write's failure (or nil) on flushed.
type use struct {
	keyID   string
	at      time.Time
	code    keys.Code
	ip      string
	flushed chan error
}

// fastPath returns the store's checker, opening it the first time.
func (s *SQLite) fastPath() (*checker, error) {
	s.fastMu.Lock()
	defer s.fastMu.Unlock()
	if s.closed {
		return nil, keys.ErrClosed
	}
	if err := s.writable(); err != nil {
		return nil, err
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
// a valid verification is reused for as long as nothing has changed in the
// database (its use is still recorded, and expiry, address and grace are
// judged anew each time).
func (s *SQLite) CheckToken(ctx context.Context, req keys.VerifyRequest) (*keys.VerifyResult, bool, error) {
	c, err := s.fastPath()
	if err != nil {
		return nil, false, err
	}
	return c.CheckToken(ctx, req)
}

// CheckCall is CheckToken for a caller's token and then, only if allow
// permits its result, Check for req, on one reader.
func (s *SQLite) CheckCall(ctx context.Context, token keys.VerifyRequest, allow func(*keys.VerifyResult) bool, req keys.VerifyRequest) (res, tokRes *keys.VerifyResult, exact bool, err error) {
	c, err := s.fastPath()
	if err != nil {
		return nil, nil, false, err
	}
	return c.CheckCall(ctx, token, allow, req)
}

// reads is the pool that reads outside a transaction go to: a long-running
// server's readers, once the fast path is open, so that a page of keys
// never holds the one writer (and with it every write) for its duration;
// the writer's connection in a short-lived process.
func (s *SQLite) reads() *sql.DB {
	s.fastMu.Lock()
	defer s.fastMu.Unlock()
	if s.fast != nil {
		return s.fast.read
	}
	return s.db
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
	// Each reader holds a connection of its own; the rest are for the
	// reads of admin calls (s.reads), which so never wait on the writer.
	read.SetMaxOpenConns(readers + queryConns)
	read.SetMaxIdleConns(readers + queryConns)
	c := &checker{s: s, read: read, readers: make(chan *reader, readers),
		uses: make(chan use, queueUses), done: make(chan error, 1)}
	for range readers {
		r := &reader{}
		if err := r.open(read); err != nil {
			read.Close()
			return nil, fmt.Errorf("preparing a reader: %w", err)
		}
		c.readers <- r
	}
	go c.record()
	return c, nil
}

// open takes a connection of its own from db and prepares the reader's
// statements on it: data_version is a property of one connection.
func (r *reader) open(db *sql.DB) error {
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	*r = reader{conn: conn, cache: map[string]tokenCheck{}}
	err = conn.Raw(func(dc any) error {
		pc, ok := dc.(driver.ConnPrepareContext)
		if !ok {
			return fmt.Errorf("sqlite driver: %T cannot prepare statements", dc)
		}
		var err error
		if r.lookup, err = pc.PrepareContext(ctx, verifyKeyQuery); err != nil {
			return err
		}
		r.dataVersion, err = pc.PrepareContext(ctx, `PRAGMA data_version`)
		return err
	})
	if err != nil {
		r.close()
	}
	return err
}

// row runs one of the reader's statements on its connection.
func (r *reader) row(ctx context.Context, st driver.Stmt, scan func(driverRow) error, args ...any) error {
	return r.conn.Raw(func(any) error { return scan(stmtRow(ctx, st, args...)) })
}

func (r *reader) close() {
	if r.conn != nil {
		r.conn.Raw(func(any) error {
			for _, st := range []driver.Stmt{r.lookup, r.dataVersion} {
				if st != nil {
					st.Close()
				}
			}
			return nil
		})
		r.conn.Close()
		*r = reader{}
	}
}

// acquire takes a reader from the pool, reopening it if a failure closed it.
func (c *checker) acquire(ctx context.Context) (*reader, error) {
	select {
	case r := <-c.readers:
		if r.conn == nil {
			if err := r.open(c.read); err != nil {
				c.readers <- r
				return nil, err
			}
		}
		return r, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// release returns a reader to the pool; after a failure other than a
// canceled request, its connection is closed, to be opened anew.
func (c *checker) release(r *reader, err error) {
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		r.close()
	}
	c.readers <- r
}

// tokenCheck is a key as a valid verification of a token found it, at a
// data_version of the reader's connection.
type tokenCheck struct {
	version    int64
	key        keys.Key
	secretEnds *time.Time
}

func (c *checker) Check(ctx context.Context, req keys.VerifyRequest) (*keys.VerifyResult, bool, error) {
	res, _, exact, err := c.CheckCall(ctx, keys.VerifyRequest{}, nil, req)
	return res, exact, err
}

func (c *checker) CheckToken(ctx context.Context, req keys.VerifyRequest) (res *keys.VerifyResult, exact bool, err error) {
	if bad := c.malformed(req); bad != nil {
		return bad, false, nil
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return nil, false, keys.ErrClosed
	}
	r, err := c.acquire(ctx)
	if err != nil {
		return nil, false, err
	}
	defer func() { c.release(r, err) }()
	return c.token(ctx, r, req)
}

// CheckCall verifies a caller's token and then, only if allow says its
// result permits, req: the key asked about is not even looked up for a
// caller that has not authenticated, so that it learns nothing of it, not
// even from the time the answer takes. It returns req's result (nil when
// the token does not allow it) and the token's. exact with a token result
// means req must be verified in a write transaction; exact without one,
// that the token must be (and then req). With an empty token, only req is
// verified.
func (c *checker) CheckCall(ctx context.Context, token keys.VerifyRequest, allow func(*keys.VerifyResult) bool, req keys.VerifyRequest) (res, tokRes *keys.VerifyResult, exact bool, err error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return nil, nil, false, keys.ErrClosed
	}
	r, err := c.acquire(ctx)
	if err != nil {
		return nil, nil, false, err
	}
	defer func() { c.release(r, err) }()
	if token.Token != "" {
		if tokRes = c.malformed(token); tokRes == nil {
			if tokRes, exact, err = c.token(ctx, r, token); err != nil || exact {
				// A token that spends quota or rate limit is verified
				// exactly, and the call with it.
				return nil, nil, exact, err
			}
		}
		if !allow(tokRes) {
			return nil, tokRes, false, nil
		}
	}
	if bad := c.malformed(req); bad != nil {
		return bad, tokRes, false, nil
	}
	row, err := r.find(ctx, c.s, apikey.Digest(req.Token, c.s.pepper))
	if err != nil {
		return nil, nil, false, err
	}
	if !row.found {
		return keys.NotFoundResult(), tokRes, false, nil
	}
	res, exact = c.decide(row.key, row.secretEnds, req, row.tat, true)
	return res, tokRes, exact, nil
}

// keyRow is a key as read for a verification.
type keyRow struct {
	found      bool
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

// find looks up the key a digest belongs to.
func (r *reader) find(ctx context.Context, s *SQLite, digest []byte) (keyRow, error) {
	var row keyRow
	err := r.row(ctx, r.lookup, func(dr driverRow) error {
		k, ends, err := s.scanVerifyRow(dr, digest, &row.tat)
		row.found, row.key, row.secretEnds = k != nil, k, ends
		return err
	}, digest)
	return row, err
}

// token verifies a caller's token, reusing its last valid verification on
// this reader if nothing was committed since: the data_version is read
// before the key, so that a snapshot is never newer than its version.
func (c *checker) token(ctx context.Context, r *reader, req keys.VerifyRequest) (*keys.VerifyResult, bool, error) {
	var version int64
	if err := r.row(ctx, r.dataVersion, func(dr driverRow) error { return dr.Scan(&version) }); err != nil {
		return nil, false, err
	}
	digest := apikey.Digest(req.Token, c.s.pepper)
	if tc, ok := r.cache[string(digest)]; ok && tc.version == version {
		k := tc.key
		res, exact := c.decide(&k, tc.secretEnds, req, 0, false)
		return res, exact, nil
	}
	row, err := r.find(ctx, c.s, digest)
	if err != nil || !row.found {
		return keys.NotFoundResult(), false, err
	}
	snapshot := tokenCheck{version: version, key: *row.key, secretEnds: row.secretEnds}
	res, exact := c.decide(row.key, row.secretEnds, req, row.tat, true)
	if res != nil && res.Code == keys.Valid {
		// A map emptied when full, not an LRU: the tokens that call a
		// server are few and come again and again, and on that load (a hit
		// from two goroutines, an add every 64 calls) the map took 38-56 ns
		// a call and github.com/hashicorp/golang-lru/v2 99-107 ns, measured
		// side by side; the map is also a few lines, not a dependency.
		if len(r.cache) >= maxCached {
			clear(r.cache)
		}
		r.cache[string(digest)] = snapshot
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
// later) goes into the same transaction. A flush request writes at once. A
// failure is reported when it happens (SQLite.OnBackgroundError), with the
// number of uses it lost; Close reports the count again.
func (c *checker) record() {
	var (
		batch   []use
		flushes []chan error
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
			if err := c.s.PruneUsage(context.Background()); err != nil {
				c.s.bg.Failed(fmt.Errorf("pruning the usage log: %w", err))
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
		var err error
		if len(batch) > 0 {
			if err = c.s.recordUses(context.Background(), batch); err != nil {
				err = fmt.Errorf("recording %d uses: %w", len(batch), err)
				c.s.bg.WriteFailed(err, len(batch))
			} else {
				c.s.bg.Recorded(len(batch))
			}
		}
		for _, f := range flushes {
			f <- err
		}
	}
	c.done <- c.s.bg.Summary()
}

func (c *checker) Flush(ctx context.Context) error {
	f := make(chan error, 1)
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return nil // Close wrote everything
	}
	c.uses <- use{flushed: f}
	c.mu.RUnlock()
	select {
	case err := <-f:
		return err
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
		for range cap(c.readers) {
			(<-c.readers).close()
		}
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
