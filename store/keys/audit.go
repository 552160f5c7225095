package keys

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Audit actions.
const (
	ActionCreate  = "create"
	ActionUpdate  = "update"
	ActionRotate  = "rotate"
	ActionDisable = "disable"
	ActionEnable  = "enable"
	ActionRevoke  = "revoke"
	ActionDenied  = "denied" // admin calls refused for lack of scope
	// ActionUndoRotate: a rotation undone because its secret could not be
	// delivered; the previous secrets work as they did before it.
	ActionUndoRotate = "undo-rotate"
	// ActionEndGrace: old secrets still in a rotation's grace stopped now,
	// the key's current secret staying healthy: all of them (keyctl rotate
	// --end-grace), or one whose holder revoked it.
	ActionEndGrace = "end-grace"
)

// AuditActions lists every action, for validating filters.
var AuditActions = []string{ActionCreate, ActionUpdate, ActionRotate, ActionDisable, ActionEnable, ActionRevoke, ActionDenied,
	ActionUndoRotate, ActionEndGrace}

// Change is one field's value before and after.
type Change struct {
	From any `json:"from"`
	To   any `json:"to"`
}

// AuditEntry records one change, never a secret or a digest. Hash is the
// SHA-256 of PrevHash and the entry's content, so that editing, deleting or
// reordering entries breaks the chain.
type AuditEntry struct {
	Seq      int64             `json:"seq"`
	At       time.Time         `json:"at"`
	Actor    Actor             `json:"actor"`
	Action   string            `json:"action"`
	KeyID    string            `json:"key_id"`
	KeyName  string            `json:"key_name"`
	Changes  map[string]Change `json:"changes"`
	Note     string            `json:"note,omitempty"`
	PrevHash string            `json:"prev_hash"`
	Hash     string            `json:"hash"`
}

// AuditFilter selects audit entries; zero fields select everything.
type AuditFilter struct {
	Key    string // a key id or name
	Action string
	Since  time.Time
	Actor  string // an actor's name or id
	Limit  int    // the most recent N; 0 for all
}

// Match reports whether e passes the filter.
func (f AuditFilter) Match(e *AuditEntry) bool {
	return (f.Key == "" || e.KeyID == f.Key || e.KeyName == f.Key) &&
		(f.Action == "" || e.Action == f.Action) &&
		(f.Since.IsZero() || !e.At.Before(f.Since)) &&
		(f.Actor == "" || e.Actor.Name == f.Actor || e.Actor.ID == f.Actor)
}

// ValidAction reports whether a is an audit action.
func ValidAction(a string) bool { return slices.Contains(AuditActions, a) }

// AuditCheck is the result of walking the audit chain.
type AuditCheck struct {
	OK      bool   `json:"ok"`
	Entries int64  `json:"entries"`
	BadSeq  int64  `json:"bad_seq,omitempty"` // the first entry that does not hold
	Problem string `json:"problem,omitempty"`
	Head    string `json:"head,omitempty"`     // the last entry's hash
	HeadSeq int64  `json:"head_seq,omitempty"` // the last entry's sequence number
}

// Checkpoint is a head of the audit chain kept elsewhere (a CI artifact, a
// ticket, a log line), written SEQ:DIGEST: proof that the chain still holds
// that entry unchanged shows that nothing up to it was rewritten, and
// nothing after it truncated, even by someone able to write the database
// and recompute every unkeyed link.
type Checkpoint struct {
	Seq  int64
	Hash string
}

func (c Checkpoint) String() string { return strconv.FormatInt(c.Seq, 10) + ":" + c.Hash }

// ParseCheckpoint reads SEQ:DIGEST, as keyctl audit head prints it.
func ParseCheckpoint(s string) (Checkpoint, error) {
	seq, hash, ok := strings.Cut(strings.TrimSpace(s), ":")
	n, err := strconv.ParseInt(seq, 10, 64)
	if !ok || err != nil || n < 1 || len(hash) != 64 || strings.Trim(hash, "0123456789abcdef") != "" {
		return Checkpoint{}, fmt.Errorf("%q is not an audit head (SEQ:DIGEST, as keyctl audit head prints it)", s)
	}
	return Checkpoint{Seq: n, Hash: hash}, nil
}

// Denial is what the audit trail records of refused admin calls: the route
// attempted, the scope it needed, the key it named (a caller's text: it is
// bounded and escaped before it is stored), and how many refusals of one
// caller the entry stands for.
type Denial struct {
	Route    string
	Required string
	Ref      string
	Count    int64
}

type noteKey struct{}

// WithNote returns a context whose changes are audited with note, such as
// "leak response: found in app.env:3".
func WithNote(ctx context.Context, note string) context.Context {
	return context.WithValue(ctx, noteKey{}, note)
}

// NoteFrom returns the note ctx carries for the audit trail, if any.
func NoteFrom(ctx context.Context) string {
	n, _ := ctx.Value(noteKey{}).(string)
	return n
}

// auditedFields are the key fields whose changes the audit trail records.
// Digests and secrets are not among them, nor anything derived from them
// except the display start.
var auditedFields = []string{"name", "description", "prefix", "env", "start", "status", "scopes",
	"expires_at", "allowed_ips", "quota", "quota_remaining", "rate_limit", "metadata", "revoke_reason"}

func keyFields(k *Key) map[string]json.RawMessage {
	m := map[string]json.RawMessage{}
	if k == nil {
		return m
	}
	b, _ := json.Marshal(k)
	json.Unmarshal(b, &m)
	// Audit the stored status: disabling an expired key is a change even
	// though it still reads as expired.
	if k.Stored != "" {
		m["status"], _ = json.Marshal(k.Stored)
	}
	return m
}

// Diff returns the audited fields that differ between before and after;
// with before nil (a new key), the fields that are set.
func Diff(before, after *Key) map[string]Change {
	a, b := keyFields(before), keyFields(after)
	out := map[string]Change{}
	for _, f := range auditedFields {
		from, to := a[f], b[f]
		if before == nil {
			switch string(to) {
			case "", "null", "[]", "{}", `""`:
				continue
			}
			from = json.RawMessage("null")
		}
		if !bytes.Equal(from, to) {
			out[f] = Change{From: from, To: to}
		}
	}
	return out
}
