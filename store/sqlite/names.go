package sqlite

import (
	"context"
	"database/sql"

	"github.com/keyctl/keyctl/store/keys"
)

// NewID returns a public, non-secret key id: "key_" and 16 base62 characters.
func NewID() (string, error) { return keys.NewID() }

// generateName returns a readable name no other live key has, such as
// "swift-otter-4821".
func (s *SQLite) generateName(ctx context.Context, tx *sql.Tx) (string, error) {
	return keys.GenerateName(func(name string) (bool, error) { return s.nameInUse(ctx, tx, name) })
}
