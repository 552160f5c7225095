// Package chain is the audit trail's arithmetic: what an entry's link is,
// and how walking the entries proves that none was edited, deleted or
// moved. It does no I/O; stores only persist the rows it describes.
package chain

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/keyctl/keyctl/store/keys"
)

// Content is what an entry's link covers, in this order.
type Content struct {
	Seq     int64                  `json:"seq"`
	At      string                 `json:"at"`
	Actor   keys.Actor             `json:"actor"`
	Action  string                 `json:"action"`
	KeyID   string                 `json:"key_id"`
	KeyName string                 `json:"key_name"`
	Changes map[string]keys.Change `json:"changes"`
	Note    string                 `json:"note,omitempty"`
}

// NewContent is the content of the entry that follows seq: at is the time of
// the change, k the key it concerns (nil for none).
func NewContent(seq int64, at time.Time, actor keys.Actor, action string, k *keys.Key, changes map[string]keys.Change, note string) Content {
	c := Content{Seq: seq + 1, At: at.UTC().Format(time.RFC3339Nano), Actor: actor, Action: action, Changes: changes, Note: note}
	if k != nil {
		c.KeyID, c.KeyName = k.ID, k.Name
	}
	if c.Changes == nil {
		c.Changes = map[string]keys.Change{}
	}
	return c
}

// The link schemes an entry may use. An entry records its own, so that a
// chain begun before a pepper was configured keeps verifying after.
const (
	// SchemeSHA256 links with SHA-256: anyone who can write the database
	// can recompute it, so it proves the entries unchanged only against a
	// head kept elsewhere (a checkpoint).
	SchemeSHA256 = "sha256"
	// SchemeHMAC links with HMAC-SHA256 under a key derived from the
	// pepper, which lives outside the database: forging it needs the
	// pepper too.
	SchemeHMAC = "hmac-sha256"
)

// Link is an entry's hash over the previous entry's hash and the entry's
// content, so that editing, deleting or reordering entries breaks the
// chain: SHA-256 for SchemeSHA256, HMAC-SHA256 under key for SchemeHMAC.
func Link(scheme string, key []byte, prev string, content []byte) string {
	h := sha256.New()
	if scheme == SchemeHMAC {
		h = hmac.New(sha256.New, key)
	}
	h.Write([]byte(prev))
	h.Write([]byte{'\n'})
	h.Write(content)
	return hex.EncodeToString(h.Sum(nil))
}

// KeyedFromMAC authenticates the sequence number from which a chain is
// keyed, so that it cannot be moved without the key.
func KeyedFromMAC(key []byte, seq int64) string {
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "keyctl audit chain keyed from %d", seq)
	return hex.EncodeToString(m.Sum(nil))
}

// Row is an entry as a store keeps it.
type Row struct {
	Seq      int64
	Content  string
	PrevHash string
	Hash     string
	Scheme   string // SchemeSHA256 when empty
}

// Entry decodes the row.
func (r Row) Entry() (*keys.AuditEntry, error) {
	var c Content
	if err := json.Unmarshal([]byte(r.Content), &c); err != nil {
		return nil, fmt.Errorf("audit entry %d: %w", r.Seq, err)
	}
	at, _ := time.Parse(time.RFC3339Nano, c.At)
	return &keys.AuditEntry{Seq: c.Seq, At: at, Actor: c.Actor, Action: c.Action, KeyID: c.KeyID, KeyName: c.KeyName,
		Changes: c.Changes, Note: c.Note, PrevHash: r.PrevHash, Hash: r.Hash}, nil
}

// Walker checks a chain's rows, given in sequence order from the first,
// and reports the first that does not hold.
type Walker struct {
	opts  WalkOptions
	check keys.AuditCheck
	prev  string
	want  int64
	seen  map[int64]string // the hash of each checkpoint's entry, once passed
}

// WalkOptions say what a walk checks beyond the links themselves.
type WalkOptions struct {
	// Key is the HMAC key of the keyed entries; nil when no pepper is
	// configured.
	Key []byte
	// KeyedFrom is the first entry that must be keyed (SchemeHMAC); the
	// entries before it must not be. 0 when no entry must be.
	KeyedFrom int64
	// KeyedFromProblem, when set, is why KeyedFrom could not be trusted
	// (its record is missing or forged); the walk fails with it.
	KeyedFromProblem string
	// Checkpoints are heads kept elsewhere: each entry must still be in
	// the chain, unchanged.
	Checkpoints []keys.Checkpoint
}

