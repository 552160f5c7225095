package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ApplicationID marks a SQLite file as keyctl's (PRAGMA application_id):
// "keyc".
const ApplicationID = 0x6b657963

// ErrNoDatabase: there is no database at the path, and the command only
// reads (it never creates one).
var ErrNoDatabase = errors.New("no keyctl database")

// ErrForeign: the file is not a keyctl database; keyctl leaves it as it is.
var ErrForeign = errors.New("not a keyctl database")

// Opening a database takes care never to change a file that is not
// keyctl's, nor to need writing one that is only read:
//
//   - a missing file is created (0600, in a directory made 0700), unless
//     the caller only reads (Options.MustExist);
//   - an existing file is first inspected read-only: a file that is not
//     SQLite, or a SQLite database that keyctl did not make (its
//     application id is not keyctl's, and it has not keyctl's tables), is
//     refused before anything is written to it;
//   - a file that cannot be written (a read-only file, directory or mount,
//     a forensic copy) is opened read-only: everything reads, every change
//     is refused with ErrReadOnly.
//
// A database's schema is brought up to date in one transaction, which also
// sets its application id; its journal becomes WAL only after that.

// dsnParams are the connection settings of a writable database.
//
// synchronous=NORMAL in WAL mode keeps commits from waiting on a disk sync
// (a power loss may lose the last commits, never corrupt the file);
// immediate transactions take the write lock up front so that concurrent
// processes queue on the busy timeout instead of failing halfway with
// "database is locked". Memory-mapped reads keep a lookup in a large
// database from costing a system call per page. The page cache (16 MB)
// then holds mostly the pages a transaction writes; SQLite scans it at the
// end of some transactions, so a larger one made commits slower, not
// faster.
const dsnParams = "_busy_timeout=30000&_synchronous=NORMAL&_fk=1&_txlock=immediate" +
	"&_pragma=mmap_size(1073741824)&_pragma=cache_size(-16000)"

// busyTimeout is how long a writer waits for the write lock (dsnParams).
const busyTimeout = 30 * time.Second

// Open opens the database at path (see above), brings its schema up to
// date, and checks that the configured pepper is the one it was made with.
func Open(ctx context.Context, path string, opts Options) (*SQLite, error) {
	fresh, err := prepareFile(path, !opts.MustExist)
	if err != nil {
		return nil, err
	}
	if !fresh {
		if err := inspect(ctx, path); err != nil {
			return nil, err
		}
	}
	s := &SQLite{pepper: opts.Pepper, now: opts.Now, retention: opts.UsageRetention, path: path, readers: opts.Readers}
	if s.readers <= 0 {
		s.readers = DefaultReaders
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.retention <= 0 {
		s.retention = DefaultUsageRetention
	}
	if err = s.openWritable(ctx); isReadOnlyErr(err) {
		err = s.openReadOnly(ctx)
	}
	if err != nil {
		if s.db != nil {
			s.db.Close()
		}
		return nil, fmt.Errorf("opening database %s: %w", path, err)
	}
	if err := s.checkPepper(ctx); err != nil {
		s.db.Close()
		return nil, err
	}
	return s, nil
}

// prepareFile creates the database file when it is missing and may be, and
// reports whether it is new (missing or empty): keyctl's to set up.
func prepareFile(path string, create bool) (fresh bool, err error) {
	info, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !create:
		return false, fmt.Errorf("%w at %s", ErrNoDatabase, path)
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return false, fmt.Errorf("creating database directory: %w", err)
		}
		// Created here, so that its mode is 0600 whatever the umask;
		// SQLite gives the -wal and -shm files the database file's mode.
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return false, fmt.Errorf("creating database: %w", err)
		}
		return true, f.Close()
	case err != nil:
		return false, fmt.Errorf("opening database: %w", err)
	case info.IsDir():
		return false, fmt.Errorf("opening database: %s is a directory", path)
	}
	return info.Size() == 0, nil
}

// uri is the SQLite URI of a file, with query parameters.
func uri(path, query string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: query}
	if !strings.HasPrefix(u.Path, "/") {
		u.Path = "/" + u.Path // a Windows drive: file:///C:/...
	}
	return u.String()
}

