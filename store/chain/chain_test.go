package chain

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/keyctl/keyctl/store/keys"
)

// TestLink fixes the link's definition: a change to it would make every
// chain already written fail to verify.
func TestLink(t *testing.T) {
	for _, c := range []struct{ prev, content, want string }{
		{"", "", "01ba4719c80b6fe911b091a7c05124b64eeece964e09c058ef8f9805daca546b"},
		{"", `{"seq":1}`, "fcb913e02edf3c9bd0177b9e387d12f1187a86904f637d07f8fcc2c865fa943c"},
		{"abc", `{"seq":2}`, "ec52dea306d1f71e127144e73afedfb70508f9be5f30ae7a8f5292b107df828d"},
	} {
		if got := Link(SchemeSHA256, nil, c.prev, []byte(c.content)); got != c.want {
			t.Errorf("Link(%q, %q) = %s, want %s", c.prev, c.content, got, c.want)
		}
	}
	// Keyed: HMAC-SHA256 under the key, over the same bytes.
	key := []byte(strings.Repeat("k", 32))
	if got, want := Link(SchemeHMAC, key, "abc", []byte(`{"seq":2}`)), "028e5a0327791598d47edf1ab0999c8ee9f7fe0666f94d918a9c05e9c55a366c"; got != want {
		t.Errorf("keyed Link = %s, want %s", got, want)
	}
}

var at = time.Date(2026, 11, 1, 12, 0, 0, 123_000_000, time.FixedZone("CET", 3600))

func TestNewContent(t *testing.T) {
	actor := keys.Actor{Kind: "key", ID: "key_a", Name: "ops", Address: "192.0.2.1"}
	k := &keys.Key{ID: "key_1", Name: "billing"}
	c := NewContent(41, at, actor, keys.ActionRotate, k, map[string]keys.Change{"grace": {To: "1h"}}, "why")
	if c.Seq != 42 || c.At != "2026-11-01T11:00:00.123Z" || c.KeyID != "key_1" || c.KeyName != "billing" ||
		c.Actor != actor || c.Action != keys.ActionRotate || c.Note != "why" || c.Changes["grace"].To != "1h" {
		t.Fatalf("content = %+v", c)
	}
	c = NewContent(0, at, actor, keys.ActionDenied, nil, nil, "")
	b, _ := json.Marshal(c)
	want := `{"seq":1,"at":"2026-11-01T11:00:00.123Z","actor":{"kind":"key","id":"key_a","name":"ops","address":"192.0.2.1"},` +
		`"action":"denied","key_id":"","key_name":"","changes":{}}`
	if string(b) != want {
		t.Fatalf("content without a key:\n%s\nwant\n%s", b, want)
	}
}

// build makes a chain of n entries as a store writes them, and its head.
func build(t *testing.T, n int) ([]Row, int64, string) {
	t.Helper()
	return buildKeyed(t, n, nil, 0)
}

// buildKeyed makes a chain of n entries, keyed with key from entry from on
// (none when from is 0).
func buildKeyed(t *testing.T, n int, key []byte, from int64) ([]Row, int64, string) {
	t.Helper()
	var rows []Row
	prev := ""
	for i := range int64(n) {
		c := NewContent(i, at.Add(time.Duration(i)*time.Second), keys.Actor{Kind: "user", Name: "alice"},
			keys.ActionUpdate, &keys.Key{ID: "key_1", Name: "k"}, map[string]keys.Change{"n": {From: i, To: i + 1}}, "")
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		scheme := SchemeSHA256
		if from > 0 && c.Seq >= from {
			scheme = SchemeHMAC
		}
		r := Row{Seq: c.Seq, Content: string(b), PrevHash: prev, Hash: Link(scheme, key, prev, b), Scheme: scheme}
		rows, prev = append(rows, r), r.Hash
	}
	return rows, int64(n), prev
}

func walk(rows []Row, headSeq int64, headHash string) *keys.AuditCheck {
	return walkWith(WalkOptions{}, rows, headSeq, headHash)
}

func walkWith(opts WalkOptions, rows []Row, headSeq int64, headHash string) *keys.AuditCheck {
	w := NewWalker(opts)
	for _, r := range rows {
		w.Next(r)
	}
	return w.End(headSeq, headHash)
}

