package postgres

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/keyctl/keyctl/store/chain"
	"github.com/keyctl/keyctl/store/dump"
	"github.com/keyctl/keyctl/store/keys"
	"github.com/keyctl/keyctl/store/pepper"
)

// Dump reads the whole store from one snapshot (a repeatable-read,
// read-only transaction): changes other replicas commit meanwhile are
// wholly in it or wholly out of it.
func (p *Postgres) Dump(ctx context.Context) iter.Seq2[dump.Item, error] {
	return func(yield func(dump.Item, error) bool) {
		stop := errors.New("stopped")
		err := pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
			emit := func(it dump.Item) error {
				if !yield(it, nil) {
					return stop
				}
				return nil
			}
			var m dump.Meta
			var err error
			if m.Pepper, err = meta(ctx, tx, metaPepper); err != nil {
				return err
			}
			if m.KeyedFrom, err = meta(ctx, tx, metaKeyedFrom); err != nil {
				return err
			}
			if err := emit(dump.Item{Meta: &m}); err != nil {
				return err
			}
			if err := p.dumpKeys(ctx, tx, emit); err != nil {
				return err
			}
			if err := dumpUses(ctx, tx, emit); err != nil {
				return err
			}
			if err := auditRows(ctx, tx, func(r chain.Row) error { return emit(dump.Item{Entry: &r}) }); err != nil {
				return err
			}
			var h dump.Head
			if err := tx.QueryRow(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&h.Seq, &h.Hash); err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
			return emit(dump.Item{Head: &h})
		})
		if err != nil && !errors.Is(err, stop) {
			yield(dump.Item{}, classify(err))
		}
	}
}

func (p *Postgres) dumpKeys(ctx context.Context, tx pgx.Tx, emit func(dump.Item) error) error {
	rows, err := tx.Query(ctx, `SELECT k.rate_tat,
		ARRAY(SELECT s.digest FROM secrets s WHERE s.key_id = k.id ORDER BY s.created_at, s.digest),
		ARRAY(SELECT s.start FROM secrets s WHERE s.key_id = k.id ORDER BY s.created_at, s.digest),
		ARRAY(SELECT s.created_at FROM secrets s WHERE s.key_id = k.id ORDER BY s.created_at, s.digest),
		ARRAY(SELECT s.ends_at FROM secrets s WHERE s.key_id = k.id ORDER BY s.created_at, s.digest), `+
		keyColumns+keyFrom+`ORDER BY k.seq`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		d := &dump.Key{}
		var digests [][]byte
		var starts []string
		var created, ends []pgtype.Timestamptz
		dest, finish := p.keyDest(&d.Key)
		if err := rows.Scan(append([]any{&d.RateTAT, &digests, &starts, &created, &ends}, dest...)...); err != nil {
			return err
		}
		finish()
		d.Key.Status = d.Key.Stored
		for i := range digests {
			s := dump.Secret{Digest: digests[i], Start: starts[i], CreatedAt: created[i].Time.UTC()}
			if ends[i].Valid {
				t := ends[i].Time.UTC()
				s.EndsAt = &t
			}
			d.Secrets = append(d.Secrets, s)
		}
		if err := emit(dump.Item{Key: d}); err != nil {
			return err
		}
	}
	return rows.Err()
}

func dumpUses(ctx context.Context, tx pgx.Tx, emit func(dump.Item) error) error {
	rows, err := tx.Query(ctx, `SELECT key_id, at, code, ip FROM usage_events ORDER BY at, id`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		u := &dump.Use{}
		if err := rows.Scan(&u.KeyID, &u.At, &u.Code, &u.IP); err != nil {
			return err
		}
		u.At = u.At.UTC()
		if err := emit(dump.Item{Use: u}); err != nil {
			return err
		}
	}
	return rows.Err()
}

// loadBatch is how many records one COPY writes.
const loadBatch = 1000

