package keys

import "time"

// Deliver hands a newly issued secret, with its key as it is about to be
// committed, to whoever asked for it: it writes the secret to a file or to
// stdout. An error means the secret did not arrive, and the store must not
// leave the key issued with it.
type Deliver func(k *Key, secret string) error

// SecretInfo is one live secret of a key, never the secret itself: its
// display start, when it was issued, and when it stops working. The current
// secret has no end; older ones live on in a rotation's grace.
type SecretInfo struct {
	Start     string     `json:"start"`
	CreatedAt time.Time  `json:"created_at"`
	EndsAt    *time.Time `json:"ends_at"`
	Current   bool       `json:"current"`
}
