package commands

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"

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
	// warnedConfig: the config file's unknown keys were warned about.
	warnedConfig bool
	// graceful is set by a command that stops gracefully on its own when
	// interrupted (keyctl serve), which Main then waits for.
	graceful atomic.Bool
}

// readOnlyCommands only read: they never create a database, so that a
// mistyped --db is said, not made.
var readOnlyCommands = map[string]bool{
	"verify": true, "list": true, "show": true, "usage": true, "audit": true, "head": true, "scan": true,
}

// newFactory returns the factory of a real process, on the clock now.
func newFactory(io *output.IOStreams, now func() time.Time) *Factory {
	f := &Factory{IO: io, Config: newConfig(), Now: now}
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

// openLocal opens the database the configuration names: a SQLite file, or
// a PostgreSQL database (postgres://…) that keyctl serve replicas share.
func (f *Factory) openLocal(ctx context.Context) (store.Store, error) {
	return f.openDB(ctx, f.Config.GetString("db"), false)
}

// openDB opens the database at addr, a path or a postgres:// URL, with the
// configuration's pepper, retention and clock; noMigrate leaves a
// PostgreSQL database's schema as it is. A keyctl server is --server's,
// not a database.
func (f *Factory) openDB(ctx context.Context, addr string, noMigrate bool) (store.Store, error) {
	return f.openDBWith(ctx, addr, noMigrate, f.mustExist)
}

// openExisting is openDB for a database that is only read, which it never
// makes (the source of keyctl copy).
func (f *Factory) openExisting(ctx context.Context, addr string, noMigrate bool) (store.Store, error) {
	return f.openDBWith(ctx, addr, noMigrate, true)
}

func (f *Factory) openDBWith(ctx context.Context, addr string, noMigrate, mustExist bool) (store.Store, error) {
	switch {
	case addr == "":
		return nil, fmt.Errorf("no database: set --db or KEYCTL_DB")
	case store.IsRemote(addr):
		return nil, withHint(fmt.Errorf("%s is a keyctl server, not a database", store.Redact(addr)),
			"--db takes a path or a postgres:// URL; use --server for a keyctl server")
	}
	opts, err := f.localOptions()
	if err != nil {
		return nil, err
	}
	opts.NoMigrate, opts.MustExist = noMigrate, mustExist
	st, err := store.Open(ctx, addr, opts)
	switch {
	case errors.Is(err, sqlite.ErrNoDatabase):
		return nil, withHint(err, "check --db (KEYCTL_DB); 'keyctl create' makes a database with its first key")
	case errors.Is(err, keys.ErrPepper):
		return nil, withHint(err, "the pepper comes from KEYCTL_PEPPER or pepper in the config file, and must be the one the database was made with")
	case errors.Is(err, sqlite.ErrForeign):
		return nil, withHint(err, "check --db (KEYCTL_DB): it names a file keyctl did not make")
	}
	return st, err
}

// localOptions are the options of the local database from the
// configuration: its pepper, its usage retention, the clock.
func (f *Factory) localOptions() (store.Options, error) {
	opts := store.Options{Pepper: []byte(f.Config.GetString("pepper")), Now: f.Now, MustExist: f.mustExist}
	if r := f.Config.GetString("usage_retention"); r != "" {
		d, err := parseDuration(r)
		if err != nil || d <= 0 {
			return opts, fmt.Errorf("usage_retention: %q is not a positive duration", r)
		}
		opts.UsageRetention = d
	}
	return opts, nil
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
	path, err := readConfigFile(f.Config)
	if err != nil || path == "" || f.warnedConfig {
		return err
	}
	f.warnedConfig = true
	for _, key := range unknownConfigKeys(path) {
		f.IO.Notef("keyctl: warning: unknown key %q in the config file %s (known keys: %s)",
			key, path, strings.Join(configKeys, ", "))
	}
	return nil
}

// configKeys are the settings a config file may hold.
var configKeys = []string{"db", "env", "output", "pepper", "prefix", "scan_max_size", "server", "token_file", "usage_retention"}

// unknownConfigKeys lists the top-level keys of the YAML file at path that
// are not settings: a misspelt key would otherwise be ignored in silence.
func unknownConfigKeys(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var m map[string]any
	if yaml.Unmarshal(b, &m) != nil {
		return nil
	}
	var unknown []string
	for k := range m {
		if !slices.Contains(configKeys, strings.ToLower(k)) {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	return unknown
}

// readConfigFile reads --config / KEYCTL_CONFIG, or the default file if it
// exists, and returns the path it read (none: ""). A config file that was
// asked for by name must exist.
func readConfigFile(v *viper.Viper) (string, error) {
	path := v.GetString("config")
	explicit := path != ""
	if !explicit {
		dir, err := os.UserConfigDir()
		if err != nil {
			return "", nil
		}
		path = filepath.Join(dir, "keyctl", "config.yaml")
	}
	v.SetConfigFile(path)
	v.SetConfigType("yaml")
	err := v.ReadInConfig()
	var pe *fs.PathError
	if errors.As(err, &pe) && !explicit {
		return "", nil
	}
	if err != nil {
		return "", withHint(fmt.Errorf("reading config file %s: %w", path, err),
			"the config file is YAML with keys "+strings.Join(configKeys, ", "))
	}
	return path, nil
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
	return f.deps().withStore(ctx, fn)
}

// outputFormat is the -o format in effect, checked against allowed.
func (f *Factory) outputFormat(allowed ...output.Format) (output.Format, error) {
	format, err := output.ParseFormat(f.Config.GetString("output"), allowed...)
	if err != nil {
		return "", flagErr("output", err)
	}
	return format, nil
}
