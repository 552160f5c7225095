package store

import (
	"context"
	"fmt"

	"github.com/keyctl/keyctl/store/dump"
	"github.com/keyctl/keyctl/store/keys"
)

// Copied counts what Copy copied.
type Copied struct {
	Keys    int64 `json:"keys"`
	Secrets int64 `json:"secrets"`
	Uses    int64 `json:"uses"`
	Entries int64 `json:"audit_entries"`
}

// Copy copies the whole of src into dst, which must be empty: keys with
// their secrets' digests and all their state, the usage log and the audit
// chain as written, so that every secret keeps working on dst (under the
// same pepper) and its audit chain verifies. dst is written in one
// transaction: a failure half-way leaves it empty.
func Copy(ctx context.Context, src, dst Store) (Copied, error) {
	var n Copied
	d, ok := src.(Dumper)
	if !ok {
		return n, fmt.Errorf("%w: the source cannot be copied (a keyctl server holds no digests to give)", keys.ErrInvalid)
	}
	l, ok := dst.(Loader)
	if !ok {
		return n, fmt.Errorf("%w: the destination cannot be written whole (copy to a local database or PostgreSQL)", keys.ErrInvalid)
	}
	items := func(yield func(dump.Item, error) bool) {
		n = Copied{}
		for it, err := range d.Dump(ctx) {
			switch {
			case it.Key != nil:
				n.Keys++
				n.Secrets += int64(len(it.Key.Secrets))
			case it.Use != nil:
				n.Uses++
			case it.Entry != nil:
				n.Entries++
			}
			if !yield(it, err) {
				return
			}
		}
	}
	if err := l.Load(ctx, items); err != nil {
		return Copied{}, err
	}
	return n, nil
}
