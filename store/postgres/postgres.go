// Package postgres is the Store that several keyctl serve replicas share:
// one PostgreSQL database holds the keys, and every replica decides with
// store/decide on state it reads and writes in one transaction, so that
// quotas, rate limits and the audit chain stay exact whatever replica a
// request reaches. Each replica keeps the keys it verifies in memory and
// learns of every change through LISTEN/NOTIFY (see cache.go).
package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keyctl/keyctl/store/background"
	"github.com/keyctl/keyctl/store/keys"
)

// Options configure a PostgreSQL store.
type Options struct {
	// Pepper, when set, makes stored digests HMAC-SHA256 under it.
	Pepper []byte
	// Now is the clock of decisions and records; time.Now when nil.
	Now func() time.Time
	// UsageRetention is how long verifications stay in the usage log;
	// DefaultUsageRetention when zero.
	UsageRetention time.Duration
	// StaleAfter bounds how long the verification cache is trusted without
	// hearing its own heartbeat through the listening connection;
	// DefaultStaleAfter when zero.
	StaleAfter time.Duration
	// NoMigrate opens the database without applying pending migrations:
	// for keyctl migrate, which applies them itself.
	NoMigrate bool
}

// DefaultUsageRetention is how long the usage log keeps verifications.
const DefaultUsageRetention = 30 * 24 * time.Hour

// DefaultStaleAfter is how long the cache is trusted without a heartbeat.
const DefaultStaleAfter = 2 * time.Second

// defaultConnectTimeout bounds a connection attempt when the address sets
// no connect_timeout: an unreachable database is an answer (unavailable),
// not a hang.
const defaultConnectTimeout = 5 * time.Second

// Postgres is the Store on a PostgreSQL database.
type Postgres struct {
	pool       *pgxpool.Pool
	pepper     []byte
	now        func() time.Time
	retention  time.Duration
	staleAfter time.Duration
	addr       string // redacted, for messages

	pep pepperState
	bg  background.Tracker // the account of the uses the fast path records

	fastMu sync.Mutex
	fast   *verifier // the fast path, once a check has started it
	closed bool
}

// Open connects to the database at addr (a postgres:// URL, in which
// pool_max_conns and the other pgxpool settings apply)
// and brings its schema up to date under an advisory lock, so that
// replicas starting together migrate it once. A schema newer than this
// keyctl knows is refused.
func Open(ctx context.Context, addr string, opts Options) (*Postgres, error) {
	cfg, err := pgxpool.ParseConfig(addr)
	if err != nil {
		// pgx's error would repeat the address, password included.
		return nil, fmt.Errorf("%w: database address %s is not a valid postgres:// URL", keys.ErrInvalid, Redact(addr))
	}
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "keyctl"
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", Redact(addr), err)
	}
	p := &Postgres{pool: pool, pepper: opts.Pepper, now: opts.Now, retention: opts.UsageRetention,
		staleAfter: opts.StaleAfter, addr: Redact(addr)}
	if p.now == nil {
		p.now = time.Now
	}
	if p.retention <= 0 {
		p.retention = DefaultUsageRetention
	}
	if p.staleAfter <= 0 {
		p.staleAfter = DefaultStaleAfter
	}
	version := SchemaVersion
	if opts.NoMigrate {
		version, err = p.SchemaVersion(ctx)
	} else {
		_, _, err = p.Migrate(ctx)
	}
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("preparing database %s: %w", p.addr, classify(err))
	}
	// A schema left to keyctl migrate has no record of the pepper yet: the
	// next open checks it.
	if version == SchemaVersion {
		if err := p.checkPepper(ctx); err != nil {
			pool.Close()
			if !errors.Is(err, keys.ErrPepper) {
				err = fmt.Errorf("preparing database %s: %w", p.addr, classify(err))
			}
			return nil, err
		}
	}
	return p, nil
}

// Close records every use the fast path checked, stops listening, and
// closes the pool.
func (p *Postgres) Close() error {
	p.fastMu.Lock()
	fast := p.fast
	p.closed, p.fast = true, nil
	p.fastMu.Unlock()
	var err error
	if fast != nil {
		err = fast.close()
	}
	if p.pep.found.Load() {
		err = errors.Join(err, p.recordPepper(context.Background()))
	}
	p.pool.Close()
	return err
}

// OnBackgroundError has fn called, from the background goroutine, with each
// failure of background work as it happens (store.Background).
func (p *Postgres) OnBackgroundError(fn func(err error, lost int)) { p.bg.OnBackgroundError(fn) }

// UsageRecorded says how many uses the background has written, how many it
// could not, and the failure of its last write (store.Background).
func (p *Postgres) UsageRecorded() (recorded, lost int64, failing error) { return p.bg.UsageRecorded() }

// Redact hides the passwords of a database address, for messages: the
// URL's own and any password or sslpassword parameter. A key=value string
// is not repeated at all.
func Redact(addr string) string {
	u, err := url.Parse(addr)
	if err != nil || u.Scheme == "" {
		return "the database"
	}
	q := u.Query()
	for name := range q {
		if strings.Contains(strings.ToLower(name), "password") {
			q.Set(name, "xxxxx")
		}
	}
	u.RawQuery = q.Encode()
	return u.Redacted()
}

// tx runs fn in one transaction, committing when it returns nil. A
// transaction that lost a deadlock or a serialization conflict to another
// replica is run again, a few times.
func (p *Postgres) tx(ctx context.Context, fn func(pgx.Tx) error) error {
	var err error
	for range 5 {
		err = pgx.BeginFunc(ctx, p.pool, fn)
		if !retryable(err) {
			break
		}
	}
	return classify(err)
}

// txOnce runs fn in one transaction, never again: for a transaction with
// an effect outside the database (a secret delivered).
func (p *Postgres) txOnce(ctx context.Context, fn func(pgx.Tx) error) error {
	return classify(pgx.BeginFunc(ctx, p.pool, fn))
}