// NewWalker starts a walk at the first entry.
func NewWalker(opts WalkOptions) *Walker {
	w := &Walker{opts: opts, check: keys.AuditCheck{OK: true}, want: 1, seen: map[int64]string{}}
	if opts.KeyedFromProblem != "" {
		w.bad(max(opts.KeyedFrom, 1), "%s", opts.KeyedFromProblem)
	}
	return w
}

func (w *Walker) bad(seq int64, format string, a ...any) {
	if w.check.OK {
		w.check.OK, w.check.BadSeq, w.check.Problem = false, seq, fmt.Sprintf(format, a...)
	}
}

// Next checks the next row.
func (w *Walker) Next(r Row) {
	w.check.Entries++
	scheme := r.Scheme
	if scheme == "" {
		scheme = SchemeSHA256
	}
	keyed := w.opts.KeyedFrom > 0 && r.Seq >= w.opts.KeyedFrom
	var c Content
	switch {
	case !w.check.OK:
	case r.Seq != w.want:
		w.bad(w.want, "entry %d is missing: the next entry is %d", w.want, r.Seq)
	case json.Unmarshal([]byte(r.Content), &c) != nil:
		w.bad(r.Seq, "entry %d is not valid JSON: it was edited", r.Seq)
	case c.Seq != r.Seq:
		w.bad(r.Seq, "entry %d holds the content of entry %d: entries were reordered", r.Seq, c.Seq)
	case r.PrevHash != w.prev:
		w.bad(r.Seq, "entry %d does not follow entry %d: an entry before it was edited, deleted or moved", r.Seq, r.Seq-1)
	case scheme != SchemeSHA256 && scheme != SchemeHMAC:
		w.bad(r.Seq, "entry %d has an unknown link scheme %q: it was edited", r.Seq, scheme)
	case keyed && scheme != SchemeHMAC:
		w.bad(r.Seq, "entry %d is not keyed with the pepper, as every entry from %d is: it was rewritten without the pepper", r.Seq, w.opts.KeyedFrom)
	case !keyed && scheme == SchemeHMAC && w.opts.Key == nil:
		w.bad(r.Seq, "entry %d is keyed with a pepper, and none is configured: it cannot be verified", r.Seq)
	case !keyed && scheme == SchemeHMAC:
		w.bad(r.Seq, "entry %d is keyed, but the database's record says keying began at %s: the record was changed", r.Seq, keyedFromText(w.opts.KeyedFrom))
	case Link(scheme, w.opts.Key, w.prev, []byte(r.Content)) != r.Hash:
		w.bad(r.Seq, "entry %d was edited: its hash does not match its content", r.Seq)
	}
	for _, cp := range w.opts.Checkpoints {
		if cp.Seq == r.Seq {
			w.seen[r.Seq] = r.Hash
		}
	}
	w.prev, w.want = r.Hash, r.Seq+1
}

func keyedFromText(seq int64) string {
	if seq <= 0 {
		return "no entry"
	}
	return fmt.Sprintf("entry %d", seq)
}

// End checks the walk against the chain's head, kept apart from the
// entries so that deleting the last ones shows, and against the
// checkpoints, and returns the verdict.
func (w *Walker) End(headSeq int64, headHash string) *keys.AuditCheck {
	last := w.want - 1
	switch {
	case headSeq > last:
		w.bad(w.want, "entries %d to %d were deleted from the end", w.want, headSeq)
	case headSeq != last || headHash != w.prev:
		w.bad(headSeq, "the chain's head does not match entry %d: entries were changed behind keyctl's back", last)
	}
	for _, cp := range w.opts.Checkpoints {
		hash, ok := w.seen[cp.Seq]
		switch {
		case !ok && cp.Seq > last:
			w.bad(cp.Seq, "the chain ends at entry %d, before the checkpoint's entry %d: entries were deleted from the end", last, cp.Seq)
		case !ok:
			w.bad(cp.Seq, "the checkpoint's entry %d is not in the chain", cp.Seq)
		case hash != cp.Hash:
			w.bad(cp.Seq, "entry %d is not the checkpoint's (%s): the history up to it was rewritten", cp.Seq, short(cp.Hash))
		}
	}
	check := w.check
	check.Head, check.HeadSeq = w.prev, last
	return &check
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return h
}
