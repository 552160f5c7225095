package commands

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/keyctl/keyctl/output"
	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/keys"
)

// CopyOptions are the parsed flags of keyctl copy.
type CopyOptions struct {
	IO     *output.IOStreams
	Format output.Format
	// From is the database copied (--db), To the one copied into; Open
	// opens To, OpenSource From, which it never makes.
	From, To   string
	Open       func(ctx context.Context, addr string, noMigrate bool) (store.Store, error)
	OpenSource func(ctx context.Context, addr string, noMigrate bool) (store.Store, error)
}

// copied is what keyctl copy did, for -o json.
type copied struct {
	From string `json:"from"`
	To   string `json:"to"`
	store.Copied
	Audit *keys.AuditCheck `json:"audit"`
}

func newCopyCmd(f *Factory, runF func(context.Context, *CopyOptions) error) *cobra.Command {
	var to string
	cmd := &cobra.Command{
		Use:   "copy --to DEST",
		Short: "Copy the whole database to another, empty one",
		Long: `Copy the whole database (--db, KEYCTL_DB) to DEST, a PostgreSQL database
(postgres://...) or a SQLite file: every key with its secrets' digests and
all its state (status, expiry, quota left, rate limiter, usage), the usage
log, and the audit trail as it was written. Every secret keeps working on
the copy, under the same pepper, and 'keyctl audit verify' still holds
there; this command checks the latter before it reports success.

DEST must be empty: a database that holds keys or audit entries is refused
(exit 4) and left as it was. The copy is one transaction: a failure half-way
leaves DEST empty. It reads a database directly, never through a keyctl
server, and reads it from one snapshot: changes made meanwhile are copied
whole or not at all, so stop writing to it (or accept that later changes
stay behind) before switching over.

EXIT STATUS
  0   copied, and the copy's audit trail verifies
  1   failure (a database could not be opened, the copy's audit trail does not verify)
  2   usage error (no --to, DEST is the source, DEST is a keyctl server)
  4   DEST is not empty`,
		Example: `  keyctl copy --db ./keyctl.db --to postgres://keyctl@db.internal/keyctl
  KEYCTL_DB=postgres://keyctl@db.internal/keyctl keyctl copy --to ./keyctl-backup.db`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := &CopyOptions{IO: f.IO, From: f.Config.GetString("db"), To: to, Open: f.openDB, OpenSource: f.openExisting}
			switch {
			case opts.To == "":
				return withHint(usagef("copy needs --to DEST"), "DEST is a postgres:// URL or the path of a new SQLite file")
			case store.IsRemote(opts.To):
				return flagErr("to", fmt.Errorf("%s is a keyctl server: copy writes a database directly (a postgres:// URL or a path)", store.Redact(opts.To)))
			case sameDatabase(opts.From, opts.To):
				return flagErr("to", fmt.Errorf("%s is the database being copied", store.Redact(opts.To)))
			}
			var err error
			if opts.Format, err = f.outputFormat(); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runCopy(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "the empty database to copy into: a postgres:// URL or a path")
	return cmd
}

func runCopy(ctx context.Context, opts *CopyOptions) error {
	openSource := opts.OpenSource
	if openSource == nil {
		openSource = opts.Open
	}
	src, err := openSource(ctx, opts.From, false)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := opts.Open(ctx, opts.To, false)
	if err != nil {
		return err
	}
	defer dst.Close()
	res := copied{From: store.Redact(opts.From), To: store.Redact(opts.To)}
	if res.Copied, err = store.Copy(ctx, src, dst); err != nil {
		return withHintIfConflict(fmt.Errorf("copying to %s: %w", res.To, err),
			"copy into a new, empty database; nothing was written")
	}
	if res.Audit, err = dst.VerifyAudit(ctx); err != nil {
		return fmt.Errorf("checking the copy's audit trail: %w", err)
	}
	opts.IO.Notef("keyctl: copied %d keys (%d secrets), %d uses and %d audit entries from %s to %s",
		res.Keys, res.Secrets, res.Uses, res.Entries, res.From, res.To)
	if err := printData(opts.IO, opts.Format, res, func() error { return nil }); err != nil {
		return err
	}
	if !res.Audit.OK {
		return fmt.Errorf("the copy's audit trail does not verify at entry %d: %s", res.Audit.BadSeq, res.Audit.Problem)
	}
	opts.IO.Notef("keyctl: the audit trail on %s is intact: %d entries", res.To, res.Audit.Entries)
	return nil
}

// sameDatabase reports whether two addresses name the same database, as
// far as their text tells.
func sameDatabase(a, b string) bool {
	if store.IsPostgres(a) || store.IsPostgres(b) {
		return a == b
	}
	pa, errA := filepath.Abs(a)
	pb, errB := filepath.Abs(b)
	return errA == nil && errB == nil && pa == pb
}