func TestWalker(t *testing.T) {
	rows, _, _ := build(t, 1)
	if rows[0].PrevHash != "" || rows[0].Hash != Link(SchemeSHA256, nil, "", []byte(rows[0].Content)) {
		t.Fatalf("the first entry links to %q", rows[0].PrevHash)
	}
	cases := []struct {
		name    string
		tamper  func(rows []Row, seq *int64, head *string) []Row
		bad     int64
		problem string
	}{
		{"intact", func(r []Row, _ *int64, _ *string) []Row { return r }, 0, ""},
		{"an entry's content edited", func(r []Row, _ *int64, _ *string) []Row {
			r[2].Content = strings.Replace(r[2].Content, "alice", "mallory", 1)
			return r
		}, 3, "entry 3 was edited"},
		{"an entry edited and its hash recomputed", func(r []Row, _ *int64, _ *string) []Row {
			r[2].Content = strings.Replace(r[2].Content, "alice", "mallory", 1)
			r[2].Hash = Link(SchemeSHA256, nil, r[2].PrevHash, []byte(r[2].Content))
			return r
		}, 4, "entry 4 does not follow entry 3"},
		{"an entry's content replaced by garbage", func(r []Row, _ *int64, _ *string) []Row {
			r[1].Content = "{not json"
			return r
		}, 2, "entry 2 is not valid JSON"},
		{"an entry's hash edited", func(r []Row, _ *int64, _ *string) []Row {
			r[0].Hash = strings.Repeat("0", 64)
			return r
		}, 1, "entry 1 was edited"},
		{"the first entry deleted", func(r []Row, _ *int64, _ *string) []Row { return r[1:] }, 1, "entry 1 is missing: the next entry is 2"},
		{"a middle entry deleted", func(r []Row, _ *int64, _ *string) []Row {
			return append(r[:2:2], r[3:]...)
		}, 3, "entry 3 is missing: the next entry is 4"},
		{"two entries swapped", func(r []Row, _ *int64, _ *string) []Row {
			r[1], r[2] = r[2], r[1]
			return r
		}, 2, "entry 2 is missing: the next entry is 3"},
		{"two entries' contents swapped", func(r []Row, _ *int64, _ *string) []Row {
			r[1].Content, r[2].Content = r[2].Content, r[1].Content
			return r
		}, 2, "entry 2 holds the content of entry 3: entries were reordered"},
		{"two entries renumbered after a swap", func(r []Row, _ *int64, _ *string) []Row {
			r[1], r[2] = r[2], r[1]
			r[1].Seq, r[2].Seq = 2, 3
			return r
		}, 2, "entry 2 holds the content of entry 3"},
		{"the last entries deleted", func(r []Row, _ *int64, _ *string) []Row { return r[:3] }, 4, "entries 4 to 5 were deleted from the end"},
		{"the last entries deleted and the head moved back", func(r []Row, seq *int64, head *string) []Row {
			*seq = 3
			return r[:3]
		}, 3, "the chain's head does not match entry 3"},
		{"the head's hash edited", func(r []Row, _ *int64, head *string) []Row {
			*head = strings.Repeat("f", 64)
			return r
		}, 5, "the chain's head does not match entry 5"},
		{"an entry appended behind the head's back", func(r []Row, _ *int64, _ *string) []Row {
			more, _, _ := build(t, 6)
			return append(r, more[5])
		}, 5, "the chain's head does not match entry 6"},
		{"every entry deleted", func(r []Row, _ *int64, _ *string) []Row { return nil }, 1, "entries 1 to 5 were deleted from the end"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rows, seq, head := build(t, 5)
			rows = c.tamper(rows, &seq, &head)
			got := walk(rows, seq, head)
			if c.problem == "" {
				if !got.OK || got.BadSeq != 0 || got.Problem != "" || got.Entries != 5 || got.Head != head {
					t.Fatalf("an intact chain: %+v", got)
				}
				return
			}
			if got.OK || got.BadSeq != c.bad || !strings.Contains(got.Problem, c.problem) {
				t.Fatalf("got %+v, want bad_seq %d with %q", got, c.bad, c.problem)
			}
			if got.Entries != int64(len(rows)) {
				t.Errorf("entries %d, want %d (every row is counted)", got.Entries, len(rows))
			}
		})
	}
}

func TestWalkerEmptyChain(t *testing.T) {
	if got := walk(nil, 0, ""); !got.OK || got.Entries != 0 || got.Head != "" {
		t.Fatalf("an empty chain: %+v", got)
	}
	if got := walk(nil, 0, "abc"); got.OK {
		t.Fatalf("an empty chain with a head hash: %+v", got)
	}
}

func TestWalkerReportsTheFirstProblem(t *testing.T) {
	rows, seq, head := build(t, 5)
	rows[1].Content = "{"
	rows[3].Hash = "x"
	got := walk(rows[:4], seq, head)
	if got.OK || got.BadSeq != 2 || !strings.Contains(got.Problem, "entry 2") {
		t.Fatalf("got %+v, want the first problem, at entry 2", got)
	}
}

func TestRowEntry(t *testing.T) {
	rows, _, _ := build(t, 2)
	e, err := rows[1].Entry()
	if err != nil {
		t.Fatal(err)
	}
	if e.Seq != 2 || !e.At.Equal(at.Add(time.Second)) || e.Actor.Name != "alice" || e.KeyID != "key_1" ||
		e.PrevHash != rows[0].Hash || e.Hash != rows[1].Hash || e.Changes["n"].To != float64(2) {
		t.Fatalf("entry = %+v", e)
	}
	if _, err := (Row{Seq: 9, Content: "{"}).Entry(); err == nil || !strings.Contains(err.Error(), "audit entry 9") {
		t.Fatalf("a corrupt row: %v", err)
	}
}

