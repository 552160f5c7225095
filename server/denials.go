package server

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/keys"
)

// denialEvery is how often, at most, the audit trail records a caller's
// refused calls: the first refusal at once, the others of the next
// interval counted into one entry. Every refusal counts in the metrics.
const denialEvery = time.Minute

// maxDenialCallers bounds the callers whose refusals are being counted.
const maxDenialCallers = 10000

// denials counts refused admin calls per caller, so that a key that is
// refused again and again costs the audit trail one entry a minute, not
// one a request.
type denials struct {
	mu       sync.Mutex
	byCaller map[string]*denialCount // by the caller's key id
}

type denialCount struct {
	caller  keys.Actor
	written time.Time // when an entry was last written
	pending int64     // refusals since, not yet written
	last    keys.Denial
}

// denied records a refused admin call: in the metrics always, in the audit
// trail when the caller's last entry is older than denialEvery (with the
// refusals counted since). Unauthenticated calls are counted in the
// metrics only (keyctl_authentications_total).
func (s *Server) denied(r *http.Request, c *caller, required string) {
	route := r.Pattern
	s.metrics.denied.WithLabelValues(route).Inc()
	if c == nil {
		return
	}
	d := keys.Denial{Route: route, Required: required, Ref: r.PathValue("id"), Count: 1}
	now := s.now()
	s.denials.mu.Lock()
	if s.denials.byCaller == nil {
		s.denials.byCaller = map[string]*denialCount{}
	}
	dc := s.denials.byCaller[c.key.ID]
	if dc == nil {
		if len(s.denials.byCaller) >= maxDenialCallers {
			s.denials.prune(now)
		}
		dc = &denialCount{}
		s.denials.byCaller[c.key.ID] = dc
	}
	dc.caller, dc.last = actorOf(c), d
	write := now.Sub(dc.written) >= denialEvery
	if write {
		d.Count += dc.pending
		dc.written, dc.pending = now, 0
	} else {
		dc.pending++
	}
	s.denials.mu.Unlock()
	if write {
		s.recordDenied(keys.WithActor(r.Context(), actorOf(c)), d)
	}
}

// prune forgets callers with nothing pending whose last entry is old; it
// runs with the lock held.
func (d *denials) prune(now time.Time) {
	for id, dc := range d.byCaller {
		if dc.pending == 0 && now.Sub(dc.written) >= denialEvery {
			delete(d.byCaller, id)
		}
	}
}

// flushDenials writes the refusals counted and not yet written, at
// shutdown.
func (s *Server) flushDenials() {
	s.denials.mu.Lock()
	var out []*denialCount
	for _, dc := range s.denials.byCaller {
		if dc.pending > 0 {
			c := *dc
			out = append(out, &c)
			dc.pending = 0
		}
	}
	s.denials.mu.Unlock()
	for _, dc := range out {
		d := dc.last
		d.Count = dc.pending
		s.recordDenied(keys.WithActor(context.Background(), dc.caller), d)
	}
}

// recordDenied audits refused calls, when the store keeps such records.
func (s *Server) recordDenied(ctx context.Context, d keys.Denial) {
	rec, ok := s.store.(store.DenialRecorder)
	if !ok {
		return
	}
	if err := rec.RecordDenied(ctx, d); err != nil {
		s.errLog.Error("auditing refused calls", "count", d.Count, "err", err)
	}
}
