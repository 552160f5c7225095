package store

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
)

// stmtCache holds statements prepared once per store. Parsing SQL costs
// more than running these statements, so the verification hot path uses
// prepared ones; a CLI process that verifies once pays the same as before.
type stmtCache struct {
	mu    sync.Mutex
	stmts map[string]*sql.Stmt
}

// prepare prepares queries not yet in the cache. It must run outside a
// transaction: the store has one connection, which a transaction holds. The
// cache is not locked while preparing, since preparing waits for that
// connection and a transaction may need the cache to finish.
func (s *SQLite) prepare(ctx context.Context, queries ...string) error {
	for _, q := range queries {
		s.stmts.mu.Lock()
		_, ok := s.stmts.stmts[q]
		s.stmts.mu.Unlock()
		if ok {
			continue
		}
		st, err := s.db.PrepareContext(ctx, q)
		if err != nil {
			return err
		}
		s.stmts.mu.Lock()
		if s.stmts.stmts == nil {
			s.stmts.stmts = map[string]*sql.Stmt{}
		}
		if _, ok := s.stmts.stmts[q]; ok {
			st.Close() // prepared meanwhile by another goroutine
		} else {
			s.stmts.stmts[q] = st
		}
		s.stmts.mu.Unlock()
	}
	return nil
}

// stmt returns a prepared query bound to tx.
func (s *SQLite) stmt(ctx context.Context, tx *sql.Tx, query string) (*sql.Stmt, error) {
	s.stmts.mu.Lock()
	st, ok := s.stmts.stmts[query]
	s.stmts.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("statement not prepared: %.40s", query)
	}
	return tx.StmtContext(ctx, st), nil
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.stmts {
		st.Close()
	}
	c.stmts = nil
}