// TestWalkerKeyed: from the entry where the chain became keyed, every entry
// must be keyed and verify under the key; rewriting one without the key, or
// moving where keying began, shows.
func TestWalkerKeyed(t *testing.T) {
	key := []byte(strings.Repeat("k", 32))
	opts := WalkOptions{Key: key, KeyedFrom: 3}
	cases := []struct {
		name    string
		opts    WalkOptions
		tamper  func(r []Row) []Row
		bad     int64
		problem string
	}{
		{"intact", opts, func(r []Row) []Row { return r }, 0, ""},
		{"a keyed entry rewritten and relinked with SHA-256", opts, func(r []Row) []Row {
			r[3].Content = strings.Replace(r[3].Content, "alice", "mallory", 1)
			r[3].Scheme, r[3].Hash = SchemeSHA256, Link(SchemeSHA256, nil, r[3].PrevHash, []byte(r[3].Content))
			return r
		}, 4, "entry 4 is not keyed with the pepper, as every entry from 3 is"},
		{"a keyed entry rewritten under another key", opts, func(r []Row) []Row {
			r[3].Content = strings.Replace(r[3].Content, "alice", "mallory", 1)
			r[3].Hash = Link(SchemeHMAC, []byte("guess"), r[3].PrevHash, []byte(r[3].Content))
			return r
		}, 4, "entry 4 was edited"},
		{"an unknown scheme", opts, func(r []Row) []Row { r[1].Scheme = "md5"; return r }, 2, "unknown link scheme"},
		{"keying moved later", WalkOptions{Key: key, KeyedFrom: 4}, func(r []Row) []Row { return r }, 3,
			"entry 3 is keyed, but the database's record says keying began at entry 4"},
		{"a keyed chain without the key", WalkOptions{}, func(r []Row) []Row { return r }, 3,
			"entry 3 is keyed with a pepper, and none is configured"},
		{"the record of where keying began is not to be trusted", WalkOptions{Key: key, KeyedFromProblem: "the record was changed"},
			func(r []Row) []Row { return r }, 1, "the record was changed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rows, seq, head := buildKeyed(t, 5, key, 3)
			rows = c.tamper(rows)
			got := walkWith(c.opts, rows, seq, head)
			if c.problem == "" {
				if !got.OK || got.HeadSeq != 5 || got.Head != head {
					t.Fatalf("an intact keyed chain: %+v", got)
				}
				return
			}
			if got.OK || got.BadSeq != c.bad || !strings.Contains(got.Problem, c.problem) {
				t.Fatalf("got %+v, want bad_seq %d with %q", got, c.bad, c.problem)
			}
		})
	}
}

// TestWalkerCheckpoints: a head kept elsewhere must still be in the chain,
// unchanged, even when the whole chain was recomputed (as anyone who can
// write an unkeyed chain can), or cut after it.
func TestWalkerCheckpoints(t *testing.T) {
	rows, seq, head := build(t, 5)
	cp := keys.Checkpoint{Seq: 3, Hash: rows[2].Hash}
	if got := walkWith(WalkOptions{Checkpoints: []keys.Checkpoint{cp}}, rows, seq, head); !got.OK {
		t.Fatalf("a chain that holds its checkpoint: %+v", got)
	}
	// Entry 2 rewritten and every link after it recomputed: the chain
	// verifies by itself, and not against the checkpoint.
	forged := append([]Row(nil), rows...)
	forged[1].Content = strings.Replace(forged[1].Content, "alice", "mallory", 1)
	prev := forged[0].Hash
	for i := 1; i < len(forged); i++ {
		forged[i].PrevHash = prev
		forged[i].Hash = Link(SchemeSHA256, nil, prev, []byte(forged[i].Content))
		prev = forged[i].Hash
	}
	if got := walk(forged, seq, prev); !got.OK {
		t.Fatalf("the recomputed chain should verify by itself: %+v", got)
	}
	got := walkWith(WalkOptions{Checkpoints: []keys.Checkpoint{cp}}, forged, seq, prev)
	if got.OK || got.BadSeq != 3 || !strings.Contains(got.Problem, "the history up to it was rewritten") {
		t.Fatalf("a rewritten history against a checkpoint: %+v", got)
	}
	// Cut after entry 2 (the head moved back with it): the checkpoint's
	// entry is gone.
	got = walkWith(WalkOptions{Checkpoints: []keys.Checkpoint{cp}}, rows[:2], 2, rows[1].Hash)
	if got.OK || !strings.Contains(got.Problem, "before the checkpoint's entry 3") {
		t.Fatalf("a truncated chain against a checkpoint: %+v", got)
	}
}
