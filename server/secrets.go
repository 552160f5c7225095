package server

import (
	"net/http"

	"github.com/keyctl/keyctl/api"
)

// undoRotate undoes a rotation whose secret the client could not deliver.
// Whether the caller may (an admin may not touch a management key) is
// decided by the store, in the undoing's own transaction, as for a rotation.
func (s *Server) undoRotate(w http.ResponseWriter, r *http.Request, _ *caller) {
	var req api.UndoRotateRequest
	if err := decode(w, r, &req, false); err != nil {
		s.fail(w, r, err)
		return
	}
	k, err := s.store.UndoRotate(r.Context(), r.PathValue("id"), req.Secret)
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
