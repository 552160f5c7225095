package commands

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/keyctl/keyctl/output"
	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/sqlite"
)

// MigrateOptions are the parsed flags of keyctl migrate.
type MigrateOptions struct {
	IO     *output.IOStreams
	Format output.Format
	// DB is the database's address; Open opens it, without migrating a
	// PostgreSQL database when noMigrate is set (SQLite migrates as it
	// opens).
	DB   string
	Open func(ctx context.Context, addr string, noMigrate bool) (store.Store, error)
}

// migration is what keyctl migrate did, for -o json.
type migration struct {
	Database string `json:"database"`
	From     int    `json:"from"`
	To       int    `json:"to"`
}

func newMigrateCmd(f *Factory, runF func(context.Context, *MigrateOptions) error) *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Bring the database's schema up to date",
		Long: `Apply the database's pending schema migrations (--db, KEYCTL_DB) and say
which version it is at.

Every command migrates the database it opens when it needs to, so this is
never required; it lets a deployment migrate a PostgreSQL database in a
step of its own, with a role that may change the schema, before starting
replicas that may not. Migrations run under an advisory lock: replicas
starting together apply them once. A database migrated by a newer keyctl
is refused (exit 1): upgrade keyctl.`,
		Example: `  KEYCTL_DB=postgres://keyctl@db.internal/keyctl keyctl migrate
  keyctl migrate --db ./keyctl.db -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := &MigrateOptions{IO: f.IO, DB: f.Config.GetString("db"), Open: f.openDB}
			var err error
			if opts.Format, err = f.outputFormat(); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runMigrate(cmd.Context(), opts)
		},
	}
}

func runMigrate(ctx context.Context, opts *MigrateOptions) error {
	m := migration{Database: store.Redact(opts.DB)}
	postgres := store.IsPostgres(opts.DB)
	s, err := opts.Open(ctx, opts.DB, postgres)
	if err != nil {
		return err
	}
	defer s.Close()
	if postgres {
		mg, ok := s.(store.Migrator)
		if !ok {
			return fmt.Errorf("%s cannot be migrated", m.Database)
		}
		if m.From, m.To, err = mg.Migrate(ctx); err != nil {
			return err
		}
	} else {
		m.From, m.To = sqlite.SchemaVersion, sqlite.SchemaVersion
	}
	switch {
	case !postgres:
		opts.IO.Notef("keyctl: %s is at schema version %d (a SQLite database is migrated whenever keyctl opens it)", m.Database, m.To)
	case m.From == m.To:
		opts.IO.Notef("keyctl: %s is at schema version %d: nothing to do", m.Database, m.To)
	default:
		opts.IO.Notef("keyctl: migrated %s from schema version %d to %d", m.Database, m.From, m.To)
	}
	return printData(opts.IO, opts.Format, m, func() error { return nil })
}
