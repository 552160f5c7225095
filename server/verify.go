package server

import (
	"net/http"
	"net/netip"

	"github.com/keyctl/keyctl/server/api"
	"github.com/keyctl/keyctl/store"
)

// verify answers whether a key may be used, always with 200 and the same
// result object as keyctl verify -o json: the calling application decides
// what to tell its own client (the result's http_status is a suggestion).
func (s *Server) verify(w http.ResponseWriter, r *http.Request, _ *caller) {
	var req api.VerifyRequest
	if err := decode(w, r, &req, false); err != nil {
		s.fail(w, r, err)
		return
	}
	vr, err := verifyRequest(req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	res, err := s.batch.do(r.Context(), vr)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.metrics.verifications.WithLabelValues(string(res.Code)).Inc()
	writeJSON(w, http.StatusOK, res)
}

func verifyRequest(req api.VerifyRequest) (store.VerifyRequest, error) {
	vr := store.VerifyRequest{Token: req.Key, Scopes: req.Scopes, Cost: 1}
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
		if err := store.ValidateScope(sc); err != nil {
			return vr, bad("%s", err)
		}
	}
	if req.Env != "" {
		env, err := store.ParseEnv(req.Env)
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
