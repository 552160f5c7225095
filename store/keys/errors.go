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
	// ErrForbidden: the actor may not make this change (Authorize).
	ErrForbidden = errors.New("forbidden")
)
