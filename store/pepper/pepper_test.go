package pepper

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/keyctl/keyctl/store/keys"
)

func TestRecordAndCheck(t *testing.T) {
	rec, key, err := New([]byte("right"))
	if err != nil || key == nil || !strings.HasPrefix(rec, "pbkdf2-sha256$50000$") || strings.Contains(rec, "right") {
		t.Fatalf("New = %q, %x, %v", rec, key, err)
	}
	again, err := Check(rec, []byte("right"), "the database x")
	if err != nil || !bytes.Equal(again, key) {
		t.Fatalf("Check with the right pepper = %x, %v; want the same key", again, err)
	}
	other, _, _ := New([]byte("right"))
	if other == rec {
		t.Fatal("two records of one pepper share a salt")
	}
	none, nokey, err := New(nil)
	if err != nil || none != None || nokey != nil {
		t.Fatalf("New without a pepper = %q, %x, %v", none, nokey, err)
	}
	for _, c := range []struct {
		rec, pepper, says string
	}{
		{rec, "wrong", "is not the one the database x was made with"},
		{rec, "", "the database x was made with a pepper, and none is configured"},
		{None, "p", "the database x was made without a pepper, and one is configured"},
		{"pbkdf2-sha256$x$y", "p", "cannot read"},
	} {
		if _, err := Check(c.rec, []byte(c.pepper), "the database x"); !errors.Is(err, keys.ErrPepper) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("Check(%.20q, %q) = %v, want %q", c.rec, c.pepper, err, c.says)
		}
	}
	if k, err := Check(None, nil, "x"); err != nil || k != nil {
		t.Fatalf("no pepper, none recorded: %x, %v", k, err)
	}
}

func TestKeyedFrom(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	rec := KeyedFrom(key, 12)
	if seq, problem := ParseKeyedFrom(key, rec); seq != 12 || problem != "" {
		t.Fatalf("ParseKeyedFrom(%q) = %d, %q", rec, seq, problem)
	}
	moved := "13" + rec[2:]
	for _, r := range []string{moved, "", "12$", rec + "0"} {
		if seq, problem := ParseKeyedFrom(key, r); seq != 0 || problem == "" {
			t.Errorf("ParseKeyedFrom(%q) = %d, %q: a record not made with the key was trusted", r, seq, problem)
		}
	}
	if _, problem := ParseKeyedFrom(bytes.Repeat([]byte{8}, 32), rec); problem == "" {
		t.Error("a record made with another key was trusted")
	}
}
