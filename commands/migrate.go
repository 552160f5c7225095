package commands

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/sqlite"
)

// migration is what keyctl migrate did, for -o json.
type migration struct {
	Database string `json:"database"`
	From     int    `json:"from"`
	To       int    `json:"to"`
}

func newMigrateCmd(f *Factory) *cobra.Command {
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
			format, err := f.outputFormat()
			if err != nil {
				return err
			}
			m, err := runMigrate(cmd.Context(), f)
			if err != nil {
				return err
			}
			switch {
			case !store.IsPostgres(f.Config.GetString("db")):
				f.IO.Notef("keyctl: %s is at schema version %d (a SQLite database is migrated whenever keyctl opens it)", m.Database, m.To)
			case m.From == m.To:
				f.IO.Notef("keyctl: %s is at schema version %d: nothing to do", m.Database, m.To)
			default:
				f.IO.Notef("keyctl: migrated %s from schema version %d to %d", m.Database, m.From, m.To)
			}
			return printData(f, format, m, func() error { return nil })
		},
	}
}

func runMigrate(ctx context.Context, f *Factory) (migration, error) {
	opts, err := f.localOptions()
	if err != nil {
		return migration{}, err
	}
	addr := f.Config.GetString("db")
	m := migration{Database: store.Redact(addr)}
	if !store.IsPostgres(addr) {
		// SQLite migrates as it opens, under its write lock.
		s, err := f.openAddr(ctx, addr, opts)
		if err != nil {
			return m, err
		}
		m.From, m.To = sqlite.SchemaVersion, sqlite.SchemaVersion
		return m, s.Close()
	}
	opts.NoMigrate = true
	s, err := f.openAddr(ctx, addr, opts)
	if err != nil {
		return m, err
	}
	defer s.Close()
	mg, ok := s.(store.Migrator)
	if !ok {
		return m, fmt.Errorf("%s cannot be migrated", m.Database)
	}
	m.From, m.To, err = mg.Migrate(ctx)
	return m, err
}
