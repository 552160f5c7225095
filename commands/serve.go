package commands

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyctl/keyctl/output"
	"github.com/keyctl/keyctl/server"
	"github.com/keyctl/keyctl/store"
)

// ServeOptions are the parsed flags of keyctl serve.
type ServeOptions struct {
	IO *output.IOStreams
	// OpenLocal opens the database to serve; DB is its address (a path or
	// a postgres:// URL).
	OpenLocal func(context.Context) (store.Store, error)
	DB        string
	Now       func() time.Time
	Addr      string
	TLSCert   string
	TLSKey    string
}

func newServeCmd(f *Factory, runF func(context.Context, *ServeOptions) error) *cobra.Command {
	opts := &ServeOptions{IO: f.IO, OpenLocal: f.openLocal, Now: f.Now}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the database over an HTTP API",
		Long: `Serve the database (--db, KEYCTL_DB: a SQLite file, or a PostgreSQL database
that several replicas share) over a JSON HTTP API under /v1:
applications verify keys with POST /v1/verify, and operators run every keyctl
command against it with --server (KEYCTL_SERVER). The API is described at
/v1/openapi.json; /healthz, /readyz (503 while the uses it verifies cannot
be recorded) and /metrics (Prometheus) need no token, nor does POST
/v1/credentials/revoke, where whoever holds a secret may kill it.

Callers authenticate with a key made here, on the server's database, that
holds a keyctl:* scope:

  keyctl:owner    everything, including keys with keyctl:* scopes
  keyctl:admin    create, update, rotate, disable, enable, revoke, list, show
                  keys that hold no keyctl:* scope (management keys are an
                  owner's alone)
  keyctl:read     list, show, usage
  keyctl:verify   POST /v1/verify only

  keyctl create --name ops --scope keyctl:admin --secret-file ops.key

serve refuses to start on a database it cannot write. One line per request
goes to stderr (method, route, status, duration, the caller's key id; never
a token or a secret). SIGINT or SIGTERM stops the server gracefully:
requests in flight finish, every verification queued is written, and keyctl
says how many uses it recorded; it exits 0, or 1 naming the uses it could
not record.`,
		Example: `  keyctl serve
  keyctl serve --addr 0.0.0.0:8443 --tls-cert server.crt --tls-key server.key`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (opts.TLSCert == "") != (opts.TLSKey == "") {
				return usagef("--tls-cert and --tls-key go together")
			}
			if _, _, err := net.SplitHostPort(opts.Addr); err != nil {
				return flagErr("addr", fmt.Errorf("%q is not host:port", opts.Addr))
			}
			opts.DB = f.Config.GetString("db")
			f.graceful.Store(true)
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runServe(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Addr, "addr", "127.0.0.1:8420", "address to listen on (host:port; port 0 picks a free one)")
	fl.StringVar(&opts.TLSCert, "tls-cert", "", "TLS certificate file (PEM); serves HTTPS with --tls-key")
	fl.StringVar(&opts.TLSKey, "tls-key", "", "TLS private key file (PEM)")
	return cmd
}

func runServe(ctx context.Context, opts *ServeOptions) error {
	st, err := opts.OpenLocal(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	// A service that cannot write would answer verifications whose use is
	// never recorded, and changes that all fail: it does not start.
	if wc, ok := st.(store.WriteChecker); ok {
		if err := wc.CheckWritable(ctx); err != nil {
			return withHint(fmt.Errorf("cannot serve: %w", err),
				"serve needs a database it can write; list, show, usage and audit can read a read-only one")
		}
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return err
	}
	scheme := "http"
	if opts.TLSCert != "" {
		scheme = "https"
	}
	if ap, err := netip.ParseAddrPort(ln.Addr().String()); err == nil && !ap.Addr().IsLoopback() && scheme == "http" {
		opts.IO.Notef("keyctl: warning: plain HTTP on %s: tokens cross the network in clear text; use --tls-cert and --tls-key", ln.Addr())
	}
	opts.IO.Notef("keyctl: serving %s on %s://%s", store.Redact(opts.DB), scheme, ln.Addr())
	srv := server.New(st, server.Options{AccessLog: opts.IO.ErrOut, Now: opts.Now})
	if err := srv.Run(ctx, ln, server.TLS{CertFile: opts.TLSCert, KeyFile: opts.TLSKey}); err != nil {
		return err
	}
	bg, ok := st.(store.Background)
	if !ok {
		opts.IO.Notef("keyctl: stopped; every request in flight was answered and recorded")
		return nil
	}
	recorded, lost, _ := bg.UsageRecorded()
	if lost > 0 {
		return fmt.Errorf("stopped; every request in flight was answered, but %d uses could not be recorded (%d were); see the errors above",
			lost, recorded)
	}
	opts.IO.Notef("keyctl: stopped; every request in flight was answered; %d uses recorded in the background, none lost", recorded)
	return nil
}
