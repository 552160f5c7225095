package server

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/keyctl/keyctl/api"
	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/keys"
	"github.com/keyctl/keyctl/store/sqlite"
)

// clock is the store's clock in tests, moved by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testServer is a real server on a loopback port over a real SQLite store,
// with a token for each admin scope. Every response it receives is checked
// against openapi.json.
type testServer struct {
	t      *testing.T
	st     *sqlite.SQLite
	path   string // the database file
	srv    *Server
	url    string
	clock  *clock
	log    *syncBuffer
	cancel context.CancelFunc
	done   chan error
	router routers.Router
	doc    *openapi3.T
	http   *http.Client      // every response it receives is checked against openapi.json
	tok    map[string]string // "owner", "admin", "read", "verify", "plain" → token
	keys   map[string]*keys.Key
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func start(t *testing.T) *testServer {
	t.Helper()
	c := &clock{t: time.Now().UTC().Truncate(time.Second)}
	path := filepath.Join(t.TempDir(), "keyctl.db")
	st, err := store.OpenSQLite(context.Background(), path, store.Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{t: t, st: st, path: path, clock: c, log: &syncBuffer{}, tok: map[string]string{}, keys: map[string]*keys.Key{}}
	for name, scope := range map[string]string{
		"owner": api.ScopeOwner, "admin": api.ScopeAdmin, "read": api.ScopeRead, "verify": api.ScopeVerify, "plain": "sdk",
	} {
		ts.keys[name], ts.tok[name] = ts.mint(keys.CreateParams{Name: name, Scopes: []string{scope}})
	}
	ts.srv = New(st, Options{AccessLog: ts.log, Now: c.Now})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.url = "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	ts.cancel, ts.done = cancel, make(chan error, 1)
	srv := ts.srv
	go func() { ts.done <- srv.Run(ctx, ln, TLS{}) }()
	ts.loadSpec()
	ts.http = ts.client(http.DefaultTransport)
	t.Cleanup(func() {
		ts.stop()
		st.Close()
	})
	return ts
}

// stop shuts the server down gracefully and checks that it said so.
func (ts *testServer) stop() {
	if ts.cancel == nil {
		return
	}
	ts.cancel()
	ts.cancel = nil
	if err := <-ts.done; err != nil {
		ts.t.Errorf("Run: %v", err)
	}
}

func (ts *testServer) loadSpec() {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(api.OpenAPI)
	if err != nil {
		ts.t.Fatal(err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		ts.t.Fatalf("openapi.json is not a valid OpenAPI document: %v", err)
	}
	doc.Servers = openapi3.Servers{{URL: "/"}} // any host: a test may run a second server
	ts.doc = doc
	if ts.router, err = gorillamux.NewRouter(doc); err != nil {
		ts.t.Fatal(err)
	}
}

// mint creates a key directly in the store, as `keyctl create` on the
// server's database would.
func (ts *testServer) mint(p keys.CreateParams) (*keys.Key, string) {
	ts.t.Helper()
	if p.Env == "" {
		p.Env = keys.Development
	}
	if p.Prefix == "" {
		p.Prefix = "sk"
	}
	k, secret, err := ts.st.Create(context.Background(), p)
	if err != nil {
		ts.t.Fatal(err)
	}
	return k, secret
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r *response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decoding %s: %v", r.body, err)
	}
}

// errCode is the code of an error response.
func (r *response) errCode(t *testing.T) string {
	t.Helper()
	var e api.Error
	r.decode(t, &e)
	return e.Error.Code
}

// call sends a request with token as a bearer token ("" sends none) and a
// JSON body (a string or []byte is sent as it is; nil sends none), and
// validates the response against the OpenAPI document.
func (ts *testServer) call(method, path, token string, body any) *response {
	ts.t.Helper()
	return ts.send(method, path, body, func(h http.Header) {
		if token != "" {
			h.Set("Authorization", "Bearer "+token)
		}
	})
}

func (ts *testServer) send(method, path string, body any, headers func(http.Header)) *response {
	ts.t.Helper()
	return ts.sendOn(method, path, body, headers, true)
}

// sendOn is send, checking the response against the OpenAPI document when
// validate is set; without, it may be called from any goroutine.
func (ts *testServer) sendOn(method, path string, body any, headers func(http.Header), validate bool) *response {
	ts.t.Helper()
	var raw []byte
	switch b := body.(type) {
	case nil:
	case string:
		raw = []byte(b)
	case []byte:
		raw = b
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			ts.t.Fatal(err)
		}
	}
	req, err := http.NewRequest(method, ts.url+path, bytes.NewReader(raw))
	if err != nil {
		ts.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if headers != nil {
		headers(req.Header)
	}
	resp, err := ts.http.Do(req)
	if err != nil {
		ts.t.Error(err)
		return &response{}
	}
	defer resp.Body.Close()
	out := &response{status: resp.StatusCode, header: resp.Header}
	if out.body, err = io.ReadAll(resp.Body); err != nil {
		ts.t.Error(err)
	}
	if validate {
		ts.validate(req, raw, out)
	}
	return out
}

// client is an HTTP client over transport that checks every response it
// receives against openapi.json. Every request a test sends goes through
// one.
func (ts *testServer) client(transport http.RoundTripper) *http.Client {
	return &http.Client{Transport: validating{ts: ts, next: transport}}
}

type validating struct {
	ts   *testServer
	next http.RoundTripper
}

// CloseIdleConnections lets go of the transport's idle connections.
func (v validating) CloseIdleConnections() {
	if c, ok := v.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func (v validating) RoundTrip(req *http.Request) (*http.Response, error) {
	var reqBody []byte
	if req.Body != nil {
		var err error
		if reqBody, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(reqBody))
	}
	resp, err := v.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	v.ts.validate(req.Clone(req.Context()), reqBody, &response{status: resp.StatusCode, header: resp.Header, body: body})
	return resp, nil
}

// validate checks a response against the operation the OpenAPI document
// gives for the request; a request that matches no operation (404, 405) must
// still answer with the Error schema. It may run on any goroutine.
func (ts *testServer) validate(req *http.Request, reqBody []byte, r *response) {
	if ct := r.header.Get("Content-Type"); r.status >= 400 && ct != "application/json" {
		ts.t.Errorf("%s %s: %d with Content-Type %q, want application/json", req.Method, req.URL.Path, r.status, ct)
	}
	req.Body = io.NopCloser(bytes.NewReader(reqBody))
	route, params, err := ts.router.FindRoute(req)
	if err != nil {
		if r.status != http.StatusNotFound && r.status != http.StatusMethodNotAllowed {
			ts.t.Errorf("%s %s: no operation in openapi.json, yet %d", req.Method, req.URL.Path, r.status)
		}
		var v any
		if err := json.Unmarshal(r.body, &v); err != nil {
			ts.t.Errorf("%s %s: %d body is not JSON: %s", req.Method, req.URL.Path, r.status, r.body)
			return
		}
		if err := ts.doc.Components.Schemas["Error"].Value.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
			ts.t.Errorf("%s %s: %d body does not match Error: %v", req.Method, req.URL.Path, r.status, err)
		}
		return
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
		},
		Status:  r.status,
		Header:  r.header,
		Body:    io.NopCloser(bytes.NewReader(r.body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		ts.t.Errorf("%s %s: %d response does not match openapi.json: %v\nbody: %s", req.Method, req.URL.Path, r.status, err, r.body)
	}
}

// want checks a response's status and, for errors, its code.
func want(t *testing.T, r *response, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	if code != "" {
		if got := r.errCode(t); got != code {
			t.Fatalf("error code %q, want %q: %s", got, code, r.body)
		}
	}
}

// exec runs SQL on the database from a connection of its own, as the
// sqlite3 shell would.
func (ts *testServer) exec(query string, args ...any) {
	ts.t.Helper()
	db, err := sql.Open("sqlite", ts.path)
	if err != nil {
		ts.t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(query, args...); err != nil {
		ts.t.Fatal(err)
	}
}

func (ts *testServer) usageCount(ref string) int64 {
	ts.t.Helper()
	if err := ts.srv.Flush(context.Background()); err != nil {
		ts.t.Fatal(err)
	}
	k, err := ts.st.Get(context.Background(), ref)
	if err != nil {
		ts.t.Fatal(err)
	}
	return k.UsageCount
}

func TestOpenAPIServedIsTheDocument(t *testing.T) {
	ts := start(t)
	r := ts.call("GET", "/v1/openapi.json", "", nil)
	want(t, r, 200, "")
	if !bytes.Equal(r.body, api.OpenAPI) {
		t.Fatal("GET /v1/openapi.json is not api/openapi.json")
	}
	if !ts.doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi.json is version %s, want 3.1", ts.doc.OpenAPI)
	}
}

func TestHealthAndMetrics(t *testing.T) {
	ts := start(t)
	want(t, ts.call("GET", "/healthz", "", nil), 200, "")
	want(t, ts.call("POST", "/v1/verify", ts.tok["verify"], api.VerifyRequest{Key: ts.tok["plain"]}), 200, "")
	want(t, ts.call("GET", "/v1/nothing", "", nil), 404, api.CodeNotFound)
	r := ts.call("GET", "/metrics", "", nil)
	want(t, r, 200, "")
	for _, line := range []string{
		`keyctl_http_requests_total{method="GET",route="GET /healthz",status="200"} 1`,
		`keyctl_http_requests_total{method="GET",route="unmatched",status="404"} 1`,
		`keyctl_verifications_total{code="VALID"} 1`,
		`keyctl_authentications_total{code="VALID"} 1`,
		`keyctl_http_request_duration_seconds_count{route="POST /v1/verify"} 1`,
		`keyctl_verify_batch_size_count`,
	} {
		if !strings.Contains(string(r.body), line) {
			t.Errorf("metrics lack %s", line)
		}
	}
}

func TestAccessLogNamesKeyNeverToken(t *testing.T) {
	ts := start(t)
	created := ts.call("POST", "/v1/keys", ts.tok["admin"], api.CreateRequest{Name: "logged"})
	want(t, created, 201, "")
	var k api.IssuedKey
	created.decode(t, &k)
	want(t, ts.call("POST", "/v1/verify", ts.tok["verify"], api.VerifyRequest{Key: k.Secret}), 200, "")
	want(t, ts.call("GET", "/v1/keys", "sk_test_notatoken", nil), 401, api.CodeUnauthorized)
	ts.stop()
	log := ts.log.String()
	for _, line := range []string{
		`method=POST route="POST /v1/keys" status=201 duration=`,
		`key_id=` + ts.keys["admin"].ID,
		`route="POST /v1/verify" status=200`,
		`route="GET /v1/keys" status=401`,
	} {
		if !strings.Contains(log, line) {
			t.Errorf("access log lacks %q:\n%s", line, log)
		}
	}
	for _, secret := range []string{k.Secret, ts.tok["admin"], ts.tok["verify"], "sk_test_notatoken"} {
		if strings.Contains(log, secret) {
			t.Fatalf("access log holds a token:\n%s", log)
		}
	}
}

func TestGracefulShutdownFinishesRequestsInFlight(t *testing.T) {
	ts := start(t)
	gate := &gatedStore{SQLite: ts.st, entered: make(chan struct{}, 8), release: make(chan struct{})}
	srv := New(gate, Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, ln, TLS{}) }()
	url := "http://" + ln.Addr().String()

	const n = 8
	statuses := make(chan int, n)
	for range n {
		go func() {
			body := strings.NewReader(`{"key": "` + ts.tok["plain"] + `"}`)
			req, _ := http.NewRequest("POST", url+"/v1/verify", body)
			req.Header.Set("X-API-Key", ts.tok["verify"])
			resp, err := ts.http.Do(req)
			if err != nil {
				t.Error(err)
				statuses <- 0
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		}()
	}
	// Every request is being verified: all are in flight.
	for range n {
		<-gate.entered
	}
	cancel()
	// Once the listener is closed, shutdown has begun; then let the
	// verifications go on.
	for {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			break
		}
		c.Close()
		time.Sleep(time.Millisecond)
	}
	close(gate.release)
	for range n {
		if s := <-statuses; s != 200 {
			t.Errorf("a request in flight got %d, want 200", s)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := ts.usageCount("plain"); got != n {
		t.Fatalf("usage_count %d after shutdown, want %d", got, n)
	}
	if got := ts.usageCount("verify"); got != n {
		t.Fatalf("the verify token's usage_count %d, want %d", got, n)
	}
}

// gatedStore holds verifications until released, so that a test can shut
// down with requests in flight: each says so on entered.
type gatedStore struct {
	*sqlite.SQLite
	entered chan struct{}
	release chan struct{}
}

func (g *gatedStore) wait() {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	<-g.release
}

func (g *gatedStore) VerifyBatch(ctx context.Context, reqs []keys.VerifyRequest) ([]*keys.VerifyResult, error) {
	g.wait()
	return g.SQLite.VerifyBatch(ctx, reqs)
}

func (g *gatedStore) Check(ctx context.Context, req keys.VerifyRequest) (*keys.VerifyResult, bool, error) {
	g.wait()
	return g.SQLite.Check(ctx, req)
}

func (g *gatedStore) CheckCall(ctx context.Context, token keys.VerifyRequest, allow func(*keys.VerifyResult) bool, req keys.VerifyRequest) (*keys.VerifyResult, *keys.VerifyResult, bool, error) {
	g.wait()
	return g.SQLite.CheckCall(ctx, token, allow, req)
}

func (g *gatedStore) CheckToken(ctx context.Context, req keys.VerifyRequest) (*keys.VerifyResult, bool, error) {
	g.wait()
	return g.SQLite.CheckToken(ctx, req)
}

func TestClosedServerAnswers503(t *testing.T) {
	ts := start(t)
	ts.srv.Close() // the batcher stops; the listener still accepts
	want(t, ts.call("GET", "/v1/keys", ts.tok["read"], nil), 503, api.CodeUnavailable)
}

func TestStoreFailureIs500WithoutDetail(t *testing.T) {
	ts := start(t)
	ts.st.Close()
	r := ts.call("GET", "/v1/keys", ts.tok["read"], nil)
	want(t, r, 500, api.CodeInternal)
	if strings.Contains(string(r.body), "sql") {
		t.Fatalf("a 500 tells its cause: %s", r.body)
	}
	if !strings.Contains(ts.log.String(), "level=ERROR") {
		t.Fatal("the cause of a 500 is not logged")
	}
}

// metricsText is the server's /metrics page.
func (ts *testServer) metricsText() string {
	ts.t.Helper()
	resp, err := http.Get(ts.url + "/metrics")
	if err != nil {
		ts.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// grep returns the lines of text that hold s.
func grep(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// serveOn runs srv on a loopback port; stop shuts it down and waits.
func serveOn(t *testing.T, srv *Server) (url string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, ln, TLS{}) }()
	var once sync.Once
	return "http://" + ln.Addr().String(), func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
	}
}

func decodeBody(t *testing.T, resp *http.Response, v any) {
	t.Helper()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func readAll(resp *http.Response) string {
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
