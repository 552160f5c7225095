package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/keyctl/keyctl/apikey"
)

// BenchmarkVerify measures one verification through the SQLite store —
// lookup, checks and the usage update, committed — at 1,000 and 1,000,000
// keys. It reports the median besides Go's mean. Run it with
//
//	go test -run '^$' -bench BenchmarkVerify -benchtime 20000x ./store
func BenchmarkVerify(b *testing.B) {
	for _, n := range []int{1_000, 1_000_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			s, tokens := benchStore(b, n)
			ctx := context.Background()
			req := VerifyRequest{Scopes: []string{"sdk"}, Env: Production, Cost: 1}
			durations := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				req.Token = tokens[rand.IntN(len(tokens))]
				start := time.Now()
				res, err := s.Verify(ctx, req)
				durations = append(durations, time.Since(start))
				if err != nil || res.Code != Valid {
					b.Fatalf("verify: %v, %+v", err, res)
				}
			}
			b.StopTimer()
			slices.Sort(durations)
			b.ReportMetric(float64(durations[len(durations)/2].Nanoseconds())/1e3, "median-µs")
			b.ReportMetric(float64(durations[len(durations)*99/100].Nanoseconds())/1e3, "p99-µs")
		})
	}
}

// benchStore fills a store with n keys in one transaction and returns the
// secrets of a random sample of 10,000 of them, spread over the whole table.
func benchStore(b *testing.B, n int) (*SQLite, []string) {
	b.Helper()
	s, err := OpenSQLite(context.Background(), filepath.Join(b.TempDir(), "bench.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	tx, err := s.db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	insKey, err := tx.Prepare(`INSERT INTO keys (id, name, prefix, env, start, status, scopes, created_at, updated_at)
		VALUES (?, ?, 'sk', 'production', ?, 'active', '["proxy","sdk"]', ?, ?)`)
	if err != nil {
		b.Fatal(err)
	}
	insSecret, err := tx.Prepare(`INSERT INTO secrets (digest, key_id, start, created_at) VALUES (?, ?, ?, ?)`)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now().Unix()
	every := max(1, n/10_000)
	var sample []string
	for i := range n {
		tok, err := apikey.New("sk", apikey.TagLive)
		if err != nil {
			b.Fatal(err)
		}
		id := fmt.Sprintf("key_%016d", i)
		if _, err := insKey.Exec(id, fmt.Sprintf("k%d", i), tok.Start(), now, now); err != nil {
			b.Fatal(err)
		}
		secret := tok.String()
		if _, err := insSecret.Exec(apikey.Digest(secret, nil), id, tok.Start(), now); err != nil {
			b.Fatal(err)
		}
		if i%every == 0 {
			sample = append(sample, secret)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	return s, sample
}
