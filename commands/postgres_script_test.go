package commands

import (
	"context"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/keyctl/keyctl/store/postgres/pgtest"
)

// replicas is how many keyctl serve replicas each script runs against.
const replicas = 2

// TestScriptsPostgres runs the scripts a third time: each gets a database
// of its own on the PostgreSQL server KEYCTL_TEST_POSTGRES names, two
// `keyctl serve` replicas on it, and the commands in remote mode against
// the first (KEYCTL_SERVER_1) until a script moves to another with
// `replica N`. KEYCTL_DB names the database, for `sql`, and KEYCTL_DB_2
// a second, empty one.
func TestScriptsPostgres(t *testing.T) {
	server := pgtest.Server(t)
	p := scriptParams(t, true, true)
	local := p.Setup
	p.Setup = func(env *testscript.Env) error {
		if err := local(env); err != nil {
			return err
		}
		db, err := pgtest.Create(context.Background(), server)
		if err != nil {
			return err
		}
		// A second, empty database, for scripts that copy or migrate.
		db2, err := pgtest.Create(context.Background(), server)
		if err != nil {
			return err
		}
		env.Setenv("KEYCTL_DB", db)
		env.Setenv("KEYCTL_DB_2", db2)
		// Defers run last first: this one after the servers have stopped.
		env.Defer(func() {
			for _, d := range []string{db, db2} {
				if err := pgtest.Drop(context.Background(), server, d); err != nil {
					env.T().Fatal("dropping the script's database: " + err.Error())
				}
			}
		})
		token, err := ownerToken(db)
		if err != nil {
			return err
		}
		var urls []string
		for i := 1; i <= replicas; i++ {
			base, err := startServer(env, db)
			if err != nil {
				return err
			}
			urls = append(urls, base)
			env.Setenv("KEYCTL_SERVER_"+string(rune('0'+i)), base)
		}
		env.Setenv("KEYCTL_SERVER", urls[0])
		env.Setenv("KEYCTL_TOKEN", token)
		return nil
	}
	testscript.Run(t, p)
}
