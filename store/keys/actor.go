package keys

import (
	"context"
	"os"
	"os/user"
)

// Actor is who makes a change, for the audit trail: the OS user locally, or
// the admin key (and the client's address) through the HTTP service. A
// store reads the actor's authority from it inside each change's
// transaction (Authorize).
type Actor struct {
	Kind    string `json:"kind"` // ActorUser, ActorKey, ActorHolder or ActorAnonymous
	ID      string `json:"id,omitempty"`
	Name    string `json:"name"`
	Address string `json:"address,omitempty"`
}

// Kinds of actor.
const (
	// ActorUser is the OS user on the database file: full authority.
	ActorUser = "user"
	// ActorKey is a key acting through the service, by its id.
	ActorKey = "key"
	// ActorHolder is whoever presented a secret to have it revoked.
	ActorHolder = "holder"
	// ActorAnonymous is a request that has not authenticated: no
	// authority at all. The service gives every request this actor until
	// it authenticates, so that a handler that forgot to is refused.
	ActorAnonymous = "anonymous"
)

type actorKey struct{}

// WithActor returns a context that carries who is acting.
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorFrom returns the actor ctx carries, or the OS user running keyctl.
func ActorFrom(ctx context.Context) Actor {
	if a, ok := ctx.Value(actorKey{}).(Actor); ok {
		return a
	}
	return Actor{Kind: ActorUser, Name: OSUser()}
}

// OSUser names the user running this process.
func OSUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "unknown"
}
