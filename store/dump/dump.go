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
// gives its Meta first, then every Key, then every Use (oldest first), then
// the audit Entries in sequence order (each with its link scheme), then the
// Head.
type Item struct {
	Meta  *Meta
	Key   *Key
	Use   *Use
	Entry *chain.Row
	Head  *Head
}

// Meta is what a database records of itself that its copy must keep, as
// store/pepper writes them: the record of the pepper it was made with, and
// of where its audit chain became keyed with it. The copy checks its own
// pepper against the first, and verifies the keyed entries with the key
// derived under the record's salt. Empty when the source has none.
type Meta struct {
	Pepper    string
	KeyedFrom string
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
