package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/keyctl/keyctl/api"
	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/keys"
)

// benchConns is the number of concurrent keep-alive connections.
const benchConns = 4

// BenchmarkVerifyThroughput measures POST /v1/verify on loopback with
// keep-alive over 4 concurrent connections, and in the same run a bare
// net/http handler that decodes the same JSON body and answers a small JSON
// object. Each b.N is one request to each. It reports requests per second
// of both, their ratio, and the p99 latency of both:
//
//	go test -run '^$' -bench VerifyThroughput -benchtime 20000x ./server
func BenchmarkVerifyThroughput(b *testing.B) {
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, filepath.Join(b.TempDir(), "keyctl.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	mint := func(scope string) string {
		_, tok, err := st.Create(ctx, keys.CreateParams{Scopes: []string{scope}, Env: keys.Production, Prefix: "sk"})
		if err != nil {
			b.Fatal(err)
		}
		return tok
	}
	token, key := mint(api.ScopeVerify), mint("sdk")
	body, _ := json.Marshal(api.VerifyRequest{Key: key, Scopes: []string{"sdk"}, Env: "production", IP: "192.0.2.1"})

	srv := New(st, Options{AccessLog: io.Discard})
	keyctlURL, stopKeyctl := listen(b, srv.Handler())
	bareURL, stopBare := listen(b, http.HandlerFunc(bare))

	// Warm up both: connections, prepared statements, caches.
	drive(b, bareURL, token, body, 200)
	drive(b, keyctlURL, token, body, 200)

	// The two alternate in rounds, so that a noisy stretch of the machine
	// weighs on both alike.
	b.ResetTimer()
	var bare, keyctl run
	for r := range benchRounds {
		n := b.N / benchRounds
		if r < b.N%benchRounds {
			n++
		}
		bare.add(drive(b, bareURL, token, body, n))
		keyctl.add(drive(b, keyctlURL, token, body, n))
	}
	b.StopTimer()
	bareRate, bareP99 := bare.rate()
	keyctlRate, keyctlP99 := keyctl.rate()

	stopKeyctl()
	srv.Close()
	stopBare()
	b.ReportMetric(bareRate, "bare-req/s")
	b.ReportMetric(keyctlRate, "keyctl-req/s")
	b.ReportMetric(keyctlRate/bareRate, "ratio")
	b.ReportMetric(float64(bareP99.Microseconds())/1000, "bare-p99-ms")
	b.ReportMetric(float64(keyctlP99.Microseconds())/1000, "keyctl-p99-ms")
}

// bare decodes a verify request and answers a small JSON object: the floor
// that net/http and encoding/json set.
func bare(w http.ResponseWriter, r *http.Request) {
	var req api.VerifyRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"valid": true, "code": "VALID"})
}

func listen(b *testing.B, h http.Handler) (string, func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	hs := NewHTTPServer(h)
	go hs.Serve(ln)
	return "http://" + ln.Addr().String(), func() { hs.Shutdown(context.Background()) }
}

// drive sends n requests over benchConns keep-alive connections and returns
// the rate and the p99 latency.
const benchRounds = 5

// run adds up the rounds of one side of the benchmark.
type run struct {
	elapsed   time.Duration
	latencies []time.Duration
}

func (r *run) add(elapsed time.Duration, latencies []time.Duration) {
	r.elapsed += elapsed
	r.latencies = append(r.latencies, latencies...)
}

// rate is the requests per second over all rounds, and their p99 latency.
func (r *run) rate() (float64, time.Duration) {
	if len(r.latencies) == 0 {
		return 0, 0
	}
	slices.Sort(r.latencies)
	return float64(len(r.latencies)) / r.elapsed.Seconds(), r.latencies[len(r.latencies)*99/100]
}

// drive sends n requests over benchConns keep-alive connections and returns
// how long they took and each one's latency.
func drive(b *testing.B, url, token string, body []byte, n int) (time.Duration, []time.Duration) {
	latencies := make([][]time.Duration, benchConns)
	var wg sync.WaitGroup
	start := time.Now()
	for c := range benchConns {
		count := n / benchConns
		if c < n%benchConns {
			count++
		}
		wg.Go(func() {
			_, latencies[c] = driveOne(b, url, token, body, count)
		})
	}
	wg.Wait()
	return time.Since(start), slices.Concat(latencies...)
}

// driveOne sends count requests, one after the other, over one keep-alive
// connection, and returns how long they took and each one's latency.
func driveOne(b *testing.B, url, token string, body []byte, count int) (time.Duration, []time.Duration) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}}
	defer client.CloseIdleConnections()
	lat := make([]time.Duration, 0, count)
	start := time.Now()
	for range count {
		req, _ := http.NewRequest("POST", url+"/v1/verify", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Error(err)
			break
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		lat = append(lat, time.Since(t0))
		if resp.StatusCode != http.StatusOK {
			b.Errorf("status %d", resp.StatusCode)
			break
		}
	}
	return time.Since(start), lat
}
