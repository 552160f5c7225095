package sqlite

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/keyctl/keyctl/apikey"
	"github.com/keyctl/keyctl/store/keys"
)

// BenchmarkVerify measures one verification through the SQLite store —
// lookup, checks and the usage update, committed — in a store of 1,000 keys
// and in one of 1,000,000. The two are measured in alternating rounds of 100
// verifications, so that both see the same machine at the same moments: on
// a noisy machine, one measured after the other can differ by a quarter
// from noise alone. It reports each one's median and p99 and the ratio of
// the medians (ns/op is the mean over both). Run it with
//
//	go test -run '^$' -bench BenchmarkVerify -benchtime 20000x -count 3 ./store/sqlite
func BenchmarkVerify(b *testing.B) {
	const round = 100
	sizes := []struct {
		keys int
		name string
	}{{1_000, "1k"}, {1_000_000, "1M"}}
	fixtures := make([]*benchFixture, len(sizes))
	for i, size := range sizes {
		fixtures[i] = benchStore(b, size.keys)
	}
	ctx := context.Background()
	durations := make([][]time.Duration, len(sizes))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		j := i / round % len(sizes)
		f := fixtures[j]
		req := keys.VerifyRequest{Token: f.tokens[rand.IntN(len(f.tokens))], Scopes: []string{"sdk"}, Env: keys.Production, Cost: 1}
		start := time.Now()
		res, err := f.s.Verify(ctx, req)
		durations[j] = append(durations[j], time.Since(start))
		if err != nil || res.Code != keys.Valid {
			b.Fatalf("verify: %v, %+v", err, res)
		}
	}
	b.StopTimer()
	if b.N < len(sizes)*round {
		return // the testing package's one-iteration probe
	}
	medians := make([]float64, len(sizes))
	for j, d := range durations {
		slices.Sort(d)
		medians[j] = float64(d[len(d)/2].Nanoseconds()) / 1e3
		b.ReportMetric(medians[j], sizes[j].name+"-median-µs")
		b.ReportMetric(float64(d[len(d)*99/100].Nanoseconds())/1e3, sizes[j].name+"-p99-µs")
	}
	b.ReportMetric(medians[1]/medians[0], "1M/1k")
}

// benchFixture is a store of many keys and the secrets of some of them.
type benchFixture struct {
	s      *SQLite
	dir    string
	tokens []string
}

// benchFixtures are built once per test binary, since a million keys take
// seconds to insert and the testing package runs a benchmark more than once;
// TestMain removes them.
var benchFixtures = map[int]*benchFixture{}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, f := range benchFixtures {
		f.s.Close()
		os.RemoveAll(f.dir)
	}
	os.Exit(code)
}

// benchStore returns a store filled with n keys in one transaction, and the
// secrets of a sample of 10,000 of them spread over the whole table.
func benchStore(b *testing.B, n int) *benchFixture {
	b.Helper()
	if f, ok := benchFixtures[n]; ok {
		return f
	}
	dir, err := os.MkdirTemp("", "keyctl-bench-")
	if err != nil {
		b.Fatal(err)
	}
	s, err := Open(context.Background(), filepath.Join(dir, "bench.db"), Options{})
	if err != nil {
		os.RemoveAll(dir)
		b.Fatal(err)
	}
	f := &benchFixture{s: s, dir: dir}
	benchFixtures[n] = f
	// A cache that holds the whole insert, and a statement journal in
	// memory, for this connection only: the store is opened anew below.
	if _, err := s.db.Exec(`PRAGMA cache_size = -1048576; PRAGMA temp_store = MEMORY`); err != nil {
		b.Fatal(err)
	}
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
	// The secrets are inserted in digest order, as the table is stored:
	// inserted in random order, a million of them take a minute.
	type secret struct {
		digest []byte
		id     string
		start  string
	}
	secrets := make([]secret, 0, n)
	now := time.Now().Unix()
	every := max(1, n/10_000)
	for i := range n {
		tok, err := apikey.New("sk", apikey.TagLive)
		if err != nil {
			b.Fatal(err)
		}
		id := fmt.Sprintf("key_%016d", i)
		if _, err := insKey.Exec(id, fmt.Sprintf("k%07d", i), tok.Start(), now, now); err != nil {
			b.Fatal(err)
		}
		secrets = append(secrets, secret{apikey.Digest(tok.String(), nil), id, tok.Start()})
		if i%every == 0 {
			f.tokens = append(f.tokens, tok.String())
		}
	}
	slices.SortFunc(secrets, func(a, b secret) int { return bytes.Compare(a.digest, b.digest) })
	for _, sec := range secrets {
		if _, err := insSecret.Exec(sec.digest, sec.id, sec.start, now); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	if f.s, err = Open(context.Background(), filepath.Join(dir, "bench.db"), Options{}); err != nil {
		b.Fatal(err)
	}
	return f
}