// openReadOnlyDB opens a read-only connection pool: mode=ro, or immutable
// when SQLite cannot open the WAL index (a read-only directory without the
// -shm file; no process can be writing the database then).
func openReadOnlyDB(ctx context.Context, path string) (*sql.DB, error) {
	var last error
	for _, q := range []string{"mode=ro&_busy_timeout=30000", "mode=ro&immutable=1"} {
		db, err := sql.Open("sqlite", uri(path, q+"&_pragma=mmap_size(1073741824)"))
		if err != nil {
			return nil, err
		}
		var n int
		if last = db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master`).Scan(&n); last == nil {
			return db, nil
		}
		db.Close()
		if !isReadOnlyErr(last) && !strings.Contains(last.Error(), "unable to open") {
			break
		}
	}
	return nil, last
}

// inspect refuses a file that is not a keyctl database, reading it only.
func inspect(ctx context.Context, path string) error {
	db, err := openReadOnlyDB(ctx, path)
	if err != nil {
		if strings.Contains(err.Error(), "not a database") {
			return fmt.Errorf("%s is %w (it is not an SQLite file); keyctl leaves it as it is", path, ErrForeign)
		}
		return fmt.Errorf("opening database %s: %w", path, err)
	}
	defer db.Close()
	var app, version, tables int
	err = db.QueryRowContext(ctx, `SELECT (SELECT application_id FROM pragma_application_id),
		(SELECT user_version FROM pragma_user_version),
		(SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('keys', 'secrets', 'audit'))`).Scan(&app, &version, &tables)
	if err != nil {
		if strings.Contains(err.Error(), "not a database") {
			return fmt.Errorf("%s is %w (it is not an SQLite file); keyctl leaves it as it is", path, ErrForeign)
		}
		return fmt.Errorf("opening database %s: %w", path, err)
	}
	// Databases made before keyctl set its application id are known by
	// their schema.
	if app == ApplicationID || app == 0 && version >= 1 && tables == 3 {
		return nil
	}
	return fmt.Errorf("%s is an SQLite database that keyctl did not make (application id %#x, schema version %d): it is %w; keyctl leaves it as it is",
		path, app, version, ErrForeign)
}

// openWritable opens the one writer, brings the schema up to date, and
// switches the journal to WAL (readers beside the writer).
func (s *SQLite) openWritable(ctx context.Context) error {
	s.dsn = uri(s.path, "mode=rw&"+dsnParams)
	db, err := sql.Open("sqlite", s.dsn)
	if err != nil {
		return err
	}
	db.SetMaxOpenConns(1)
	s.db = db
	if err := probeWrite(ctx, db); err != nil {
		return err
	}
	if err := s.migrate(ctx); err != nil {
		return err
	}
	var mode string
	if err := db.QueryRowContext(ctx, `PRAGMA journal_mode = WAL`).Scan(&mode); err != nil {
		return err
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("the journal could not be switched to WAL (it is %s)", mode)
	}
	return nil
}

// probeWrite asks SQLite whether the database can be written: a database
// it could open only read-only (a read-only file, directory or mount)
// refuses a write transaction. The file itself is never opened here: on
// POSIX systems, closing any descriptor of a file drops every lock the
// process holds on it, SQLite's included.
//
// It does not wait for a writer: SQLite refuses a write transaction on a
// read-only database before it asks for the lock, so a database another
// connection is writing (busy) is one that can be written, and opening it
// does not queue behind that writer.
func probeWrite(ctx context.Context, db *sql.DB) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "PRAGMA busy_timeout = 0"); err != nil {
		return err
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), fmt.Sprintf("PRAGMA busy_timeout = %d", busyTimeout/time.Millisecond))
	_, err = conn.ExecContext(ctx, "BEGIN IMMEDIATE")
	switch {
	case err != nil && strings.Contains(err.Error(), "SQLITE_BUSY"):
		return nil
	case err != nil:
		return err
	}
	_, err = conn.ExecContext(ctx, "ROLLBACK")
	return err
}

// openReadOnly opens a database that cannot be written: it must be at this
// keyctl's schema, which it cannot be brought to.
func (s *SQLite) openReadOnly(ctx context.Context) error {
	if s.db != nil {
		s.db.Close()
		s.db = nil
	}
	db, err := openReadOnlyDB(ctx, s.path)
	if err != nil {
		return err
	}
	s.db, s.readOnly = db, true
	var v int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return err
	}
	switch {
	case v > SchemaVersion:
		return fmt.Errorf("database schema version %d is newer than this keyctl (%d): upgrade keyctl", v, SchemaVersion)
	case v < SchemaVersion:
		return fmt.Errorf("the database is read-only, and its schema (version %d) is older than this keyctl's (%d): open a writable copy once to bring it up to date", v, SchemaVersion)
	}
	return nil
}

// isReadOnlyErr reports whether err says the database cannot be written.
func isReadOnlyErr(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "readonly") || strings.Contains(msg, "read-only") || strings.Contains(msg, "unable to open database file")
}
