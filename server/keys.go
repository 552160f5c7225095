package server

import (
	"net/http"
	"time"

	"github.com/keyctl/keyctl/api"
	"github.com/keyctl/keyctl/apikey"
	"github.com/keyctl/keyctl/store/keys"
)

func (s *Server) createKey(w http.ResponseWriter, r *http.Request, _ *caller) {
	var req api.CreateRequest
	if err := decode(w, r, &req, false); err != nil {
		s.fail(w, r, err)
		return
	}
	p := keys.CreateParams{
		Name: req.Name, Description: req.Description, Scopes: req.Scopes, Env: keys.Development,
		Prefix: apikey.DefaultPrefix, ExpiresAt: req.ExpiresAt, AllowedIPs: req.AllowedIPs,
		Quota: req.Quota, RateLimit: req.RateLimit, Metadata: req.Metadata,
	}
	if req.Env != "" {
		env, err := keys.ParseEnv(req.Env)
		if err != nil {
			s.fail(w, r, errorf(http.StatusBadRequest, api.CodeInvalidRequest, "%s", err))
			return
		}
		p.Env = env
	}
	if req.Prefix != "" {
		p.Prefix = req.Prefix
	}
	k, secret, err := s.store.Create(r.Context(), p)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Location", api.Version+"/keys/"+k.ID)
	writeJSON(w, http.StatusCreated, api.IssuedKey{Key: k, Secret: secret})
}

func (s *Server) getKey(w http.ResponseWriter, r *http.Request, _ *caller) {
	k, err := s.store.Get(r.Context(), r.PathValue("id"))
	s.answerKey(w, r, k, err)
}

func (s *Server) answerKey(w http.ResponseWriter, r *http.Request, k *keys.Key, err error) {
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, k)
}

func (s *Server) lookupKey(w http.ResponseWriter, r *http.Request, _ *caller) {
	var req api.KeyRequest
	if err := decode(w, r, &req, false); err != nil {
		s.fail(w, r, err)
		return
	}
	k, state, err := s.store.FindSecret(r.Context(), req.Key)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.FoundKey{Key: k, SecretState: api.SecretState{Current: state.Current, EndsAt: state.EndsAt}})
}

func (s *Server) updateKey(w http.ResponseWriter, r *http.Request, _ *caller) {
	var req api.UpdateRequest
	if err := decode(w, r, &req, false); err != nil {
		s.fail(w, r, err)
		return
	}
	p := req.Params()
	if p.Empty() {
		s.fail(w, r, errorf(http.StatusBadRequest, api.CodeInvalidRequest, "the update changes nothing"))
		return
	}
	k, err := s.store.Update(r.Context(), r.PathValue("id"), p)
	s.answerKey(w, r, k, err)
}

// rotateKey hands out a key's new secret. Whether the caller may have it
// (an admin may not rotate a management key) is decided by the store, in
// the rotation's own transaction, on the key it rotates.
func (s *Server) rotateKey(w http.ResponseWriter, r *http.Request, _ *caller) {
	var req api.RotateRequest
	if err := decode(w, r, &req, true); err != nil {
		s.fail(w, r, err)
		return
	}
	const maxSeconds = int64(keys.MaxGrace / time.Second)
	if req.GraceSeconds < 0 || req.GraceSeconds > maxSeconds {
		s.fail(w, r, errorf(http.StatusBadRequest, api.CodeInvalidRequest,
			"grace_seconds %d is not from 0 to %d", req.GraceSeconds, maxSeconds))
		return
	}
	k, secret, err := s.store.Rotate(r.Context(), r.PathValue("id"), time.Duration(req.GraceSeconds)*time.Second)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.IssuedKey{Key: k, Secret: secret})
}

func (s *Server) revokeKey(w http.ResponseWriter, r *http.Request, _ *caller) {
	var req api.RevokeRequest
	if err := decode(w, r, &req, true); err != nil {
		s.fail(w, r, err)
		return
	}
	k, err := s.store.Revoke(r.Context(), r.PathValue("id"), req.Reason)
	s.answerKey(w, r, k, err)
}

func (s *Server) disableKey(w http.ResponseWriter, r *http.Request, _ *caller) {
	s.setDisabled(w, r, true)
}

func (s *Server) enableKey(w http.ResponseWriter, r *http.Request, _ *caller) {
	s.setDisabled(w, r, false)
}

func (s *Server) setDisabled(w http.ResponseWriter, r *http.Request, disabled bool) {
	var none struct{}
	if err := decode(w, r, &none, true); err != nil {
		s.fail(w, r, err)
		return
	}
	k, err := s.store.SetDisabled(r.Context(), r.PathValue("id"), disabled)
	s.answerKey(w, r, k, err)
}

func (s *Server) keyUsage(w http.ResponseWriter, r *http.Request, _ *caller) {
	q, err := queryOf(r, "since", "limit")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var uq keys.UsageQuery
	if v := q.Get("since"); v != "" {
		if uq.Since, err = time.Parse(time.RFC3339, v); err != nil {
			s.fail(w, r, badParam("since", v, "an RFC 3339 time"))
			return
		}
	}
	if uq.Limit, err = q.intIn("limit", 1, 10000, 50); err != nil {
		s.fail(w, r, err)
		return
	}
	rep, err := s.store.Usage(r.Context(), r.PathValue("id"), uq)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}
