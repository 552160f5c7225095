package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyctl/keyctl/apikey"
	"github.com/keyctl/keyctl/store/chain"
	"github.com/keyctl/keyctl/store/keys"
)

// forge rewrites entry seq's content as someone who can write the database
// but does not hold the pepper would: new content, and every link from it
// on recomputed with SHA-256, the head too.
func forge(t *testing.T, db *sql.DB, seq int64, from, to string, scheme string) {
	t.Helper()
	rows, err := db.Query(`SELECT seq, content, prev_hash, hash FROM audit ORDER BY seq`)
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
				r.Content = strings.Replace(r.Content, from, to, 1)
			}
			r.PrevHash, r.Hash = prev, chain.Link(chain.SchemeSHA256, nil, prev, []byte(r.Content))
			if _, err := db.Exec(`UPDATE audit SET content = ?, prev_hash = ?, hash = ?, scheme = ? WHERE seq = ?`,
				r.Content, r.PrevHash, r.Hash, scheme, r.Seq); err != nil {
				t.Fatal(err)
			}
		}
		prev = r.Hash
	}
	if _, err := db.Exec(`UPDATE audit_head SET hash = ?`, prev); err != nil {
		t.Fatal(err)
	}
}

func trail(t *testing.T, s *SQLite) {
	t.Helper()
	ctx := context.Background()
	create(t, s, keys.CreateParams{Name: "a"})
	s.Update(ctx, "a", keys.UpdateParams{Description: strp("one")})
	s.Update(ctx, "a", keys.UpdateParams{Description: strp("two")})
	s.SetDisabled(ctx, "a", true)
}

// With a pepper, the chain is keyed: rewriting history needs the pepper.
func TestKeyedChainNeedsThePepperToForge(t *testing.T) {
	for _, scheme := range []string{chain.SchemeSHA256, chain.SchemeHMAC} {
		c := newClock()
		path := filepath.Join(t.TempDir(), "k.db")
		s, err := Open(context.Background(), path, Options{Now: c.Now, Pepper: []byte("the pepper")})
		if err != nil {
			t.Fatal(err)
		}
		trail(t, s)
		var keyed int
		s.db.QueryRow(`SELECT count(*) FROM audit WHERE scheme = 'hmac-sha256'`).Scan(&keyed)
		if check, _ := s.VerifyAudit(context.Background()); !check.OK || keyed != 4 {
			t.Fatalf("before: %+v, %d keyed entries", check, keyed)
		}
		forge(t, s.db, 2, `"one"`, `"forged"`, scheme)
		check, err := s.VerifyAudit(context.Background())
		if err != nil || check.OK || check.BadSeq != 2 {
			t.Fatalf("a history rewritten without the pepper (scheme %s): %+v, %v", scheme, check, err)
		}
		t.Logf("%s: %s", scheme, check.Problem)
		s.Close()
	}
}

// Without a pepper, a rewrite that recomputes every link holds together;
// a checkpoint kept elsewhere finds it, and finds a truncation after it.
func TestCheckpointsFindRewritesAndTruncations(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t, newClock())
	trail(t, s)
	check, err := s.VerifyAudit(ctx)
	if err != nil || !check.OK || check.HeadSeq != 4 {
		t.Fatal(check, err)
	}
	head := keys.Checkpoint{Seq: check.HeadSeq, Hash: check.Head}
	s.SetDisabled(ctx, "a", false)
	if check, _ := s.VerifyAudit(ctx, head); !check.OK || check.HeadSeq != 5 {
		t.Fatalf("a chain that grew past the checkpoint: %+v", check)
	}

	forge(t, s.db, 2, `"one"`, `"forged"`, chain.SchemeSHA256)
	if check, _ := s.VerifyAudit(ctx); !check.OK {
		t.Fatalf("a full rewrite without a pepper is not expected to show without a checkpoint: %+v", check)
	}
	check, _ = s.VerifyAudit(ctx, head)
	if check.OK || check.BadSeq != 4 || !strings.Contains(check.Problem, "rewritten") {
		t.Fatalf("a rewrite before the checkpoint: %+v", check)
	}

	s2, _ := openTest(t, newClock())
	trail(t, s2)
	c2, _ := s2.VerifyAudit(ctx)
	s2.db.Exec(`DELETE FROM audit WHERE seq >= 3; UPDATE audit_head SET seq = 2, hash = (SELECT hash FROM audit WHERE seq = 2)`)
	if check, _ := s2.VerifyAudit(ctx); !check.OK {
		t.Fatalf("a clean truncation is not expected to show without a checkpoint: %+v", check)
	}
	check, _ = s2.VerifyAudit(ctx, keys.Checkpoint{Seq: c2.HeadSeq, Hash: c2.Head})
	if check.OK || !strings.Contains(check.Problem, "before the checkpoint's entry 4") {
		t.Fatalf("a truncation after the checkpoint: %+v", check)
	}
}

