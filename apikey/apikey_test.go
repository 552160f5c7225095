package apikey

import (
	"encoding/hex"
	"strings"
	"testing"
)

func TestChecksumVectors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"zQWBuTSOoRi4A9spHcVY5ncnsDkxkJ", "0mLq17"}, // the documented vector
		{"", "000000"},
		{"a", "4GEHKN"}, // CRC-32("a") = 0xe8b7be43, computed independently
	}
	for _, tt := range tests {
		if got := Checksum(tt.in); got != tt.want {
			t.Errorf("Checksum(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestEncodeBase62Bounds(t *testing.T) {
	if got := encodeBase62(0); got != "000000" {
		t.Errorf("encodeBase62(0) = %q", got)
	}
	if got := encodeBase62(61); got != "00000z" {
		t.Errorf("encodeBase62(61) = %q", got)
	}
	if got := encodeBase62(62); got != "000010" {
		t.Errorf("encodeBase62(62) = %q", got)
	}
	if got := encodeBase62(0xffffffff); got != "4gfFC3" {
		t.Errorf("encodeBase62(max) = %q", got)
	}
}

func TestParseFixed(t *testing.T) {
	const body = "AbCd1234efGH5678ijKL9012mnOP3456"
	valid := "sk_live_" + body + Checksum("sk_live_"+body)
	tok, err := Parse(valid)
	if err != nil {
		t.Fatalf("Parse(%q): %v", valid, err)
	}
	if tok.Prefix != "sk" || tok.Tag != TagLive || tok.Body != body {
		t.Fatalf("Parse = %+v", tok)
	}
	if tok.String() != valid {
		t.Errorf("String() = %q, want %q", tok.String(), valid)
	}
	if tok.Start() != "sk_live_AbCd1234" {
		t.Errorf("Start() = %q", tok.Start())
	}

	withUnderscore := "my_app_test_" + body + Checksum("my_app_test_"+body)
	tok, err = Parse(withUnderscore)
	if err != nil || tok.Prefix != "my_app" || tok.Tag != TagTest {
		t.Errorf("Parse(%q) = %+v, %v", withUnderscore, tok, err)
	}

	flip := []byte(valid)
	flip[10] ^= 0x20 // swap the case of one body letter
	bad := []string{
		"",
		"sk_live_",
		"sk_live_" + body,            // no checksum
		"sk_prod_" + body + "000000", // unknown tag
		"Sk_live_" + body + Checksum("Sk_live_"+body), // upper-case prefix
		"1k_live_" + body + Checksum("1k_live_"+body), // prefix starts with a digit
		"sk_live_" + body + "00000!",
		valid[:len(valid)-1] + "x",
		string(flip),
		valid + "0",
		" " + valid,
		strings.Repeat("a", 17) + "_live_" + body + Checksum(strings.Repeat("a", 17)+"_live_"+body),
	}
	for _, s := range bad {
		if _, err := Parse(s); err != ErrMalformed {
			t.Errorf("Parse(%q) = %v, want ErrMalformed", s, err)
		}
	}
}

func TestNewRoundTrip(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 200; i++ {
		tok, err := New("sk", TagTest)
		if err != nil {
			t.Fatal(err)
		}
		s := tok.String()
		if len(s) != len("sk_test_")+BodyLen+ChecksumLen {
			t.Fatalf("len(%q) = %d", s, len(s))
		}
		back, err := Parse(s)
		if err != nil || back != tok {
			t.Fatalf("Parse(New()) = %+v, %v", back, err)
		}
		if seen[s] {
			t.Fatalf("duplicate token %q", s)
		}
		seen[s] = true
	}
}

func TestValidatePrefix(t *testing.T) {
	for _, p := range []string{"sk", "a", "pk-test", "my_app2", strings.Repeat("a", 16)} {
		if err := ValidatePrefix(p); err != nil {
			t.Errorf("ValidatePrefix(%q) = %v", p, err)
		}
	}
	for _, p := range []string{"", "SK", "2sk", "-sk", "s k", "sk!", strings.Repeat("a", 17)} {
		if err := ValidatePrefix(p); err == nil {
			t.Errorf("ValidatePrefix(%q) = nil, want error", p)
		}
	}
}

func TestDigest(t *testing.T) {
	// SHA-256("abc") and HMAC-SHA256(key="key", "abc") reference values.
	if got := hex.EncodeToString(Digest("abc", nil)); got != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Errorf("Digest(abc) = %s", got)
	}
	if got := hex.EncodeToString(Digest("abc", []byte("key"))); got != "9c196e32dc0175f86f4b1cb89289d6619de6bee699e4c378e68309ed97a1a6ab" {
		t.Errorf("Digest(abc, key) = %s", got)
	}
	if !Equal(Digest("x", nil), Digest("x", nil)) || Equal(Digest("x", nil), Digest("y", nil)) {
		t.Error("Equal disagrees with digest identity")
	}
}

func FuzzParse(f *testing.F) {
	f.Add("sk_live_AbCd1234efGH5678ijKL9012mnOP34560mLq17")
	f.Add("sk_test_")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := Parse(s)
		if err != nil {
			return
		}
		if tok.String() != s {
			t.Fatalf("Parse(%q) round-trips to %q", s, tok.String())
		}
		if ValidatePrefix(tok.Prefix) != nil || len(tok.Body) != BodyLen {
			t.Fatalf("Parse(%q) accepted %+v", s, tok)
		}
	})
}
