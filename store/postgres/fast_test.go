package postgres_test

import (
	"context"
	"errors"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keyctl/keyctl/store/keys"
	"github.com/keyctl/keyctl/store/postgres"
	"github.com/keyctl/keyctl/store/postgres/pgtest"
)

// within polls cond until it holds, failing t after a generous bound:
// notifications and reconnections take milliseconds, and the bound only
// keeps a broken build from hanging.
func within(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func check(t *testing.T, s *postgres.Postgres, req keys.VerifyRequest) keys.Code {
	t.Helper()
	res, exact, err := s.Check(context.Background(), req)
	if err != nil || exact {
		t.Fatalf("Check = %v, exact %v, %v", res, exact, err)
	}
	return res.Code
}

// TestCheckHearsEveryChange: a replica that verified a key from its cache
// hears of each change made through another replica.
func TestCheckHearsEveryChange(t *testing.T) {
	addr := pgtest.NewDatabase(t)
	server, admin := open(t, addr, nil), open(t, addr, nil)
	ctx := context.Background()
	past := time.Now().Add(-time.Hour)
	// A store refuses an expiry in its past: the expiry is set by a
	// replica whose clock is two hours behind.
	behind := open(t, addr, &clock{t: time.Now().Add(-2 * time.Hour)})
	for _, tc := range []struct {
		name   string
		change func(id string) error
		want   keys.Code
	}{
		{"revoke", func(id string) error { _, err := admin.Revoke(ctx, id, ""); return err }, keys.CodeRevoked},
		{"disable", func(id string) error { _, err := admin.SetDisabled(ctx, id, true); return err }, keys.CodeDisabled},
		{"rotate", func(id string) error { _, _, err := admin.Rotate(ctx, id, 0); return err }, keys.CodeRevoked},
		{"scope", func(id string) error {
			_, err := admin.Update(ctx, id, keys.UpdateParams{RemoveScopes: []string{"sdk"}})
			return err
		}, keys.Forbidden},
		{"expiry", func(id string) error {
			_, err := behind.Update(ctx, id, keys.UpdateParams{ExpiresAt: &past})
			return err
		}, keys.CodeExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, secret := create(t, admin, keys.CreateParams{Scopes: []string{"sdk"}})
			req := keys.VerifyRequest{Token: secret, Scopes: []string{"sdk"}, Cost: 1}
			check(t, server, req) // starts the fast path
			within(t, "the cache is live", server.CacheLive)
			if got := check(t, server, req); got != keys.Valid {
				t.Fatalf("before the change: %s", got)
			}
			if err := tc.change(k.ID); err != nil {
				t.Fatal(err)
			}
			within(t, "the change is heard", func() bool { return check(t, server, req) == tc.want })
		})
	}
}

