package store

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/keyctl/keyctl/store/postgres"
	"github.com/keyctl/keyctl/store/remote"
	"github.com/keyctl/keyctl/store/sqlite"
)

// Options configure the store Open returns; each backend takes what applies
// to it.
type Options struct {
	// Pepper, when set, makes stored digests HMAC-SHA256 under it (local
	// databases).
	Pepper []byte
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// UsageRetention is how long verifications stay in the usage log; the
	// backend's default when zero.
	UsageRetention time.Duration
	// MustExist refuses to create a local database when there is none at
	// the path (sqlite.ErrNoDatabase): a command that only reads never
	// makes one.
	MustExist bool
	// Token authenticates to a keyctl server (remote mode).
	Token string
	// HTTPClient talks to a keyctl server; a default one when nil.
	HTTPClient *http.Client
	// NoMigrate opens a PostgreSQL database without applying pending
	// migrations (keyctl migrate applies them itself).
	NoMigrate bool
	// AllowPlainHTTP lets remote mode talk plain http:// to an address
	// that is not loopback (refused otherwise: the token would cross the
	// network in clear text).
	AllowPlainHTTP bool
}

// Open opens the store at addr, choosing the backend by its form:
//
//	/path/to/keyctl.db, sqlite:/path/to/keyctl.db   the embedded SQLite database
//	postgres://user@host/db, postgresql://…         a PostgreSQL database several servers share
//	http://host:port, https://host                 a keyctl server (remote mode)
func Open(ctx context.Context, addr string, opts Options) (Store, error) {
	switch {
	case addr == "":
		return nil, fmt.Errorf("no database: set --db or KEYCTL_DB")
	case IsRemote(addr):
		var ro []remote.Option
		if opts.AllowPlainHTTP {
			ro = append(ro, remote.AllowPlainHTTP)
		}
		return remote.New(addr, opts.Token, opts.HTTPClient, ro...)
	case IsPostgres(addr):
		return postgres.Open(ctx, addr, postgres.Options{Pepper: opts.Pepper, Now: opts.Now,
			UsageRetention: opts.UsageRetention, NoMigrate: opts.NoMigrate})
	}
	return OpenSQLite(ctx, strings.TrimPrefix(addr, "sqlite:"), opts)
}

// IsRemote reports whether addr names a keyctl server.
func IsRemote(addr string) bool {
	return strings.HasPrefix(addr, "http://") || strings.HasPrefix(addr, "https://")
}

// IsPostgres reports whether addr names a PostgreSQL database.
func IsPostgres(addr string) bool {
	return strings.HasPrefix(addr, "postgres://") || strings.HasPrefix(addr, "postgresql://")
}

// Redact is addr without its passwords, for messages: a path as it is, a
// URL without the password it may hold.
func Redact(addr string) string {
	if IsPostgres(addr) {
		return postgres.Redact(addr)
	}
	if IsRemote(addr) {
		if u, err := url.Parse(addr); err == nil {
			return u.Redacted()
		}
	}
	return addr
}

// OpenSQLite opens the SQLite database at path.
func OpenSQLite(ctx context.Context, path string, opts Options) (*sqlite.SQLite, error) {
	return sqlite.Open(ctx, path, sqlite.Options{Pepper: opts.Pepper, Now: opts.Now, UsageRetention: opts.UsageRetention,
		MustExist: opts.MustExist})
}
