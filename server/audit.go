package server

import (
	"net/http"
	"net/url"
	"time"

	"github.com/keyctl/keyctl/api"
	"github.com/keyctl/keyctl/store/keys"
)

// audit lists the audit trail, a page at a time, oldest first within a
// page: GET /v1/audit?key=&action=&since=&actor=&limit=&cursor=. Without
// limit, pages go forward from the first entry; with limit=N, they hold the
// N most recent entries that match, going backward (the next page, if any,
// holds older ones, and limit says how many more are wanted). When more
// may follow, the X-Next-Cursor header holds the cursor of the next page.
func (s *Server) audit(w http.ResponseWriter, r *http.Request, _ *caller) {
	q, err := queryOf(r, "key", "action", "since", "actor", "limit", "cursor")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	f := keys.AuditFilter{Key: q.Get("key"), Actor: q.Get("actor")}
	if a := q.Get("action"); a != "" {
		if !keys.ValidAction(a) {
			s.fail(w, r, badParam("action", a, "an audit action"))
			return
		}
		f.Action = a
	}
	if v := q.Get("since"); v != "" {
		if f.Since, err = time.Parse(time.RFC3339Nano, v); err != nil {
			s.fail(w, r, badParam("since", v, "an RFC 3339 time"))
			return
		}
	}
	if f.Limit, err = q.intIn("limit", 1, maxPageSize, 0); err != nil {
		s.fail(w, r, err)
		return
	}
	size := f.Limit
	if size == 0 {
		size = maxPageSize
	}
	entries, next, err := s.pager.AuditPage(r.Context(), f, q.Get("cursor"), size)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if next != "" {
		w.Header().Set(api.NextCursorHeader, next)
	}
	writeJSON(w, http.StatusOK, entries)
}

// verifyAudit walks the audit chain, and checks the heads given (head=SEQ:
// DIGEST, repeatable): GET /v1/audit/verify. The answer is 200 whether the
// chain holds or not; "ok" says which.
func (s *Server) verifyAudit(w http.ResponseWriter, r *http.Request, _ *caller) {
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		s.fail(w, r, errorf(http.StatusBadRequest, api.CodeInvalidRequest, "invalid query string: %s", err))
		return
	}
	var checkpoints []keys.Checkpoint
	for name, vals := range v {
		if name != "head" {
			s.fail(w, r, errorf(http.StatusBadRequest, api.CodeInvalidRequest, "unknown query parameter %q", name))
			return
		}
		if len(vals) > 16 {
			s.fail(w, r, errorf(http.StatusBadRequest, api.CodeInvalidRequest, "at most 16 heads"))
			return
		}
		for _, h := range vals {
			cp, err := keys.ParseCheckpoint(h)
			if err != nil {
				s.fail(w, r, badParam("head", h, "an audit head (SEQ:DIGEST)"))
				return
			}
			checkpoints = append(checkpoints, cp)
		}
	}
	check, err := s.store.VerifyAudit(r.Context(), checkpoints...)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, check)
}
