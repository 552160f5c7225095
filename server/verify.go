package server

import (
	"cmp"
	"context"
	"net/http"
	"net/netip"

	"github.com/keyctl/keyctl/api"
	"github.com/keyctl/keyctl/store/keys"
)

// verify answers whether a key may be used, always with 200 and the same
// result object as keyctl verify -o json: the calling application decides
// what to tell its own client (the result's http_status is a suggestion).
//
// The caller's token is verified first, then the key asked about, each on a
// reader when that decides it (see Server.check).
func (s *Server) verify(w http.ResponseWriter, r *http.Request) {
	var req api.VerifyRequest
	bodyErr := decode(w, r, &req, false)
	var vr keys.VerifyRequest
	if bodyErr == nil {
		vr, bodyErr = verifyRequest(req)
	}
	tok, err := bearer(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if bodyErr != nil {
		// Authentication comes first, as on every route; then the body.
		c, err := s.authenticate(r)
		if err == nil && !c.has(api.ScopeVerify) {
			err = lacks(c, api.ScopeVerify)
		}
		logKey(w, c)
		s.fail(w, r, cmp.Or(err, bodyErr))
		return
	}
	ip := clientIP(r)
	res, c, err := s.checkCall(r.Context(), authRequest(tok, ip), ip, vr)
	logKey(w, c)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.metrics.verifications.WithLabelValues(string(res.Code)).Inc()
	writeJSON(w, http.StatusOK, res)
}

// checkCall verifies the caller's token and, if it may verify, the key
// asked about: with one read for both when the token's last verification
// still holds; each in a write batch when it must be exact.
func (s *Server) checkCall(ctx context.Context, tokReq keys.VerifyRequest, ip netip.Addr, req keys.VerifyRequest) (*keys.VerifyResult, *caller, error) {
	var c *caller
	var authErr error
	allow := func(tokRes *keys.VerifyResult) bool {
		c, authErr = s.callerOf(tokRes, ip)
		if authErr == nil && !c.has(api.ScopeVerify) {
			authErr = lacks(c, api.ScopeVerify)
		}
		return authErr == nil
	}
	if s.closed.Load() {
		return nil, nil, errClosed
	}
	if s.fast != nil {
		res, tokRes, exact, err := s.fast.CheckCall(ctx, tokReq, allow, req)
		switch {
		case err != nil:
			return nil, c, err
		case tokRes != nil && authErr != nil:
			return nil, c, authErr
		case !exact:
			return res, c, nil
		case tokRes != nil: // the key must be verified exactly
			res, err = s.batch.do(ctx, req)
			return res, c, err
		}
	}
	// The token must be verified exactly (or there is no reader).
	tokRes, err := s.check(ctx, tokReq, true)
	if err != nil {
		return nil, nil, err
	}
	if !allow(tokRes) {
		return nil, c, authErr
	}
	res, err := s.check(ctx, req, false)
	return res, c, err
}

func verifyRequest(req api.VerifyRequest) (keys.VerifyRequest, error) {
	vr := keys.VerifyRequest{Token: req.Key, Scopes: req.Scopes, Cost: 1}
	bad := func(format string, a ...any) error {
		return errorf(http.StatusBadRequest, api.CodeInvalidRequest, format, a...)
	}
	if req.Cost != nil {
		if *req.Cost < 0 {
			return vr, bad("cost %d is negative", *req.Cost)
		}
		vr.Cost = *req.Cost
	}
	for _, sc := range req.Scopes {
		if err := keys.ValidateScope(sc); err != nil {
			return vr, bad("%s", err)
		}
	}
	if req.Env != "" {
		env, err := keys.ParseEnv(req.Env)
		if err != nil {
			return vr, bad("%s", err)
		}
		vr.Env = env
	}
	if req.IP != "" {
		ip, err := netip.ParseAddr(req.IP)
		if err != nil || ip.Zone() != "" {
			return vr, bad("ip %q is not an IP address", req.IP)
		}
		vr.IP = ip
	}
	return vr, nil
}
