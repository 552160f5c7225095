// Package keys says what keyctl administers: a key and its secrets, its
// status and environment, the requests made of it and their results, the
// audit trail's entries, and the errors every store returns. It is the one
// package every layer imports; it imports none of them.
package keys

import "errors"

// Errors every Store implementation returns, wrapped with %w. The command
// layer maps them to exit statuses in one place, the server to HTTP
// statuses in one place.
var (
	// ErrNotFound: no key has that id or name.
	ErrNotFound = errors.New("not found")
	// ErrRevoked: the key is revoked and the change is refused.
	ErrRevoked = errors.New("key is revoked")
	// ErrConflict: the change collides with another key (a name in use).
	ErrConflict = errors.New("conflict")
	// ErrInvalid: a value the store cannot accept.
	ErrInvalid = errors.New("invalid")
	// ErrClosed: the store is closing and takes no more requests.
	ErrClosed = errors.New("closed")
	// ErrUnavailable: the database cannot be reached, or cannot be
	// trusted to be current; nothing was decided. It passes: retry.
	ErrUnavailable = errors.New("the database is unavailable")
	// ErrForbidden: the actor may not make this change (Authorize).
	ErrForbidden = errors.New("forbidden")
	// ErrPepper: the configured pepper is not the one the database was
	// made with (or there is one, and the database has none, or the other
	// way round): every key would be NOT_FOUND.
	ErrPepper = errors.New("wrong pepper")
)
