package server

import (
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/keyctl/keyctl/api"
	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/keys"
	"github.com/keyctl/keyctl/store/postgres/pgtest"
)

// These benchmarks need a PostgreSQL server (KEYCTL_TEST_POSTGRES; they are
// skipped without one). A replica is a Server over its own store, with its
// own pool, on its own loopback port: the same code as a keyctl serve
// process, in this process.

// BenchmarkPostgresPlainKey measures POST /v1/verify of a key without quota
// or rate limit through one server on PostgreSQL and, in alternating
// rounds of the same run, one on SQLite: the fast path of the one serves
// from memory, of the other from a read. It reports both rates, their
// ratio and both p99 latencies:
//
//	go test -run '^$' -bench PostgresPlainKey -benchtime 30000x ./server
func BenchmarkPostgresPlainKey(b *testing.B) {
	addr := pgtest.NewDatabase(b)
	ctx := context.Background()
	sq, err := store.Open(ctx, filepath.Join(b.TempDir(), "keyctl.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer sq.Close()
	pg, err := store.Open(ctx, addr, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer pg.Close()
	type side struct {
		url, token string
		body       []byte
		run        run
	}
	var sides []*side
	for _, st := range []store.Store{sq, pg} {
		token, key := mint(b, st, keys.CreateParams{Scopes: []string{api.ScopeVerify}}), mint(b, st, keys.CreateParams{Scopes: []string{"sdk"}})
		body, _ := json.Marshal(api.VerifyRequest{Key: key, Scopes: []string{"sdk"}, Env: "production", IP: "192.0.2.1"})
		srv := New(st, Options{AccessLog: io.Discard})
		url, stop := listen(b, srv.Handler())
		defer srv.Close()
		defer stop()
		sides = append(sides, &side{url: url, token: token, body: body})
		drive(b, url, token, body, 500) // warm up
	}
	b.ResetTimer()
	for r := range benchRounds {
		n := b.N / benchRounds
		if r < b.N%benchRounds {
			n++
		}
		for _, s := range sides {
			s.run.add(drive(b, s.url, s.token, s.body, n))
		}
	}
	b.StopTimer()
	sqRate, sqP99 := sides[0].run.rate()
	pgRate, pgP99 := sides[1].run.rate()
	b.ReportMetric(sqRate, "sqlite-req/s")
	b.ReportMetric(pgRate, "postgres-req/s")
	b.ReportMetric(pgRate/sqRate, "ratio")
	b.ReportMetric(float64(sqP99.Microseconds())/1000, "sqlite-p99-ms")
	b.ReportMetric(float64(pgP99.Microseconds())/1000, "postgres-p99-ms")
}

// BenchmarkPostgresQuotaKey measures POST /v1/verify of a key with a quota,
// whose every VALID spends in PostgreSQL on the key's locked row, through
// one replica and then through two, with 8 clients in both cases (split
// across the two). It reports each rate with its p50 and p99 latency:
//
//	go test -run '^$' -bench PostgresQuotaKey -benchtime 20000x ./server
func BenchmarkPostgresQuotaKey(b *testing.B) {
	addr := pgtest.NewDatabase(b)
	ctx := context.Background()
	var urls []string
	var admin store.Store
	for range 2 {
		st, err := store.Open(ctx, addr, store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		admin = st
		srv := New(st, Options{AccessLog: io.Discard})
		url, stop := listen(b, srv.Handler())
		defer srv.Close()
		defer stop()
		urls = append(urls, url)
	}
	token := mint(b, admin, keys.CreateParams{Scopes: []string{api.ScopeVerify}})
	key := mint(b, admin, keys.CreateParams{Scopes: []string{"sdk"}, Quota: new(int64(1 << 40))})
	body, _ := json.Marshal(api.VerifyRequest{Key: key, Scopes: []string{"sdk"}})
	driveAll(b, urls, token, body, 500) // warm up
	b.ResetTimer()
	var one, two run
	for r := range benchRounds {
		n := b.N / benchRounds
		if r < b.N%benchRounds {
			n++
		}
		one.add(driveAll(b, urls[:1], token, body, n))
		two.add(driveAll(b, urls, token, body, n))
	}
	b.StopTimer()
	for _, s := range []struct {
		name string
		run  *run
	}{{"1-replica", &one}, {"2-replicas", &two}} {
		rate, p99 := s.run.rate()
		b.ReportMetric(rate, s.name+"-req/s")
		b.ReportMetric(float64(s.run.p50().Microseconds())/1000, s.name+"-p50-ms")
		b.ReportMetric(float64(p99.Microseconds())/1000, s.name+"-p99-ms")
	}
}

func mint(b *testing.B, st store.Store, p keys.CreateParams) string {
	p.Env, p.Prefix = keys.Production, "sk"
	_, tok, err := st.Create(context.Background(), p)
	if err != nil {
		b.Fatal(err)
	}
	return tok
}

// quotaClients is how many clients the quota benchmark runs, split across
// the replicas.
const quotaClients = 8

// driveAll sends n requests from quotaClients clients, each keeping a
// connection to one of urls in turn, and returns how long they took and
// each one's latency.
func driveAll(b *testing.B, urls []string, token string, body []byte, n int) (time.Duration, []time.Duration) {
	latencies := make([][]time.Duration, quotaClients)
	var wg sync.WaitGroup
	start := time.Now()
	for c := range quotaClients {
		count := n / quotaClients
		if c < n%quotaClients {
			count++
		}
		wg.Go(func() {
			_, lat := driveOne(b, urls[c%len(urls)], token, body, count)
			latencies[c] = lat
		})
	}
	wg.Wait()
	return time.Since(start), slices.Concat(latencies...)
}

// p50 is the median latency over all rounds.
func (r *run) p50() time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	slices.Sort(r.latencies)
	return r.latencies[len(r.latencies)/2]
}
