package commands

import (
	"errors"
	"fmt"
	"testing"

	"github.com/keyctl/keyctl/store/keys"
	"github.com/keyctl/keyctl/store/remote"
)

// A change the store forbids exits 5; a server's refusal of the token exits
// 1 as documented, even when it is a 403 that also says forbidden.
func TestExitCodeOfRefusals(t *testing.T) {
	for _, c := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("key %q: %w", "own", keys.ErrForbidden), exitForbidden},
		{remote.ErrUnauthorized, exitFailure},
		{errors.Join(remote.ErrUnauthorized, keys.ErrForbidden), exitFailure},
	} {
		if got := exitCode(c.err); got != c.want {
			t.Errorf("exitCode(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}
