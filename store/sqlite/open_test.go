package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyctl/keyctl/store/keys"
)

// A file keyctl did not make is refused before anything is written to it:
// its bytes, its time and its directory are left as they were.
func TestForeignFilesAreRefusedUntouched(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.db")
	if err := os.WriteFile(text, bytes.Repeat([]byte("not a database at all\n"), 100), 0o644); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "app.db")
	db, err := sql.Open("sqlite", other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE users (id INTEGER PRIMARY KEY); INSERT INTO users VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	for _, path := range []string{text, other} {
		before, _ := os.ReadFile(path)
		info, _ := os.Stat(path)
		old := time.Now().Add(-time.Hour)
		os.Chtimes(path, old, old)
		_, err := Open(context.Background(), path, Options{})
		if !errors.Is(err, ErrForeign) {
			t.Fatalf("%s: %v, want ErrForeign", filepath.Base(path), err)
		}
		after, _ := os.ReadFile(path)
		info2, _ := os.Stat(path)
		if !bytes.Equal(before, after) || !info2.ModTime().Equal(old) || info.Mode() != info2.Mode() {
			t.Fatalf("%s was changed", filepath.Base(path))
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("files were added beside them: %v", entries)
	}
}

// A database made before keyctl set its application id is still keyctl's,
// known by its schema, and gets the id.
func TestDatabasesWithoutTheApplicationIDAreKnownBySchema(t *testing.T) {
	c := newClock()
	s, path := openTest(t, c)
	create(t, s, keys.CreateParams{Name: "old"})
	s.Close()
	raw, _ := sql.Open("sqlite", path)
	if _, err := raw.Exec(`PRAGMA application_id = 0`); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	s, err := Open(context.Background(), path, Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var app int
	s.db.QueryRow(`PRAGMA application_id`).Scan(&app)
	if app != ApplicationID {
		t.Fatalf("application id %#x", app)
	}
	if _, err := s.Get(context.Background(), "old"); err != nil {
		t.Fatal(err)
	}
}

// A command that only reads never makes a database: not the file, not its
// directory.
func TestMustExistCreatesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "typo", "keyctl.db")
	_, err := Open(context.Background(), path, Options{MustExist: true})
	if !errors.Is(err, ErrNoDatabase) || err.Error() != "no keyctl database at "+path {
		t.Fatalf("Open: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "typo")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a directory was made: %v", err)
	}
}

// The database records a fingerprint of the pepper it was made with: a
// different pepper, or none, or one where there was none, is said at once.
func TestPepperFingerprint(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	open := func(path, pepper string) (*SQLite, error) {
		return Open(ctx, path, Options{Pepper: []byte(pepper)})
	}
	peppered := filepath.Join(dir, "peppered.db")
	s, err := open(peppered, "right pepper")
	if err != nil {
		t.Fatal(err)
	}
	_, secret, err := s.Create(ctx, keys.CreateParams{Env: keys.Production, Prefix: "sk"})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	plain := filepath.Join(dir, "plain.db")
	s, _ = open(plain, "")
	s.Close()
	for _, c := range []struct{ path, pepper, says string }{
		{peppered, "", "made with a pepper, and none is configured"},
		{peppered, "wrong pepper", "not the one the database"},
		{plain, "a pepper", "made without a pepper, and one is configured"},
	} {
		_, err := open(c.path, c.pepper)
		if !errors.Is(err, ErrPepper) || !bytes.Contains([]byte(err.Error()), []byte(c.says)) {
			t.Errorf("%s with %q: %v", filepath.Base(c.path), c.pepper, err)
		}
	}
	s, err = open(peppered, "right pepper")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Find(ctx, secret); err != nil {
		t.Fatal(err)
	}
	// The record reveals nothing of the pepper.
	data, _ := os.ReadFile(peppered)
	if bytes.Contains(data, []byte("right pepper")) {
		t.Fatal("the database holds the pepper")
	}
}

// A database made before keyctl recorded its pepper, holding secrets, has
// it recorded only once a secret is found with the configured pepper: a
// wrong pepper on the first open does not lock the right one out.
func TestPepperOfAnOlderDatabaseIsRecordedOnceProven(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	s, _ := Open(ctx, path, Options{Pepper: []byte("right")})
	_, secret, _ := s.Create(ctx, keys.CreateParams{Env: keys.Production, Prefix: "sk"})
	s.Close()
	raw, _ := sql.Open("sqlite", path)
	raw.Exec(`DELETE FROM meta`)
	raw.Close()

	s, err := Open(ctx, path, Options{Pepper: []byte("wrong")})
	if err != nil {
		t.Fatalf("an older database with a wrong pepper: %v", err)
	}
	if _, err := s.Find(ctx, secret); !errors.Is(err, keys.ErrNotFound) {
		t.Fatal(err)
	}
	s.Close()
	s, _ = Open(ctx, path, Options{Pepper: []byte("right")})
	if _, err := s.Find(ctx, secret); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := Open(ctx, path, Options{Pepper: []byte("wrong")}); !errors.Is(err, ErrPepper) {
		t.Fatalf("after the right pepper found a key: %v", err)
	}
}
