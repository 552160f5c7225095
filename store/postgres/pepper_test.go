package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/keyctl/keyctl/apikey"
	"github.com/keyctl/keyctl/store/chain"
	"github.com/keyctl/keyctl/store/keys"
	"github.com/keyctl/keyctl/store/postgres"
	"github.com/keyctl/keyctl/store/postgres/pgtest"
)

func openPepper(t *testing.T, addr, pepper string) (*postgres.Postgres, error) {
	t.Helper()
	s, err := postgres.Open(context.Background(), addr, postgres.Options{Pepper: []byte(pepper), Now: newClock().Now})
	if err == nil {
		t.Cleanup(func() { s.Close() })
	}
	return s, err
}

// TestPepperFingerprint: the database records a fingerprint of the pepper
// it was made with, and a replica with another pepper, or none, or one
// where there was none, is refused at once.
func TestPepperFingerprint(t *testing.T) {
	peppered, plain := pgtest.NewDatabase(t), pgtest.NewDatabase(t)
	s, err := openPepper(t, peppered, "right pepper")
	if err != nil {
		t.Fatal(err)
	}
	_, secret := create(t, s, keys.CreateParams{})
	if _, err := openPepper(t, plain, ""); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ addr, pepper, says string }{
		{peppered, "", "made with a pepper, and none is configured"},
		{peppered, "wrong pepper", "is not the one the database"},
		{plain, "a pepper", "made without a pepper, and one is configured"},
	} {
		if _, err := openPepper(t, c.addr, c.pepper); !errors.Is(err, keys.ErrPepper) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("pepper %q: %v", c.pepper, err)
		}
	}
	again, err := openPepper(t, peppered, "right pepper")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := again.Find(context.Background(), secret); err != nil {
		t.Fatal(err)
	}
	var rec string
	connect(t, peppered).QueryRow(context.Background(), `SELECT value FROM meta WHERE name = 'pepper'`).Scan(&rec)
	if !strings.HasPrefix(rec, "pbkdf2-sha256$") || strings.Contains(rec, "right pepper") {
		t.Fatalf("the record %q", rec)
	}
}

