package commands

import (
	"context"
	"time"

	"github.com/keyctl/keyctl/output"
	"github.com/keyctl/keyctl/store"
)

// Deps are what a command's run function takes from the process: its
// streams, the way to the store and the clock. Each command's options embed
// them; a test fills them with buffers, a SQLite store in a temp dir and a
// fixed clock, and calls the run function without cobra.
type Deps struct {
	IO *output.IOStreams
	// Store opens the configured store; withStore closes it when done.
	Store func(ctx context.Context) (store.Store, error)
	Now   func() time.Time
}

// deps are the factory's parts a run function uses.
func (f *Factory) deps() Deps { return Deps{IO: f.IO, Store: f.Store, Now: f.Now} }

// withStore opens the store, runs fn with it, and closes it.
func (d Deps) withStore(ctx context.Context, fn func(store.Store) error) error {
	s, err := d.Store(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	return fn(s)
}
