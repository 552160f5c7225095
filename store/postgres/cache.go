package postgres

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyctl/keyctl/store/keys"
)

// The cache holds, for each secret a replica verified, its key as last read
// from the database, so that most verifications are decided from memory.
// It is right only as long as the replica hears of every change: a trigger
// announces each change of a key or a secret on keyctl_changes (see
// schema.go), and the listener (listen.go) drops the key's entries when it
// hears of one. While the listening connection is down, or the last
// heartbeat it carried was sent more than staleAfter ago, the whole cache
// is stale: nothing is served from it, and every verification reads the
// database.
//
// That bounds how long a change can go unseen, whatever happens to the
// connection: notifications arrive in the order their transactions
// committed, so once a heartbeat sent after a change's commit is heard,
// the change was heard before it; and until then the cache is served for
// at most staleAfter from the sending of the last heartbeat heard, which
// came before the commit. A change is seen by every check that starts
// staleAfter after its commit (PropagationBound); in practice, within
// milliseconds.
//
// An entry read from the database is kept only if nothing was heard between
// the start of the read and its insertion (the epoch did not move), so a
// read that raced a change never outlives the change's notification. Keys
// with a quota are never kept: every verification of one reads or spends
// the row.

// maxEntries bounds the cache; past it an arbitrary entry makes room.
const maxEntries = 100_000

type cache struct {
	staleAfter time.Duration

	mu        sync.Mutex
	entries   map[string]*entry              // by digest
	byKey     map[string]map[string]struct{} // key id -> digests
	epoch     uint64                         // moves on every change heard and every (dis)connection
	listening bool
	beat      time.Time // when the last heartbeat heard was sent
}

// entry is a secret's key as read, and the uses this replica decided from
// it since, so that the usage count a result shows keeps rising.
type entry struct {
	key  keys.Key
	ends *time.Time
	uses atomic.Int64
}

func newCache(staleAfter time.Duration) *cache {
	return &cache{staleAfter: staleAfter, entries: map[string]*entry{}, byKey: map[string]map[string]struct{}{}}
}

// live reports whether the cache may be served from. Called with mu held.
func (c *cache) live() bool {
	return c.listening && !c.beat.IsZero() && time.Since(c.beat) < c.staleAfter
}

// get returns the entry for digest, if the cache is live and holds one,
// and the epoch to pass to put after reading the database on a miss.
func (c *cache) get(digest []byte) (*entry, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live() {
		return nil, c.epoch
	}
	return c.entries[string(digest)], c.epoch
}

// put keeps a key read from the database since epoch, unless something was
// heard since or the cache is not live.
func (c *cache) put(digest []byte, epoch uint64, k *keys.Key, ends *time.Time) {
	if k.QuotaRemaining != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch != epoch || !c.live() {
		return
	}
	if len(c.entries) >= maxEntries {
		for d, e := range c.entries {
			c.remove(d, e.key.ID)
			break
		}
	}
	c.entries[string(digest)] = &entry{key: *k, ends: ends}
	ds := c.byKey[k.ID]
	if ds == nil {
		ds = map[string]struct{}{}
		c.byKey[k.ID] = ds
	}
	ds[string(digest)] = struct{}{}
}

func (c *cache) remove(digest, keyID string) {
	delete(c.entries, digest)
	if ds := c.byKey[keyID]; ds != nil {
		delete(ds, digest)
		if len(ds) == 0 {
			delete(c.byKey, keyID)
		}
	}
}

// changed drops what the cache holds of a key ("*": of every key).
func (c *cache) changed(keyID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	if keyID == "*" {
		c.clearLocked()
		return
	}
	for d := range c.byKey[keyID] {
		delete(c.entries, d)
	}
	delete(c.byKey, keyID)
}

func (c *cache) clearLocked() {
	clear(c.entries)
	clear(c.byKey)
}

// setListening records that the listening connection is up (after LISTEN)
// or down. Either way the cache starts empty: changes may have gone unheard.
// Once up, it is live from the first heartbeat heard.
func (c *cache) setListening(up bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	c.clearLocked()
	c.listening, c.beat = up, time.Time{}
}

// heard records the replica's own heartbeat, sent at sent, which crossed
// the database and the listening connection.
func (c *cache) heard(sent time.Time) {
	c.mu.Lock()
	if sent.After(c.beat) {
		c.beat = sent
	}
	c.mu.Unlock()
}

// isLive reports whether the cache is being served from.
func (c *cache) isLive() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live()
}