// forge rewrites entry seq's content as someone who can write the database
// but does not hold the pepper would: every link from it on recomputed with
// SHA-256, the head too.
func forge(t *testing.T, conn *pgx.Conn, seq int64) {
	t.Helper()
	ctx := context.Background()
	rows, err := conn.Query(ctx, `SELECT seq, content, prev_hash, hash FROM audit ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	var all []chain.Row
	for rows.Next() {
		var r chain.Row
		rows.Scan(&r.Seq, &r.Content, &r.PrevHash, &r.Hash)
		all = append(all, r)
	}
	rows.Close()
	prev := ""
	for _, r := range all {
		if r.Seq >= seq {
			if r.Seq == seq {
				r.Content = strings.Replace(r.Content, `"one"`, `"forged"`, 1)
			}
			r.PrevHash, r.Hash = prev, chain.Link(chain.SchemeSHA256, nil, prev, []byte(r.Content))
			if _, err := conn.Exec(ctx, `UPDATE audit SET content = $1, prev_hash = $2, hash = $3, scheme = 'sha256' WHERE seq = $4`,
				r.Content, r.PrevHash, r.Hash, r.Seq); err != nil {
				t.Fatal(err)
			}
		}
		prev = r.Hash
	}
	if _, err := conn.Exec(ctx, `UPDATE audit_head SET hash = $1`, prev); err != nil {
		t.Fatal(err)
	}
}

// TestKeyedChainNeedsThePepperToForge: with a pepper, every replica links
// the one chain with HMAC-SHA256 under a key derived from it; rewriting
// history with write access alone shows.
func TestKeyedChainNeedsThePepperToForge(t *testing.T) {
	ctx := context.Background()
	addr := pgtest.NewDatabase(t)
	a, err := openPepper(t, addr, "the pepper")
	if err != nil {
		t.Fatal(err)
	}
	b, err := openPepper(t, addr, "the pepper")
	if err != nil {
		t.Fatal(err)
	}
	create(t, a, keys.CreateParams{Name: "a"})
	for i, s := range []*postgres.Postgres{b, a, b} {
		d := []string{"one", "two", "three"}[i]
		if _, err := s.Update(ctx, "a", keys.UpdateParams{Description: &d}); err != nil {
			t.Fatal(err)
		}
	}
	conn := connect(t, addr)
	var keyed int
	conn.QueryRow(ctx, `SELECT count(*) FROM audit WHERE scheme = 'hmac-sha256'`).Scan(&keyed)
	if check, err := b.VerifyAudit(ctx); err != nil || !check.OK || keyed != 4 {
		t.Fatalf("before: %+v, %v, %d keyed entries", check, err, keyed)
	}
	forge(t, conn, 2)
	check, err := a.VerifyAudit(ctx)
	if err != nil || check.OK || check.BadSeq != 2 {
		t.Fatalf("a history rewritten without the pepper: %+v, %v", check, err)
	}
}

// TestChainKeyedWhenAnotherReplicaRecordsThePepper: on a database made
// before keyctl recorded its pepper, and holding secrets, the record waits
// for a secret found with the configured pepper. Once one replica writes
// it, the others key what they append from then on, and the chain keeps
// verifying on every replica.
func TestChainKeyedWhenAnotherReplicaRecordsThePepper(t *testing.T) {
	ctx := context.Background()
	addr := pgtest.NewDatabase(t)
	// Made before keyctl recorded peppers, its key's digest made with one:
	// the record deleted, the digest rewritten as the pepper's.
	first, err := openPepper(t, addr, "")
	if err != nil {
		t.Fatal(err)
	}
	_, secret := create(t, first, keys.CreateParams{Name: "a"})
	first.Close()
	conn := connect(t, addr)
	mustExec(t, conn, `DELETE FROM meta`)
	if _, err := conn.Exec(ctx, `UPDATE secrets SET digest = $1`, apikey.Digest(secret, []byte("p"))); err != nil {
		t.Fatal(err)
	}

	a, err := openPepper(t, addr, "p") // stays open, unproven
	if err != nil {
		t.Fatal(err)
	}
	b, err := postgres.Open(ctx, addr, postgres.Options{Pepper: []byte("p"), Now: newClock().Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Find(ctx, secret); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil { // records the pepper, proven
		t.Fatal(err)
	}
	d := "after"
	if _, err := a.Update(ctx, "a", keys.UpdateParams{Description: &d}); err != nil {
		t.Fatal(err)
	}
	var schemes []string
	rows, _ := conn.Query(ctx, `SELECT scheme FROM audit ORDER BY seq`)
	for rows.Next() {
		var s string
		rows.Scan(&s)
		schemes = append(schemes, s)
	}
	rows.Close()
	if strings.Join(schemes, ",") != "sha256,hmac-sha256" {
		t.Fatalf("schemes %v", schemes)
	}
	if check, err := a.VerifyAudit(ctx); err != nil || !check.OK {
		t.Fatalf("the replica that opened before the record: %+v, %v", check, err)
	}
	c, err := openPepper(t, addr, "p")
	if err != nil {
		t.Fatal(err)
	}
	if check, err := c.VerifyAudit(ctx); err != nil || !check.OK {
		t.Fatalf("a replica opened after the record: %+v, %v", check, err)
	}
}

// TestCheckWritable: a replica knows before it serves that it cannot
// write (here a database whose transactions are read-only, as a standby's
// are).
func TestCheckWritable(t *testing.T) {
	ctx := context.Background()
	addr := pgtest.NewDatabase(t)
	s := open(t, addr, nil)
	if err := s.CheckWritable(ctx); err != nil {
		t.Fatal(err)
	}
	mustExec(t, connect(t, addr), `DO $$ BEGIN
		EXECUTE format('ALTER DATABASE %I SET default_transaction_read_only = on', current_database()); END $$`)
	ro := open(t, addr, nil)
	if err := ro.CheckWritable(ctx); err == nil || !strings.Contains(err.Error(), "cannot be written") {
		t.Fatalf("a read-only database: %v", err)
	}
}

// TestPepperOfAnOlderDatabaseIsRecordedOnceProven: a database made before
// keyctl recorded its pepper, holding secrets, has it recorded only once a
// secret is found with the configured pepper (here by a verification): a
// wrong pepper first does not lock the right one out.
func TestPepperOfAnOlderDatabaseIsRecordedOnceProven(t *testing.T) {
	ctx := context.Background()
	addr := pgtest.NewDatabase(t)
	first, err := openPepper(t, addr, "")
	if err != nil {
		t.Fatal(err)
	}
	_, secret := create(t, first, keys.CreateParams{})
	first.Close()
	conn := connect(t, addr)
	mustExec(t, conn, `DELETE FROM meta`)
	if _, err := conn.Exec(ctx, `UPDATE secrets SET digest = $1`, apikey.Digest(secret, []byte("right"))); err != nil {
		t.Fatal(err)
	}

	opened := func(pepper string) *postgres.Postgres {
		s, err := postgres.Open(ctx, addr, postgres.Options{Pepper: []byte(pepper), Now: newClock().Now})
		if err != nil {
			t.Fatalf("an older database with pepper %q: %v", pepper, err)
		}
		return s
	}
	wrong := opened("wrong")
	if res, err := wrong.Verify(ctx, keys.VerifyRequest{Token: secret}); err != nil || res.Code != keys.NotFound {
		t.Fatalf("with a wrong pepper: %+v, %v", res, err)
	}
	wrong.Close()
	right := opened("right")
	if res, err := right.Verify(ctx, keys.VerifyRequest{Token: secret}); err != nil || res.Code != keys.Valid {
		t.Fatalf("with the right pepper: %+v, %v", res, err)
	}
	if err := right.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := openPepper(t, addr, "wrong"); !errors.Is(err, keys.ErrPepper) {
		t.Fatalf("after the right pepper verified a key: %v", err)
	}
}
