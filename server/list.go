package server

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/keyctl/keyctl/api"
	"github.com/keyctl/keyctl/store/keys"
)

// Page sizes of GET /v1/keys.
const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

// listKeys answers one page of the keys that match the filters, newest
// first, read from the store a page at a time (store.Pager): a page costs
// the same at a thousand keys as at a million. The cursor names where the
// previous page stopped; because keys are never deleted, the page after it
// is well defined even when keys are created, or leave the filter, between
// pages.
func (s *Server) listKeys(w http.ResponseWriter, r *http.Request, _ *caller) {
	q, err := queryOf(r, "env", "status", "scope", "all", "expiring", "unused", "limit", "cursor")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	f, err := q.filter()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	limit, err := q.intIn("limit", 1, maxPageSize, defaultPageSize)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	page, next, err := s.pager.ListPage(r.Context(), f, q.Get("cursor"), limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.KeyList{Keys: page, NextCursor: next})
}

// query is a request's query string, with only known parameters.
type query struct{ url.Values }

func queryOf(r *http.Request, known ...string) (query, error) {
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return query{}, errorf(http.StatusBadRequest, api.CodeInvalidRequest, "invalid query string: %s", err)
	}
outer:
	for name, vals := range v {
		for _, k := range known {
			if name == k {
				if len(vals) > 1 {
					return query{}, errorf(http.StatusBadRequest, api.CodeInvalidRequest, "query parameter %q is given more than once", name)
				}
				continue outer
			}
		}
		return query{}, errorf(http.StatusBadRequest, api.CodeInvalidRequest, "unknown query parameter %q", name)
	}
	return query{v}, nil
}

func badParam(name, value, want string) error {
	return errorf(http.StatusBadRequest, api.CodeInvalidRequest, "query parameter %s=%q is not %s", name, value, want)
}

// intIn is parameter name as an integer from lo to hi, or def when absent.
func (q query) intIn(name string, lo, hi, def int) (int, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, badParam(name, v, fmt.Sprintf("a number from %d to %d", lo, hi))
	}
	return n, nil
}

// filter reads the list filters: env, status, scope, all, and expiring and
// unused in seconds.
func (q query) filter() (keys.ListFilter, error) {
	var f keys.ListFilter
	var err error
	if v := q.Get("env"); v != "" {
		if f.Env, err = keys.ParseEnv(v); err != nil {
			return f, badParam("env", v, "an environment (production, staging, development)")
		}
	}
	if v := q.Get("status"); v != "" {
		if f.Status, err = keys.ParseStatus(v); err != nil {
			return f, badParam("status", v, "a status (active, disabled, revoked, expired)")
		}
	}
	if v := q.Get("scope"); v != "" {
		if err := keys.ValidateScope(v); err != nil {
			return f, badParam("scope", v, "a scope")
		}
		f.Scope = v
	}
	if v := q.Get("all"); v != "" {
		if f.All, err = strconv.ParseBool(v); err != nil {
			return f, badParam("all", v, "true or false")
		}
	}
	const maxSeconds = 100 * 365 * 24 * 3600
	for _, p := range []struct {
		name string
		d    *time.Duration
	}{{"expiring", &f.Expiring}, {"unused", &f.Unused}} {
		n, err := q.intIn(p.name, 1, maxSeconds, 0)
		if err != nil {
			return f, err
		}
		*p.d = time.Duration(n) * time.Second
	}
	return f, nil
}
