package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// changesChannel is where the schema's triggers announce changed keys.
const changesChannel = "keyctl_changes"

// listenerName is the listening connection's application_name, by which
// an operator tells it apart in pg_stat_activity.
const listenerName = "keyctl listener"

// newBeatChannel names the channel on which a replica hears its own
// heartbeat: its own, so that N replicas do not each hear N heartbeats.
func newBeatChannel() string {
	b := make([]byte, 8)
	rand.Read(b)
	return "keyctl_beat_" + hex.EncodeToString(b)
}

// listen keeps a dedicated connection (LISTEN cannot share a pooled one)
// listening to changes and to the replica's heartbeat, until ctx ends.
// When the connection drops it tells the cache at once, and connects again
// with a growing delay (at most a second), so a replica recovers by itself
// when PostgreSQL returns.
func (v *verifier) listen(ctx context.Context) {
	delay := 50 * time.Millisecond
	for ctx.Err() == nil {
		heard := v.listenOnce(ctx)
		v.cache.setListening(false)
		if heard {
			delay = 50 * time.Millisecond
		}
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Second)
	}
}

// listenOnce connects, listens, and passes what it hears to the cache until
// the connection fails or carries no heartbeat for twice staleAfter (a
// connection cut without a word from either end). It reports whether it
// heard anything.
func (v *verifier) listenOnce(ctx context.Context) (heard bool) {
	cfg := v.p.pool.Config().ConnConfig.Copy()
	cfg.RuntimeParams["application_name"] = listenerName
	cctx, cancel := context.WithTimeout(ctx, v.p.staleAfter*2)
	conn, err := pgx.ConnectConfig(cctx, cfg)
	cancel()
	if err != nil {
		return false
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+changesChannel+"; LISTEN "+v.beatChannel); err != nil {
		return false
	}
	v.cache.setListening(true)
	select { // the cache is live from the first heartbeat heard: ask for one now
	case v.beatSoon <- struct{}{}:
	default:
	}
	for {
		wctx, cancel := context.WithTimeout(ctx, v.p.staleAfter*2)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if err != nil {
			return heard
		}
		heard = true
		if n.Channel == v.beatChannel {
			if sent, ok := v.beatSentAt(n.Payload); ok {
				v.cache.heard(sent)
			}
		} else {
			v.cache.changed(n.Payload)
		}
	}
}

// heartbeat sends the replica's heartbeat through the pool every
// staleAfter/4, until ctx ends: hearing it proves that the database and
// the listening connection both carry notifications, and that every change
// committed before it was sent has been heard. Its payload is when it was
// sent, on this process's monotonic clock (nanoseconds since the verifier
// started), so that no wall-clock step can stretch the cache's trust.
func (v *verifier) heartbeat(ctx context.Context) {
	t := time.NewTicker(v.p.staleAfter / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-v.beatSoon:
		}
		bctx, cancel := context.WithTimeout(ctx, v.p.staleAfter)
		sent := strconv.FormatInt(int64(time.Since(v.born)), 10)
		v.p.pool.Exec(bctx, `SELECT pg_notify($1, $2)`, v.beatChannel, sent)
		cancel()
	}
}

// beatSentAt is when the heartbeat with payload was sent.
func (v *verifier) beatSentAt(payload string) (time.Time, bool) {
	ns, err := strconv.ParseInt(payload, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return v.born.Add(time.Duration(ns)), true
}