// A chain begun without a pepper keeps verifying after the database gets
// one: the older entries keep their scheme, and every later one is keyed,
// from an entry recorded under the pepper.
func TestChainKeyedFromWhenThePepperIsRecorded(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "k.db")
	s, _ := Open(ctx, path, Options{})
	_, secret, _ := s.Create(ctx, keys.CreateParams{Name: "a", Env: keys.Production, Prefix: "sk"})
	s.Update(ctx, "a", keys.UpdateParams{Description: strp("before")})
	s.Close()
	// Made before keyctl recorded peppers, and its key's digest made
	// with one: rewrite the record away and the digest as a pepper's.
	raw, _ := sql.Open("sqlite", path)
	raw.Exec(`DELETE FROM meta`)
	raw.Close()
	s, _ = Open(ctx, path, Options{Pepper: []byte("p")})
	s.db.Exec(`UPDATE secrets SET digest = ?`, hmacDigest(secret, "p"))
	if _, err := s.Find(ctx, secret); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err := Open(ctx, path, Options{Pepper: []byte("p")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Update(ctx, "a", keys.UpdateParams{Description: strp("after")})
	var schemes []string
	rows, _ := s.db.Query(`SELECT scheme FROM audit ORDER BY seq`)
	for rows.Next() {
		var sc string
		rows.Scan(&sc)
		schemes = append(schemes, sc)
	}
	rows.Close()
	if strings.Join(schemes, ",") != "sha256,sha256,hmac-sha256" || s.keyedFrom != 3 {
		t.Fatalf("schemes %v, keyed from %d", schemes, s.keyedFrom)
	}
	if check, _ := s.VerifyAudit(ctx); !check.OK {
		t.Fatalf("a mixed chain: %+v", check)
	}
	// Moving where keying began (to pass a forged entry off as older)
	// needs the pepper too.
	s.db.Exec(`UPDATE meta SET value = '4$' || substr(value, 3) WHERE name = 'audit_keyed_from'`)
	s.Close()
	s, _ = Open(ctx, path, Options{Pepper: []byte("p")})
	if check, _ := s.VerifyAudit(ctx); check.OK || !strings.Contains(check.Problem, "changed behind keyctl's back") {
		t.Fatalf("a moved record: %+v", check)
	}
}

func hmacDigest(token, pepper string) []byte {
	return apikey.Digest(token, []byte(pepper))
}

// TestChainKeyedWhenAnotherProcessRecordsThePepper: a process that opened
// the database before another one recorded its pepper keys what it appends
// from then on, as the record says, and the chain keeps verifying.
func TestChainKeyedWhenAnotherProcessRecordsThePepper(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "k.db")
	s, _ := Open(ctx, path, Options{})
	_, secret, _ := s.Create(ctx, keys.CreateParams{Name: "a", Env: keys.Production, Prefix: "sk"})
	s.Close()
	raw, _ := sql.Open("sqlite", path)
	raw.Exec(`DELETE FROM meta`)
	raw.Exec(`UPDATE secrets SET digest = ?`, hmacDigest(secret, "p"))
	raw.Close()

	server, err := Open(ctx, path, Options{Pepper: []byte("p")}) // stays open, unproven
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	cli, err := Open(ctx, path, Options{Pepper: []byte("p")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Find(ctx, secret); err != nil {
		t.Fatal(err)
	}
	if err := cli.Close(); err != nil { // records the pepper, proven
		t.Fatal(err)
	}
	if _, err := server.Update(ctx, "a", keys.UpdateParams{Description: strp("after")}); err != nil {
		t.Fatal(err)
	}
	var schemes []string
	rows, _ := server.db.Query(`SELECT scheme FROM audit ORDER BY seq`)
	for rows.Next() {
		var sc string
		rows.Scan(&sc)
		schemes = append(schemes, sc)
	}
	rows.Close()
	if strings.Join(schemes, ",") != "sha256,hmac-sha256" {
		t.Fatalf("schemes %v", schemes)
	}
	if check, err := server.VerifyAudit(ctx); err != nil || !check.OK {
		t.Fatalf("the process that opened before the record: %+v, %v", check, err)
	}
}
