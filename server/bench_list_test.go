package server

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyctl/keyctl/api"
	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/keys"
	"github.com/keyctl/keyctl/store/sqlite"
)

// listKeysN is the size of the store the paging benchmarks read.
const listKeysN = 200_000

// listFixture is a store of 200,000 keys behind a server, with a read token,
// a verify token and a key to verify. It is built once per test binary.
type listFixture struct {
	dir          string
	st           *sqlite.SQLite
	srv          *Server
	url          string
	stop         func()
	read, verify string
	body         []byte
	cursors      []string // the cursor of every page of 100, from the newest
	buildErr     error
	buildOnce    sync.Once
}

var bigList listFixture

// TestMain removes the benchmarks' store, if one was built.
func TestMain(m *testing.M) {
	code := m.Run()
	if bigList.stop != nil {
		bigList.stop()
	}
	os.Exit(code)
}

// build fills a store with listKeysN keys in one transaction, created over a
// year, and starts a server on it.
func (f *listFixture) build(b *testing.B) {
	f.buildOnce.Do(func() { f.buildErr = f.fill() })
	if f.buildErr != nil {
		b.Fatal(f.buildErr)
	}
}

func (f *listFixture) fill() error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "keyctl-list-bench-")
	if err != nil {
		return err
	}
	f.dir = dir
	path := filepath.Join(dir, "keyctl.db")
	st, err := store.OpenSQLite(ctx, path, store.Options{})
	if err != nil {
		return err
	}
	st.Close()
	db, err := sql.Open("sqlite", path+"?_pragma=cache_size(-1048576)&_pragma=temp_store(MEMORY)")
	if err != nil {
		return err
	}
	defer db.Close()
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	ins, err := tx.Prepare(`INSERT INTO keys (id, name, prefix, env, start, status, scopes, created_at, updated_at)
		VALUES (?, ?, 'sk', ?, ?, ?, '["sdk"]', ?, ?)`)
	if err != nil {
		return err
	}
	start := time.Now().Add(-365 * 24 * time.Hour).Unix()
	for i := range listKeysN {
		env, status := "production", "active"
		if i%3 == 0 {
			env = "staging"
		}
		if i%10 == 0 {
			status = "revoked"
		}
		at := start + int64(i)*365*24*3600/listKeysN
		if _, err := ins.Exec(fmt.Sprintf("key_%016d", i), fmt.Sprintf("k%07d", i), env, fmt.Sprintf("sk_live_%08d", i), status, at, at); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	if f.st, err = store.OpenSQLite(ctx, path, store.Options{}); err != nil {
		return err
	}
	mint := func(scope string) (string, error) {
		_, tok, err := f.st.Create(ctx, keys.CreateParams{Scopes: []string{scope}, Env: keys.Production, Prefix: "sk"})
		return tok, err
	}
	if f.read, err = mint(api.ScopeRead); err != nil {
		return err
	}
	if f.verify, err = mint(api.ScopeVerify); err != nil {
		return err
	}
	key, err := mint("sdk")
	if err != nil {
		return err
	}
	f.body, _ = json.Marshal(api.VerifyRequest{Key: key, Scopes: []string{"sdk"}, Env: "production"})
	f.srv = New(f.st, Options{AccessLog: io.Discard})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := NewHTTPServer(f.srv.Handler())
	go hs.Serve(ln)
	f.url = "http://" + ln.Addr().String()
	f.stop = func() {
		hs.Shutdown(ctx)
		f.srv.Close()
		f.st.Close()
		os.RemoveAll(f.dir)
	}
	// Every page's cursor, for reading pages at every depth.
	cursor := ""
	for {
		f.cursors = append(f.cursors, cursor)
		page, err := getPage(http.DefaultClient, f.url, f.read, cursor, 100)
		if err != nil {
			return err
		}
		if page.NextCursor == "" {
			return nil
		}
		cursor = page.NextCursor
	}
}

