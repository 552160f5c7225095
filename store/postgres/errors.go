package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keyctl/keyctl/store/keys"
)

// classify maps what PostgreSQL answered to the store's errors: a name
// taken by another replica's key is a conflict; a database that cannot be
// reached, is shutting down or refuses connections is unavailable, which
// the server answers with 503 and keyctl verify with exit 1.
func classify(err error) error {
	if err == nil || errors.Is(err, keys.ErrUnavailable) {
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "23505":
			return fmt.Errorf("%w: %s", keys.ErrConflict, pe.Message)
		case unavailableCode(pe.Code):
			return fmt.Errorf("%w: %s", keys.ErrUnavailable, pe.Message)
		}
		return err
	}
	if unreachable(err) {
		return fmt.Errorf("%w: %v", keys.ErrUnavailable, err)
	}
	return err
}

// unavailableCode reports SQLSTATEs that say the server, not the request,
// is the problem: connection exceptions (08), too many connections, a
// server shutting down or starting up, a read-only standby.
func unavailableCode(code string) bool {
	switch {
	case strings.HasPrefix(code, "08"), strings.HasPrefix(code, "57P"), code == "53300", code == "25006":
		return true
	}
	return false
}

// unreachable reports errors of the connection itself: a failed connect, a
// dropped or timed-out socket, a pool that could not hand out a
// connection in time.
func unreachable(err error) bool {
	var ce *pgconn.ConnectError
	var ne net.Error
	switch {
	case errors.As(err, &ce), errors.As(err, &ne), pgconn.Timeout(err),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, context.DeadlineExceeded):
		return true
	}
	return strings.Contains(err.Error(), "conn closed") || strings.Contains(err.Error(), "closed pool")
}

// retryable reports a transaction that lost to a concurrent one and may
// simply run again: a deadlock or a serialization failure.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}
