package keys

import (
	"context"
	"os"
	"os/user"
)

// Actor is who makes a change, for the audit trail: the OS user locally, or
// the admin key (and the client's address) through the HTTP service.
type Actor struct {
	Kind    string `json:"kind"` // "user" or "key"
	ID      string `json:"id,omitempty"`
	Name    string `json:"name"`
	Address string `json:"address,omitempty"`
}

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
	return Actor{Kind: "user", Name: OSUser()}
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
