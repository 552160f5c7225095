// Package server is keyctl's HTTP API over a store.Store: key administration
// for admin tokens, verification for applications, health and metrics. It
// knows nothing of the command line.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyctl/keyctl/api"
	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/keys"
)

// Timeouts of the HTTP server: a slow or idle client cannot hold a
// connection for long.
const (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 15 * time.Second
	WriteTimeout      = 30 * time.Second
	IdleTimeout       = 2 * time.Minute
	// ShutdownTimeout bounds how long a graceful shutdown waits for the
	// requests in flight.
	ShutdownTimeout = 30 * time.Second
)

// Options configure a Server.
type Options struct {
	// AccessLog receives one line per request (method, route, status,
	// duration, the caller's key id); nil logs nothing.
	AccessLog io.Writer
	// ErrorLog receives errors the client is not told about; nil is
	// AccessLog, else nothing.
	ErrorLog io.Writer
	// Registry receives the metrics; a new one when nil.
	Registry *prometheus.Registry
	// Now is the clock list filters are applied at: the store's, which is
	// time.Now when nil.
	Now func() time.Time
}

// Server serves the API over one store. Close it after the HTTP server has
// shut down, so that every verification queued is recorded.
type Server struct {
	store    store.Store
	fast     store.FastVerifier // nil when the store has none
	bg       store.Background   // nil when the store has none
	pager    store.Pager
	batch    *batcher
	metrics  *metrics
	log      *slog.Logger // access log; nil when off
	errLog   *slog.Logger
	mux      *http.ServeMux
	patterns []string // every route registered on mux
	handler  http.Handler
	now      func() time.Time
	closed   atomic.Bool // Close was called: verifications are refused
	holders  holderLimits
	denials  denials
}

// New returns a server over st. It starts the goroutine that verifies
// requests in batches; Close stops it.
func New(st store.Store, opts Options) *Server {
	s := &Server{store: st, mux: http.NewServeMux(), now: opts.Now}
	if s.now == nil {
		s.now = time.Now
	}
	if opts.AccessLog != nil {
		s.log = slog.New(slog.NewTextHandler(opts.AccessLog, nil))
	}
	errOut := opts.ErrorLog
	if errOut == nil {
		errOut = opts.AccessLog
	}
	if errOut == nil {
		errOut = io.Discard
	}
	s.errLog = slog.New(slog.NewTextHandler(errOut, nil))
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s.metrics = newMetrics(reg)
	s.batch = newBatcher(batchVerifier(st), s.metrics)
	if fast, ok := st.(store.FastVerifier); ok {
		s.fast = fast
	}
	s.pager = store.PagerOf(st)
	if bg, ok := st.(store.Background); ok {
		s.bg = bg
		bg.OnBackgroundError(s.backgroundFailed)
	}
	s.routes(reg)
	s.handler = s.observe(s.mux)
	return s
}

// Handler is the API's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Close drains the verification queue and records every use: every
// verification accepted is recorded before it returns. It does not close
// the store.
func (s *Server) Close() {
	s.closed.Store(true)
	s.batch.close()
	s.flushDenials()
	if s.fast != nil {
		if err := s.fast.Flush(context.Background()); err != nil {
			s.errLog.Error("recording usage", "err", err)
		}
	}
}

// Flush returns once the use of every key verified so far is recorded, so
// that what is read next sees it.
func (s *Server) Flush(ctx context.Context) error {
	if s.fast == nil {
		return nil
	}
	return s.fast.Flush(ctx)
}

// check verifies req: on a reader, beside other requests, when that decides
// it (the use is recorded in the background); else in the next write batch.
// A caller's token may reuse its last verification while nothing it depends
// on has changed (store.FastVerifier.CheckToken).
func (s *Server) check(ctx context.Context, req keys.VerifyRequest, token bool) (*keys.VerifyResult, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	if s.fast != nil {
		checkFn := s.fast.Check
		if token {
			checkFn = s.fast.CheckToken
		}
		res, exact, err := checkFn(ctx, req)
		if err != nil || !exact {
			return res, err
		}
	}
	return s.batch.do(ctx, req)
}

