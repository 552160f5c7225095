// Package chain is the audit trail's arithmetic: what an entry's link is,
// and how walking the entries proves that none was edited, deleted or
// moved. It does no I/O; stores only persist the rows it describes.
package chain

import (
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

// Link is an entry's hash: the SHA-256 of the previous entry's hash and the
// entry's content, so that editing, deleting or reordering entries breaks
// the chain.
func Link(prev string, content []byte) string {
	h := sha256.New()
	h.Write([]byte(prev))
	h.Write([]byte{'\n'})
	h.Write(content)
	return hex.EncodeToString(h.Sum(nil))
}

// Row is an entry as a store keeps it.
type Row struct {
	Seq      int64
	Content  string
	PrevHash string
	Hash     string
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
	check keys.AuditCheck
	prev  string
	want  int64
}

// NewWalker starts a walk at the first entry.
func NewWalker() *Walker { return &Walker{check: keys.AuditCheck{OK: true}, want: 1} }

func (w *Walker) bad(seq int64, format string, a ...any) {
	if w.check.OK {
		w.check.OK, w.check.BadSeq, w.check.Problem = false, seq, fmt.Sprintf(format, a...)
	}
}

// Next checks the next row.
func (w *Walker) Next(r Row) {
	w.check.Entries++
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
	case Link(w.prev, []byte(r.Content)) != r.Hash:
		w.bad(r.Seq, "entry %d was edited: its hash does not match its content", r.Seq)
	}
	w.prev, w.want = r.Hash, r.Seq+1
}

// End checks the walk against the chain's head, kept apart from the
// entries so that deleting the last ones shows, and returns the verdict.
func (w *Walker) End(headSeq int64, headHash string) *keys.AuditCheck {
	switch {
	case headSeq > w.want-1:
		w.bad(w.want, "entries %d to %d were deleted from the end", w.want, headSeq)
	case headSeq != w.want-1 || headHash != w.prev:
		w.bad(headSeq, "the chain's head does not match entry %d: entries were changed behind keyctl's back", w.want-1)
	}
	check := w.check
	check.Head = w.prev
	return &check
}
