package server

import (
	"context"
	"log/slog"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/keyctl/keyctl/api"
	"github.com/keyctl/keyctl/store/keys"
)

// metrics are the server's Prometheus metrics.
type metrics struct {
	requests         *prometheus.CounterVec
	duration         *prometheus.HistogramVec
	verifications    *prometheus.CounterVec
	authentications  *prometheus.CounterVec
	denied           *prometheus.CounterVec
	batchSize        prometheus.Histogram
	backgroundErrors prometheus.Counter
	usesNotRecorded  prometheus.Counter
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyctl_http_requests_total",
			Help: "HTTP requests answered, by method, route pattern and status.",
		}, []string{"method", "route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "keyctl_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route pattern.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}, []string{"route"}),
		verifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyctl_verifications_total",
			Help: "Verifications answered by POST /v1/verify, by result code.",
		}, []string{"code"}),
		authentications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyctl_authentications_total",
			Help: "Tokens presented to the API, by the result code of their verification.",
		}, []string{"code"}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyctl_denied_requests_total",
			Help: "Admin calls refused to an authenticated caller, by route pattern: its key lacks the scope, or may not touch the key.",
		}, []string{"route"}),
		backgroundErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyctl_background_errors_total",
			Help: "Failures of the store's background work (recording uses, pruning the usage log).",
		}),
		usesNotRecorded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyctl_uses_not_recorded_total",
			Help: "Verifications whose use (usage count, last use) could not be written.",
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "keyctl_verify_batch_size",
			Help:    "Verifications (of requests and of tokens) recorded per store transaction.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
		}),
	}
	for _, c := range keys.Codes {
		m.verifications.WithLabelValues(string(c))
		m.authentications.WithLabelValues(string(c))
	}
	reg.MustRegister(m.requests, m.duration, m.verifications, m.authentications, m.denied, m.batchSize,
		m.backgroundErrors, m.usesNotRecorded,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// recorder remembers a response's status and the caller's key id, for the
// metrics and the access log. The mux answers requests that match no route
// (404) or no method of their route (405) in plain text; recorder turns
// those into the API's JSON errors.
type recorder struct {
	http.ResponseWriter
	req    *http.Request
	status int
	keyID  string
	muted  bool // the mux's own body is dropped
}

func (rec *recorder) WriteHeader(code int) {
	if rec.status != 0 {
		return
	}
	rec.status = code
	if rec.req.Pattern == "" && (code == http.StatusNotFound || code == http.StatusMethodNotAllowed) {
		rec.muted = true
		e := errorf(http.StatusNotFound, api.CodeNotFound, "no route %s", rec.req.URL.Path)
		if code == http.StatusMethodNotAllowed {
			e = errorf(code, api.CodeMethodNotAllowed, "%s does not accept %s (allowed: %s)",
				rec.req.URL.Path, rec.req.Method, rec.Header().Get("Allow"))
		}
		rec.Header().Del("X-Content-Type-Options")
		writeError(rec.ResponseWriter, e)
		return
	}
	rec.ResponseWriter.WriteHeader(code)
}

func (rec *recorder) Write(b []byte) (int, error) {
	if rec.status == 0 {
		rec.WriteHeader(http.StatusOK)
	}
	if rec.muted {
		return len(b), nil
	}
	return rec.ResponseWriter.Write(b)
}

func (rec *recorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }

// observe counts and times each request and writes its access log line:
// method, route pattern, status, duration and the caller's key id; never a
// token or a secret.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		// Until it authenticates, a request acts with no authority at
		// all: a handler that forgot to authenticate is refused by the
		// store, never taken for the OS user.
		r = r.WithContext(keys.WithActor(r.Context(), keys.Actor{Kind: keys.ActorAnonymous, Name: "anonymous"}))
		rec := &recorder{ResponseWriter: w, req: r}
		if clean := path.Clean(r.URL.Path); clean != r.URL.Path && clean+"/" != r.URL.Path || strings.Contains(r.URL.Path, "//") {
			// The mux would redirect to the cleaned path; no route of
			// the API has one: not found, in the API's JSON.
			writeError(rec, errorf(http.StatusNotFound, api.CodeNotFound, "no route %s", r.URL.Path))
		} else {
			next.ServeHTTP(rec, r)
		}
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		d := time.Since(start)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		status := strconv.Itoa(rec.status)
		s.metrics.requests.WithLabelValues(methodLabel(r.Method), route, status).Inc()
		s.metrics.duration.WithLabelValues(route).Observe(d.Seconds())
		if s.log != nil {
			s.log.LogAttrs(context.Background(), slog.LevelInfo, "request",
				slog.String("method", r.Method), slog.String("route", route), slog.Int("status", rec.status),
				slog.Duration("duration", d), slog.String("key_id", rec.keyID))
		}
	})
}

// methodLabel keeps the metrics' label values few: a client chooses the
// method, and any token is one.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}
