package remote_test

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyctl/keyctl/api"
	"github.com/keyctl/keyctl/server"
	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/keys"
	"github.com/keyctl/keyctl/store/remote"
	"github.com/keyctl/keyctl/store/sqlite"
	"github.com/keyctl/keyctl/store/storetest"
)

// flushing is a client whose server records uses in the background: Flush
// writes them out, as the suite expects of such a handle. As gives a client
// of the same server that authenticates with another key.
type flushing struct {
	*remote.Client
	srv *server.Server
	url string
	t   *testing.T
}

func (f flushing) Flush(ctx context.Context) error { return f.srv.Flush(ctx) }

func (f flushing) As(secret string) (store.Store, error) {
	c, err := remote.New(f.url, secret, nil)
	if err != nil {
		return nil, err
	}
	f.t.Cleanup(func() { c.Close() })
	return flushing{Client: c, srv: f.srv, url: f.url, t: f.t}, nil
}

// replica runs a server on a loopback port over its own handle onto the
// database at path, and returns a client of it with token.
func replica(t *testing.T, path string, now func() time.Time, token func(*sqlite.SQLite) string) store.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), path, sqlite.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(st, server.Options{Now: now})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, ln, server.TLS{}) }()
	url := "http://" + ln.Addr().String()
	c, err := remote.New(url, token(st), nil)
	if err != nil {
		t.Fatal(err)
	}
	remote.SetPageSize(c, 2) // List fetches several pages
	t.Cleanup(func() {
		c.Close()
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	})
	return flushing{Client: c, srv: srv, url: url, t: t}
}

// owner makes the owner key the clients authenticate with, once.
func owner(t *testing.T) func(*sqlite.SQLite) string {
	var tok string
	return func(st *sqlite.SQLite) string {
		if tok == "" {
			var err error
			_, tok, err = st.Create(t.Context(), keys.CreateParams{Name: "ops", Scopes: []string{api.ScopeOwner}, Env: keys.Development, Prefix: "sk"})
			if err != nil {
				t.Fatal(err)
			}
		}
		return tok
	}
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) (store.Store, store.Store) {
		return replica(t, filepath.Join(t.TempDir(), "keyctl.db"), now, owner(t)), nil
	})
}

// TestStoreTwoReplicas runs the suite against two servers, each with its
// own handle onto one database file, through a client of each.
func TestStoreTwoReplicas(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) (store.Store, store.Store) {
		path, tok := filepath.Join(t.TempDir(), "keyctl.db"), owner(t)
		return replica(t, path, now, tok), replica(t, path, now, tok)
	})
}
