// Package dump is the form in which a whole store moves to another
// (keyctl copy): every key with its secrets' digests and all its state, the
// usage log, and the audit chain as its rows were written, so that every
// secret keeps working and the chain still verifies on the copy. It holds
// digests: it is never printed, and never leaves the process.
package dump

import (
	"time"

	"github.com/keyctl/keyctl/store/chain"
	"github.com/keyctl/keyctl/store/keys"
)

// Item is one record of a dump: exactly one of its fields is set. A dump
// gives every Key first, then every Use (oldest first), then the audit
// Entries in sequence order, then the Head.
type Item struct {
	Key   *Key
	Use   *Use
	Entry *chain.Row
	Head  *Head
}

// Key is a key as stored: Key.Stored is its stored status, and its usage
// (count, last use, last address) is in Key.
type Key struct {
	Key     keys.Key
	RateTAT int64 // GCRA's theoretical arrival time, in Unix nanoseconds
	Secrets []Secret
}

// Secret is one of a key's secrets, by digest: its current one (EndsAt nil)
// or an older one that works until EndsAt.
type Secret struct {
	Digest    []byte
	Start     string
	CreatedAt time.Time
	EndsAt    *time.Time
}

// Use is one verification in the usage log.
type Use struct {
	KeyID string
	At    time.Time
	Code  keys.Code
	IP    string
}

// Head is the audit chain's head, kept apart from its entries.
type Head struct {
	Seq  int64
	Hash string
}
