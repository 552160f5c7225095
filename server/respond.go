package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/keyctl/keyctl/api"
	"github.com/keyctl/keyctl/store/keys"
)

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"internal error"}}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// apiError is an error response: a status, a stable code, a message.
type apiError struct {
	status     int
	code       string
	message    string
	retryAfter int  // seconds, for Retry-After; 0: none
	challenge  bool // a 401 that asks for a bearer token
}

func (e *apiError) Error() string { return e.message }

func errorf(status int, code, format string, a ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, a...)}
}

func writeError(w http.ResponseWriter, e *apiError) {
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.retryAfter))
	}
	if e.challenge {
		w.Header().Set("WWW-Authenticate", `Bearer realm="keyctl"`)
	}
	writeJSON(w, e.status, api.Error{Error: api.ErrorDetail{Code: e.code, Message: e.message}})
}

// statusClientClosed is what a request whose client hung up is counted
// as, in the metrics and the access log (nginx's 499): not a failure of the
// server's.
const statusClientClosed = 499

// fail answers with err: an *apiError as it is, a store error with its
// status, anything else as a 500 whose cause is logged and not told. A
// request whose client has gone is not a failure: it is counted as 499
// and not logged as an error.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	switch {
	case r.Context().Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
		ae = errorf(statusClientClosed, "client_closed_request", "the client closed the request")
	case errors.As(err, &ae):
	case errors.Is(err, keys.ErrInvalid):
		ae = errorf(http.StatusBadRequest, api.CodeInvalidRequest, "%s", err)
	case errors.Is(err, keys.ErrNotFound):
		ae = errorf(http.StatusNotFound, api.CodeNotFound, "%s", err)
	case errors.Is(err, keys.ErrConflict):
		ae = errorf(http.StatusConflict, api.CodeConflict, "%s", err)
	case errors.Is(err, keys.ErrRevoked):
		ae = errorf(http.StatusConflict, api.CodeRevoked, "%s", err)
	case errors.Is(err, keys.ErrForbidden):
		ae = errorf(http.StatusForbidden, api.CodeForbidden, "%s", err)
	case errors.Is(err, errClosed):
		ae = errorf(http.StatusServiceUnavailable, api.CodeUnavailable, "the server is shutting down")
	case errors.Is(err, keys.ErrUnavailable):
		// Nothing was decided: the client may retry, here or at another
		// replica. The cause is logged, not told.
		s.errLog.Error("database unavailable", "method", r.Method, "route", r.Pattern, "error", err)
		ae = errorf(http.StatusServiceUnavailable, api.CodeUnavailable, "the database is unavailable; retry")
		ae.retryAfter = 1
	default:
		s.errLog.Error("request failed", "method", r.Method, "route", r.Pattern, "error", err)
		ae = errorf(http.StatusInternalServerError, api.CodeInternal, "internal error")
	}
	writeError(w, ae)
}

// decode reads r's JSON body into v: at most api.MaxBodyBytes (413 past
// that), one JSON object, no unknown fields (400). A body that is absent (no
// bytes at all) leaves v as it is when optional; a body of only spaces, or
// null, or anything but an object, is refused.
func decode(w http.ResponseWriter, r *http.Request, v any, optional bool) error {
	if r.ContentLength > api.MaxBodyBytes {
		return tooLarge()
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, api.MaxBodyBytes))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return tooLarge()
	case err != nil:
		return errorf(http.StatusBadRequest, api.CodeInvalidJSON, "reading the body: %s", err)
	case len(body) == 0 && optional:
		return nil
	case len(body) == 0:
		return errorf(http.StatusBadRequest, api.CodeInvalidJSON, "the request needs a JSON body")
	}
	if trimmed := bytes.TrimSpace(body); len(trimmed) == 0 || trimmed[0] != '{' {
		return errorf(http.StatusBadRequest, api.CodeInvalidJSON, "the body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err = dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); !errors.Is(terr, io.EOF) {
			err = errors.New("data after the JSON value")
		}
	}
	if err != nil {
		return errorf(http.StatusBadRequest, api.CodeInvalidJSON, "invalid JSON body: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}

func tooLarge() error {
	return errorf(http.StatusRequestEntityTooLarge, api.CodeBodyTooLarge, "the request body is larger than %d bytes", api.MaxBodyBytes)
}