// Load fills an empty database with a dump, in one transaction, with COPY.
// The tables are locked against writers for its length: a replica's change
// waits rather than mixing with the load.
//
// The copy keeps the source's record of its pepper, once the configured
// pepper is found to be the same, so that its keyed audit entries verify
// under the key derived with the source's salt; a source without that record
// leaves the destination's own, keyed from the entry after those copied.
func (p *Postgres) Load(ctx context.Context, items iter.Seq2[dump.Item, error]) error {
	defer p.changed("*")
	err := classify(pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `LOCK TABLE keys, secrets, key_usage, usage_events, audit, audit_head, meta IN EXCLUSIVE MODE`); err != nil {
			return err
		}
		var used bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM keys) OR EXISTS (SELECT 1 FROM audit)
			OR EXISTS (SELECT 1 FROM audit_head WHERE seq <> 0)`).Scan(&used); err != nil {
			return err
		}
		if used {
			return fmt.Errorf("%w: the destination database already holds keys or audit entries", keys.ErrConflict)
		}
		l := &loader{ctx: ctx, tx: tx}
		adopted := false
		for it, err := range items {
			if err != nil {
				return err
			}
			if it.Meta != nil {
				if adopted, err = p.adoptMeta(ctx, tx, it.Meta); err != nil {
					return err
				}
				continue
			}
			if it.Head != nil {
				l.head = it.Head.Seq
			}
			if err := l.add(it); err != nil {
				return err
			}
		}
		if err := l.flush(); err != nil {
			return err
		}
		if key := p.chainKey(); !adopted && key != nil {
			_, err := tx.Exec(ctx, `INSERT INTO meta (name, value) VALUES ($1, $2)
				ON CONFLICT (name) DO UPDATE SET value = excluded.value`, metaKeyedFrom, pepper.KeyedFrom(key, l.head+1))
			return err
		}
		return nil
	}))
	if err != nil {
		return err
	}
	return p.checkPepper(ctx)
}

// adoptMeta keeps a source's record of its pepper, when it has one and the
// configured pepper is the same, and reports whether it did.
func (p *Postgres) adoptMeta(ctx context.Context, tx pgx.Tx, m *dump.Meta) (bool, error) {
	if m.Pepper == "" {
		return false, nil
	}
	if _, err := pepper.Check(m.Pepper, p.pepper, "the source database"); err != nil {
		return false, err
	}
	for name, v := range map[string]string{metaPepper: m.Pepper, metaKeyedFrom: m.KeyedFrom} {
		var err error
		if v == "" {
			_, err = tx.Exec(ctx, `DELETE FROM meta WHERE name = $1`, name)
		} else {
			_, err = tx.Exec(ctx, `INSERT INTO meta (name, value) VALUES ($1, $2)
				ON CONFLICT (name) DO UPDATE SET value = excluded.value`, name, v)
		}
		if err != nil {
			return false, err
		}
	}
	return true, nil
}

// loader buffers a dump's records by table and copies each buffer in when
// it is full or the dump moves on to another kind of record.
type loader struct {
	ctx                          context.Context
	tx                           pgx.Tx
	keys, secrets, usage, events [][]any
	entries                      [][]any
	head                         int64 // the audit chain's head, once given
}

func (l *loader) add(it dump.Item) error {
	switch {
	case it.Key != nil:
		l.addKey(it.Key)
	case it.Use != nil:
		if len(l.keys) > 0 {
			if err := l.flush(); err != nil {
				return err
			}
		}
		u := it.Use
		l.events = append(l.events, []any{u.KeyID, u.At.UTC(), string(u.Code), u.IP})
	case it.Entry != nil:
		if len(l.keys)+len(l.events) > 0 {
			if err := l.flush(); err != nil {
				return err
			}
		}
		r := it.Entry
		scheme := r.Scheme
		if scheme == "" {
			scheme = chain.SchemeSHA256
		}
		l.entries = append(l.entries, []any{r.Seq, r.Content, r.PrevHash, r.Hash, scheme})
	case it.Head != nil:
		if err := l.flush(); err != nil {
			return err
		}
		_, err := l.tx.Exec(l.ctx, `INSERT INTO audit_head (id, seq, hash) VALUES (1, $1, $2)
			ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash`, it.Head.Seq, it.Head.Hash)
		return err
	}
	if len(l.keys) >= loadBatch || len(l.events) >= 10*loadBatch || len(l.entries) >= loadBatch {
		return l.flush()
	}
	return nil
}

func (l *loader) addKey(d *dump.Key) {
	k := d.Key
	rateCount, rateUnit := rateParts(k.RateLimit)
	meta := k.Metadata
	if meta == nil {
		meta = map[string]string{}
	}
	l.keys = append(l.keys, []any{k.ID, k.Name, k.Description, k.Prefix, string(k.Env), k.Start, string(k.Stored),
		keys.NormalizeSet(k.Scopes), keys.NormalizeSet(k.AllowedIPs), meta, k.ExpiresAt, k.Quota, k.QuotaRemaining,
		rateCount, rateUnit, d.RateTAT, k.CreatedAt, k.CreatedBy, k.UpdatedAt, k.RotatedAt, k.RevokedAt, k.RevokeReason})
	for _, s := range d.Secrets {
		l.secrets = append(l.secrets, []any{s.Digest, k.ID, s.Start, s.CreatedAt, s.EndsAt})
	}
	if k.UsageCount > 0 || k.LastUsedAt != nil {
		var last *time.Time
		if k.LastUsedAt != nil {
			t := k.LastUsedAt.UTC()
			last = &t
		}
		l.usage = append(l.usage, []any{k.ID, k.UsageCount, last, k.LastUsedIP})
	}
}

var loadTables = []struct {
	name    string
	columns []string
	rows    func(*loader) *[][]any
}{
	{"keys", []string{"id", "name", "description", "prefix", "env", "start", "status", "scopes", "allowed_ips",
		"metadata", "expires_at", "quota", "quota_remaining", "rate_count", "rate_unit", "rate_tat", "created_at",
		"created_by", "updated_at", "rotated_at", "revoked_at", "revoke_reason"}, func(l *loader) *[][]any { return &l.keys }},
	{"secrets", []string{"digest", "key_id", "start", "created_at", "ends_at"}, func(l *loader) *[][]any { return &l.secrets }},
	{"key_usage", []string{"key_id", "count", "last_used_at", "last_used_ip"}, func(l *loader) *[][]any { return &l.usage }},
	{"usage_events", []string{"key_id", "at", "code", "ip"}, func(l *loader) *[][]any { return &l.events }},
	{"audit", []string{"seq", "content", "prev_hash", "hash", "scheme"}, func(l *loader) *[][]any { return &l.entries }},
}

// flush copies every buffer in, keys before the rows that refer to them.
func (l *loader) flush() error {
	for _, t := range loadTables {
		rows := t.rows(l)
		if len(*rows) == 0 {
			continue
		}
		if _, err := l.tx.CopyFrom(l.ctx, pgx.Identifier{t.name}, t.columns, pgx.CopyFromRows(*rows)); err != nil {
			return fmt.Errorf("copying into %s: %w", t.name, err)
		}
		*rows = (*rows)[:0]
	}
	return nil
}
