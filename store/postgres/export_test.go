package postgres

// CacheLive reports whether the fast path serves from its cache: it has
// started, listens, and hears its heartbeat.
func (p *Postgres) CacheLive() bool {
	p.fastMu.Lock()
	v := p.fast
	p.fastMu.Unlock()
	return v != nil && v.cache.isLive()
}