// TestReconnectingDropsTheCache: what the cache holds is right only while
// every change is heard. A change made with its notification suppressed
// stays unseen while the listening connection lasts (so the cache is
// really served from), and is seen as soon as that connection drops.
func TestReconnectingDropsTheCache(t *testing.T) {
	addr := pgtest.NewDatabase(t)
	server, admin := open(t, addr, nil), open(t, addr, nil)
	ctx := context.Background()
	k, secret := create(t, admin, keys.CreateParams{})
	req := keys.VerifyRequest{Token: secret}
	check(t, server, req)
	within(t, "the cache is live", server.CacheLive)
	check(t, server, req) // cached now

	sql := connect(t, addr)
	mustExec(t, sql, `ALTER TABLE keys DISABLE TRIGGER keys_changed`)
	if _, err := admin.Revoke(ctx, k.ID, "silently"); err != nil {
		t.Fatal(err)
	}
	if got := check(t, server, req); got != keys.Valid {
		t.Fatalf("a change without notification: %s, want VALID from the cache", got)
	}
	mustExec(t, sql, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'keyctl listener' AND datname = current_database()`)
	within(t, "the dropped connection is noticed", func() bool { return !server.CacheLive() })
	if got := check(t, server, req); got != keys.CodeRevoked {
		t.Fatalf("while the listener is down: %s, want REVOKED from the database", got)
	}
	within(t, "the listener is back", server.CacheLive)
	for range 2 {
		if got := check(t, server, req); got != keys.CodeRevoked {
			t.Fatalf("after reconnecting: %s, want REVOKED", got)
		}
	}
}

// TestUnavailableFailsClosed: with the database out of reach, nothing is
// decided, not even from the cache; when it returns, so does the service,
// without a restart.
func TestUnavailableFailsClosed(t *testing.T) {
	addr := pgtest.NewDatabase(t)
	admin := open(t, addr, nil)
	_, secret := create(t, admin, keys.CreateParams{})
	_, quota := create(t, admin, keys.CreateParams{Quota: int64p(10)})
	px := newProxy(t, addr)
	server := open(t, px.addr, nil)
	req := keys.VerifyRequest{Token: secret, Cost: 1}
	check(t, server, req)
	within(t, "the cache is live", server.CacheLive)

	px.cut()
	within(t, "the cut is noticed", func() bool { return !server.CacheLive() })
	if res, _, err := server.Check(context.Background(), req); !errors.Is(err, keys.ErrUnavailable) {
		t.Fatalf("Check with the database unreachable = %v, %v; want ErrUnavailable", res, err)
	}
	if res, err := server.Verify(context.Background(), keys.VerifyRequest{Token: quota, Cost: 1}); !errors.Is(err, keys.ErrUnavailable) {
		t.Fatalf("Verify with the database unreachable = %v, %v; want ErrUnavailable", res, err)
	}

	px.restore()
	within(t, "the service returns", func() bool {
		res, _, err := server.Check(context.Background(), req)
		return err == nil && res.Code == keys.Valid
	})
	within(t, "the cache is live again", server.CacheLive)
	if res, err := server.Verify(context.Background(), keys.VerifyRequest{Token: quota, Cost: 1}); err != nil || res.Code != keys.Valid {
		t.Fatalf("Verify after the database returned = %v, %v", res, err)
	}
}

func connect(t *testing.T, addr string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func mustExec(t *testing.T, conn *pgx.Conn, sql string) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// proxy stands between a store and PostgreSQL, so that a test can take
// the database out of the store's reach and give it back.
type proxy struct {
	addr     string
	upstream string
	ln       net.Listener

	mu     sync.Mutex
	down   bool
	stall  bool // hold every byte back, connections open: a silent cut
	resume *sync.Cond
	conns  map[net.Conn]struct{}
}

func newProxy(t *testing.T, addr string) *proxy {
	u, err := url.Parse(addr)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	px := &proxy{upstream: u.Host, ln: ln, conns: map[net.Conn]struct{}{}}
	px.resume = sync.NewCond(&px.mu)
	u.Host = ln.Addr().String()
	px.addr = u.String()
	go px.serve()
	t.Cleanup(func() { ln.Close(); px.cut() })
	return px
}

func (px *proxy) serve() {
	for {
		c, err := px.ln.Accept()
		if err != nil {
			return
		}
		px.mu.Lock()
		down := px.down
		px.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", px.upstream)
		if err != nil {
			c.Close()
			continue
		}
		px.track(c, up)
		go func() { px.pipe(up, c); up.Close() }()
		go func() { px.pipe(c, up); c.Close() }()
	}
}

func (px *proxy) track(cs ...net.Conn) {
	px.mu.Lock()
	defer px.mu.Unlock()
	for _, c := range cs {
		px.conns[c] = struct{}{}
	}
}

// pipe copies from src to dst, holding each chunk back while the proxy is
// stalled.
func (px *proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		px.mu.Lock()
		for px.stall {
			px.resume.Wait()
		}
		px.mu.Unlock()
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// setStall holds back, or lets through again, every byte in both
// directions, without closing anything: neither end sees a cut.
func (px *proxy) setStall(on bool) {
	px.mu.Lock()
	px.stall = on
	px.mu.Unlock()
	px.resume.Broadcast()
}

// cut closes every connection through the proxy and refuses new ones.
func (px *proxy) cut() {
	px.mu.Lock()
	defer px.mu.Unlock()
	px.down = true
	for c := range px.conns {
		c.Close()
	}
	clear(px.conns)
}

func (px *proxy) restore() {
	px.mu.Lock()
	px.down = false
	px.mu.Unlock()
}

// TestSilentCutIsBounded: when the connection falls silent without either
// end seeing a cut, the cache is served no longer than its bound from the
// last heartbeat it heard: no check that starts that long after the
// silence answers from it.
func TestSilentCutIsBounded(t *testing.T) {
	addr := pgtest.NewDatabase(t)
	admin := open(t, addr, nil)
	_, secret := create(t, admin, keys.CreateParams{})
	px := newProxy(t, addr)
	const bound = 300 * time.Millisecond
	s, err := postgres.Open(context.Background(), px.addr, postgres.Options{StaleAfter: bound})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	defer px.setStall(false) // let Close through
	if s.PropagationBound() != bound {
		t.Fatalf("PropagationBound = %s, want %s", s.PropagationBound(), bound)
	}
	req := keys.VerifyRequest{Token: secret}
	check(t, s, req)
	within(t, "the cache is live", s.CacheLive)
	check(t, s, req)

	px.setStall(true)
	silent := time.Now()
	for time.Since(silent) < 3*bound {
		started := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		res, _, err := s.Check(ctx, req)
		cancel()
		if started.Sub(silent) > bound && err == nil {
			t.Fatalf("a check %s into the silence answered %s from the cache; bound %s", started.Sub(silent), res.Code, bound)
		}
	}
	if s.CacheLive() {
		t.Fatal("the cache is live after a silence past its bound")
	}
}

// TestCheckSeesItsOwnChangesAtOnce: a replica's own change is seen by its
// next check, without waiting for the notification (here suppressed).
func TestCheckSeesItsOwnChangesAtOnce(t *testing.T) {
	addr := pgtest.NewDatabase(t)
	s := open(t, addr, nil)
	ctx := context.Background()
	k, secret := create(t, s, keys.CreateParams{})
	req := keys.VerifyRequest{Token: secret}
	check(t, s, req)
	within(t, "the cache is live", s.CacheLive)
	check(t, s, req) // cached now
	sql := connect(t, addr)
	mustExec(t, sql, `ALTER TABLE keys DISABLE TRIGGER keys_changed`)
	for _, step := range []struct {
		change func() error
		want   keys.Code
	}{
		{func() error { _, err := s.SetDisabled(ctx, k.ID, true); return err }, keys.CodeDisabled},
		{func() error { _, err := s.SetDisabled(ctx, k.ID, false); return err }, keys.Valid},
		{func() error { _, err := s.Revoke(ctx, k.ID, ""); return err }, keys.CodeRevoked},
	} {
		if err := step.change(); err != nil {
			t.Fatal(err)
		}
		if got := check(t, s, req); got != step.want {
			t.Fatalf("the replica's own change: %s, want %s at once", got, step.want)
		}
	}
}
