package commands

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/keyctl/keyctl/output"
	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/keys"
	"github.com/keyctl/keyctl/store/sqlite"
)

// Factory holds what commands share: streams, configuration, the clock and
// the way to the store. Tests build one with their own parts.
type Factory struct {
	IO     *output.IOStreams
	Config *viper.Viper
	Now    func() time.Time
	// Store opens the configured store; commands close it when done.
	Store func(ctx context.Context) (store.Store, error)

	tokenFile string // --token-file, when given
	dbFlag    bool   // --db was given (and --server was not): the local database it is
	mustExist bool   // the command only reads: it never creates the local database
	// tokenOptional: remote mode may go without a token (revoking a
	// secret: holding it is the authority).
	tokenOptional bool
}

// readOnlyCommands only read: they never create a database, so that a
// mistyped --db is said, not made.
var readOnlyCommands = map[string]bool{
	"verify": true, "list": true, "show": true, "usage": true, "audit": true, "head": true, "scan": true,
}

// newFactory returns the factory of a real process.
func newFactory(io *output.IOStreams) *Factory {
	f := &Factory{IO: io, Config: newConfig(), Now: time.Now}
	f.Store = func(ctx context.Context) (store.Store, error) {
		// --db on the command line beats KEYCTL_SERVER, as any flag beats
		// a variable; --server beats KEYCTL_DB.
		if server := f.Config.GetString("server"); server != "" && !f.dbFlag {
			return f.openRemote(ctx, server)
		}
		return f.openLocal(ctx)
	}
	return f
}

// openLocal opens the SQLite database the configuration names.
func (f *Factory) openLocal(ctx context.Context) (*sqlite.SQLite, error) {
	path := f.Config.GetString("db")
	if path == "" {
		return nil, fmt.Errorf("no database: set --db or KEYCTL_DB")
	}
	var retention time.Duration
	if r := f.Config.GetString("usage_retention"); r != "" {
		d, err := parseDuration(r)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("usage_retention: %q is not a positive duration", r)
		}
		retention = d
	}
	st, err := store.OpenSQLite(ctx, path, store.Options{
		Pepper: []byte(f.Config.GetString("pepper")), Now: f.Now, UsageRetention: retention, MustExist: f.mustExist,
	})
	switch {
	case errors.Is(err, sqlite.ErrNoDatabase):
		return nil, withHint(err, "check --db (KEYCTL_DB); 'keyctl create' makes a database with its first key")
	case errors.Is(err, sqlite.ErrPepper):
		return nil, withHint(err, "the pepper comes from KEYCTL_PEPPER or pepper in the config file, and must be the one the database was made with")
	case errors.Is(err, sqlite.ErrForeign):
		return nil, withHint(err, "check --db (KEYCTL_DB): it names a file keyctl did not make")
	}
	return st, err
}

// newConfig returns keyctl's configuration: flags (bound when a command
// runs), then KEYCTL_* variables, then the config file, then these defaults.
func newConfig() *viper.Viper {
	v := viper.New()
	v.SetEnvPrefix("keyctl")
	v.AutomaticEnv()
	v.SetDefault("db", defaultDBPath())
	v.SetDefault("output", "table")
	v.SetDefault("prefix", "sk")
	v.SetDefault("env", string(keys.Development))
	return v
}

// loadConfig binds the running command's global flags and reads the config
// file. Flags are bound here, for the command that runs, and not at start-up.
func (f *Factory) loadConfig(cmd *cobra.Command) error {
	f.mustExist = readOnlyCommands[cmd.Name()]
	for _, name := range []string{"db", "config", "output", "server"} {
		if fl := cmd.Flags().Lookup(name); fl != nil {
			if err := f.Config.BindPFlag(name, fl); err != nil {
				return err
			}
		}
	}
	if fl := cmd.Flags().Lookup("allow-http"); fl != nil {
		if err := f.Config.BindPFlag("allow_http", fl); err != nil {
			return err
		}
	}
	if fl := cmd.Flags().Lookup("token-file"); fl != nil && fl.Changed {
		f.tokenFile = fl.Value.String()
	}
	if fl := cmd.Flags().Lookup("db"); fl != nil && fl.Changed {
		if s := cmd.Flags().Lookup("server"); s == nil || !s.Changed {
			f.dbFlag = true
		}
	}
	return readConfigFile(f.Config)
}

// readConfigFile reads --config / KEYCTL_CONFIG, or the default file if it
// exists. A config file that was asked for by name must exist.
func readConfigFile(v *viper.Viper) error {
	path := v.GetString("config")
	explicit := path != ""
	if !explicit {
		dir, err := os.UserConfigDir()
		if err != nil {
			return nil
		}
		path = filepath.Join(dir, "keyctl", "config.yaml")
	}
	v.SetConfigFile(path)
	v.SetConfigType("yaml")
	err := v.ReadInConfig()
	var pe *fs.PathError
	if errors.As(err, &pe) && !explicit {
		return nil
	}
	if err != nil {
		return withHint(fmt.Errorf("reading config file %s: %w", path, err),
			"the config file is YAML with keys db, output, prefix, env, pepper, server and token_file")
	}
	return nil
}

// defaultDBPath is $XDG_DATA_HOME/keyctl/keyctl.db, or
// ~/.local/share/keyctl/keyctl.db.
func defaultDBPath() string {
	dir := os.Getenv("XDG_DATA_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		dir = filepath.Join(home, ".local", "share")
	}
	return filepath.Join(dir, "keyctl", "keyctl.db")
}

// withStore opens the store, runs fn with it, and closes it.
func (f *Factory) withStore(ctx context.Context, fn func(store.Store) error) error {
	s, err := f.Store(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	return fn(s)
}

// outputFormat is the -o format in effect, checked against allowed.
func (f *Factory) outputFormat(allowed ...output.Format) (output.Format, error) {
	format, err := output.ParseFormat(f.Config.GetString("output"), allowed...)
	if err != nil {
		return "", flagErr("output", err)
	}
	return format, nil
}