func (s *Server) routes(reg *prometheus.Registry) {
	v := api.Version
	s.handle("GET /healthz", http.HandlerFunc(s.health))
	s.handle("GET /readyz", http.HandlerFunc(s.ready))
	s.handle("GET /metrics", s.metrics.handler(reg))
	s.handle("GET "+v+"/openapi.json", http.HandlerFunc(serveOpenAPI))

	s.handle("POST "+v+"/verify", http.HandlerFunc(s.verify))
	s.handle("POST "+v+"/credentials/revoke", http.HandlerFunc(s.revokeCredentials))
	s.handle("POST "+v+"/keys", s.authed(api.ScopeAdmin, s.createKey))
	s.handle("GET "+v+"/keys", s.authed(api.ScopeRead, s.listKeys))
	s.handle("POST "+v+"/keys/lookup", s.authed(api.ScopeRead, s.lookupKey))
	s.handle("GET "+v+"/keys/{id}", s.authed(api.ScopeRead, s.getKey))
	s.handle("PATCH "+v+"/keys/{id}", s.authed(api.ScopeAdmin, s.updateKey))
	s.handle("POST "+v+"/keys/{id}/rotate", s.authed(api.ScopeAdmin, s.rotateKey))
	s.handle("POST "+v+"/keys/{id}/rotate/undo", s.authed(api.ScopeAdmin, s.undoRotate))
	s.handle("POST "+v+"/keys/{id}/end-grace", s.authed(api.ScopeAdmin, s.endGrace))
	s.handle("GET "+v+"/keys/{id}/secrets", s.authed(api.ScopeRead, s.keySecrets))
	s.handle("POST "+v+"/keys/{id}/revoke", s.authed(api.ScopeAdmin, s.revokeKey))
	s.handle("POST "+v+"/keys/{id}/disable", s.authed(api.ScopeAdmin, s.disableKey))
	s.handle("POST "+v+"/keys/{id}/enable", s.authed(api.ScopeAdmin, s.enableKey))
	s.handle("GET "+v+"/keys/{id}/usage", s.authed(api.ScopeRead, s.keyUsage))
	s.handle("GET "+v+"/audit", s.authed(api.ScopeRead, s.audit))
	s.handle("GET "+v+"/audit/verify", s.authed(api.ScopeRead, s.verifyAudit))
}

// handle registers h for pattern on the mux and remembers the pattern, so
// that the routes can be checked against the OpenAPI document.
func (s *Server) handle(pattern string, h http.Handler) {
	s.mux.Handle(pattern, h)
	s.patterns = append(s.patterns, pattern)
}

func (s *Server) health(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, api.Health{Status: "ok"})
}

// ready says whether the service does all it should: 503 "degraded" when
// the uses it verifies cannot be recorded (the last background write
// failed), or when it is shutting down.
func (s *Server) ready(w http.ResponseWriter, _ *http.Request) {
	out := api.Readiness{Status: "ok"}
	if s.bg != nil {
		var failing error
		out.UsesRecorded, out.UsesNotRecorded, failing = s.bg.UsageRecorded()
		if failing != nil {
			out.Status, out.Reason = "degraded", "usage cannot be recorded: "+failing.Error()
		}
	}
	if s.closed.Load() {
		out.Status, out.Reason = "degraded", "the server is shutting down"
	}
	status := http.StatusOK
	if out.Status != "ok" {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, out)
}

// backgroundFailed logs a failure of the store's background work when it
// happens, with the uses it lost, and counts them.
func (s *Server) backgroundFailed(err error, lost int) {
	s.errLog.Error("background work failed", "uses_not_recorded", lost, "err", err)
	s.metrics.backgroundErrors.Inc()
	s.metrics.usesNotRecorded.Add(float64(lost))
}

// NewHTTPServer returns an http.Server for h with keyctl's timeouts.
func NewHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    api.MaxBodyBytes,
	}
}

// TLS names a certificate and its key; both empty serves plain HTTP.
type TLS struct{ CertFile, KeyFile string }

// Run serves on ln until ctx is done, then shuts down gracefully: it stops
// accepting, finishes the requests in flight, and records every queued
// verification. A clean shutdown returns nil.
func (s *Server) Run(ctx context.Context, ln net.Listener, t TLS) error {
	hs := NewHTTPServer(s.handler)
	hs.ErrorLog = slog.NewLogLogger(s.errLog.Handler(), slog.LevelWarn)
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return fmt.Errorf("loading the TLS certificate: %w", err)
		}
		hs.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		ln = tls.NewListener(ln, hs.TLSConfig)
	}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	var err error
	select {
	case err = <-served:
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
		err = hs.Shutdown(sctx)
		cancel()
		if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
	}
	s.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
