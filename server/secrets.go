package server

import (
	"net/http"

	"github.com/keyctl/keyctl/api"
)

// undoRotate undoes a rotation whose secret the client could not deliver.
// Like a rotation, it needs an owner for a key that holds keyctl:* scopes.
func (s *Server) undoRotate(w http.ResponseWriter, r *http.Request, c *caller) {
	var req api.UndoRotateRequest
	if err := decode(w, r, &req, false); err != nil {
		s.fail(w, r, err)
		return
	}
	ref := r.PathValue("id")
	if !c.has(api.ScopeOwner) {
		k, err := s.store.Get(r.Context(), ref)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if err := c.mayGrant(k.Scopes); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	k, err := s.store.UndoRotate(r.Context(), ref, req.Secret)
	s.answerKey(w, r, k, err)
}

func (s *Server) endGrace(w http.ResponseWriter, r *http.Request, _ *caller) {
	var none struct{}
	if err := decode(w, r, &none, true); err != nil {
		s.fail(w, r, err)
		return
	}
	k, n, err := s.store.EndGrace(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.EndGraceResult{Key: k, Ended: n})
}

func (s *Server) keySecrets(w http.ResponseWriter, r *http.Request, _ *caller) {
	secrets, err := s.store.Secrets(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.SecretList{Secrets: secrets})
}
