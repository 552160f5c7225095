package server

import (
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/keyctl/keyctl/api"
	"github.com/keyctl/keyctl/store/keys"
)

// caller is the key a request authenticated with.
type caller struct {
	key *keys.Key
	ip  netip.Addr
}

// has reports whether the caller's key grants scope (keys.Grants). It is
// the route's first, coarse check; what a change may touch is decided by
// the store, inside the change's transaction (keys.Authorize).
func (c *caller) has(scope string) bool { return keys.Grants(c.key.Scopes, scope) }

type authedFunc func(w http.ResponseWriter, r *http.Request, c *caller)

// authed authenticates the request's token with the store's own Verify (so
// that its use counts like any key's), requires scope, and passes the store
// the acting key in the context.
func (s *Server) authed(scope string, h authedFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := s.authenticate(r)
		if id := r.PathValue("id"); err == nil && keys.LooksLikeToken(id) {
			// The secret is in the URL, and so in every log on its way:
			// it is not looked at, and not echoed.
			err = errorf(http.StatusBadRequest, api.CodeInvalidRequest,
				"a secret never goes in a URL: POST it to %s/keys/lookup; and rotate or revoke it, as it may be in logs now", api.Version)
		}
		if err == nil && !c.has(scope) {
			err = lacks(c, scope)
			s.denied(r, c, scope)
		}
		logKey(w, c)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		// Admin calls read what verifications wrote: usage recorded in the
		// background is written first.
		if err := s.Flush(r.Context()); err != nil {
			s.fail(w, r, err)
			return
		}
		ctx := keys.WithActor(r.Context(), actorOf(c))
		if note := r.Header.Get(api.NoteHeader); note != "" {
			if err := keys.CheckText(api.NoteHeader, note, keys.MaxNote); err != nil {
				s.fail(w, r, err)
				return
			}
			ctx = keys.WithNote(ctx, note)
		}
		h(w, r.WithContext(ctx), c)
		// A change the store refused (a management key is an owner's) is
		// a refused admin call too.
		if rec, ok := w.(*recorder); ok && rec.status == http.StatusForbidden {
			s.denied(r, c, api.ScopeOwner)
		}
	})
}

// actorOf is who acts, for the audit trail: the caller's key and address.
func actorOf(c *caller) keys.Actor {
	return keys.Actor{Kind: keys.ActorKey, ID: c.key.ID, Name: c.key.Name, Address: addrString(c.ip)}
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// authenticate verifies the token the request carries.
func (s *Server) authenticate(r *http.Request) (*caller, error) {
	tok, err := bearer(r)
	if err != nil {
		return nil, err
	}
	ip := clientIP(r)
	res, err := s.check(r.Context(), authRequest(tok, ip), true)
	if err != nil {
		return nil, err
	}
	return s.callerOf(res, ip)
}

// authRequest verifies a token as any key's use: it spends one unit of
// quota and counts against the rate limit and the address allowlist.
func authRequest(tok string, ip netip.Addr) keys.VerifyRequest {
	return keys.VerifyRequest{Token: tok, IP: ip, Cost: 1}
}

// callerOf judges a token's verification. A key that is not valid is 401,
// except that one over its rate limit is 429 and one used from an address it
// does not allow is 403. A caller is returned whenever the token names a key,
// for the access log.
func (s *Server) callerOf(res *keys.VerifyResult, ip netip.Addr) (*caller, error) {
	s.metrics.authentications.WithLabelValues(string(res.Code)).Inc()
	var c *caller
	if res.Key != nil {
		c = &caller{key: res.Key, ip: ip}
	}
	switch res.Code {
	case keys.Valid:
		return c, nil
	case keys.RateLimited:
		e := errorf(http.StatusTooManyRequests, api.CodeRateLimited, "the token's key is over its rate limit: %s", res.Reason)
		if res.RetryAt != nil {
			e.retryAfter = max(1, int(time.Until(*res.RetryAt).Seconds()+0.999))
		}
		return c, e
	case keys.Forbidden:
		return c, errorf(http.StatusForbidden, api.CodeForbidden, "the token may not be used: %s", res.Reason)
	}
	return c, unauthorized("the token was refused (%s): %s", strings.ToLower(string(res.Code)), res.Reason)
}

// lacks is the error for a caller without scope.
func lacks(c *caller, scope string) error {
	return errorf(http.StatusForbidden, api.CodeForbidden,
		"key %q does not hold scope %s (or one that includes it)", c.key.Name, scope)
}

// logKey names the caller in the access log.
func logKey(w http.ResponseWriter, c *caller) {
	if rec, ok := w.(*recorder); ok && c != nil {
		rec.keyID = c.key.ID
	}
}

func unauthorized(format string, a ...any) *apiError {
	e := errorf(http.StatusUnauthorized, api.CodeUnauthorized, format, a...)
	e.challenge = true
	return e
}

// bearer returns the request's token: from Authorization: Bearer when that
// header is present, else from X-API-Key.
func bearer(r *http.Request) (string, error) {
	for _, name := range []string{"Authorization", "X-API-Key"} {
		if vals := r.Header.Values(name); len(vals) > 1 && slices.ContainsFunc(vals[1:], func(v string) bool { return v != vals[0] }) {
			return "", errorf(http.StatusBadRequest, api.CodeInvalidRequest, "the %s header is given twice, with different values", name)
		}
	}
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, _ := strings.Cut(h, " ")
		tok = strings.TrimSpace(tok)
		if !strings.EqualFold(scheme, "Bearer") || tok == "" {
			return "", unauthorized("the Authorization header is not \"Bearer <token>\"")
		}
		return tok, nil
	}
	if tok := strings.TrimSpace(r.Header.Get("X-API-Key")); tok != "" {
		return tok, nil
	}
	return "", unauthorized("no token: send it as Authorization: Bearer <token> or X-API-Key: <token>")
}

// clientIP is the address the request came from (a proxy's, behind one).
func clientIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