func getPage(c *http.Client, url, token, cursor string, limit int) (*api.KeyList, error) {
	q := fmt.Sprintf("/v1/keys?limit=%d", limit)
	if cursor != "" {
		q += "&cursor=" + cursor
	}
	req, _ := http.NewRequest("GET", url+q, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("GET %s: %d %s", q, resp.StatusCode, b)
	}
	var page api.KeyList
	return &page, json.NewDecoder(resp.Body).Decode(&page)
}

// BenchmarkListPage measures GET /v1/keys?limit=100 on loopback, at 200,000
// keys, each request a page at a random depth (the newest, the oldest, and
// everything between). It reports the median and p99:
//
//	go test -run '^$' -bench BenchmarkListPage -benchtime 2000x ./server
func BenchmarkListPage(b *testing.B) {
	bigList.build(b)
	f := &bigList
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		cursor := f.cursors[rand.IntN(len(f.cursors))]
		t0 := time.Now()
		page, err := getPage(c, f.url, f.read, cursor, 100)
		lat = append(lat, time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
		if len(page.Keys) == 0 {
			b.Fatal("an empty page")
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(ms(lat[len(lat)/2]), "median-ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
	b.ReportMetric(float64(len(f.cursors)), "pages")
}

// BenchmarkVerifyWhileListing measures POST /v1/verify over 4 keep-alive
// connections while a read token pages through all 200,000 keys (pages of
// 1,000, the largest) in a loop, as fast as the server answers it; and, in
// alternating rounds of the same run, without the listing, so that both see
// the same moments of a noisy machine. It reports verify's median and p99
// with and without, and the pages the reader read:
//
//	go test -run '^$' -bench BenchmarkVerifyWhileListing -benchtime 20000x ./server
func BenchmarkVerifyWhileListing(b *testing.B) {
	bigList.build(b)
	f := &bigList
	var listing, stop atomic.Bool
	var pages atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		// The reader only finds the next cursor in each page: a client
		// elsewhere would decode the page on its own machine, not on the
		// server's cores.
		c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
		cursor := ""
		for !stop.Load() {
			if !listing.Load() {
				time.Sleep(time.Millisecond)
				continue
			}
			q := "/v1/keys?limit=1000"
			if cursor != "" {
				q += "&cursor=" + cursor
			}
			req, _ := http.NewRequest("GET", f.url+q, nil)
			req.Header.Set("Authorization", "Bearer "+f.read)
			resp, err := c.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("GET %s: %d", q, resp.StatusCode)
				return
			}
			pages.Add(1)
			cursor = ""
			if i := bytes.LastIndex(body, []byte(`"next_cursor":"`)); i >= 0 {
				rest := body[i+len(`"next_cursor":"`):]
				cursor = string(rest[:bytes.IndexByte(rest, '"')])
			}
		}
	})
	drive(b, f.url, f.verify, f.body, 200) // warm up
	const rounds = 10
	var with, without []time.Duration
	b.ResetTimer()
	for r := range rounds {
		n := b.N / rounds
		on := r%2 == 0
		listing.Store(on)
		if on {
			time.Sleep(50 * time.Millisecond) // the reader is paging before verify starts
		}
		_, lat := drive(b, f.url, f.verify, f.body, n)
		if on {
			with = append(with, lat...)
		} else {
			without = append(without, lat...)
		}
	}
	b.StopTimer()
	stop.Store(true)
	wg.Wait()
	if len(with) == 0 || len(without) == 0 {
		return // the testing package's one-iteration probe
	}
	for _, l := range [][]time.Duration{with, without} {
		slices.Sort(l)
	}
	b.ReportMetric(ms(with[len(with)/2]), "listing-median-ms")
	b.ReportMetric(ms(with[len(with)*99/100]), "listing-p99-ms")
	b.ReportMetric(ms(without[len(without)/2]), "alone-median-ms")
	b.ReportMetric(ms(without[len(without)*99/100]), "alone-p99-ms")
	b.ReportMetric(float64(pages.Load()), "pages-read")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
