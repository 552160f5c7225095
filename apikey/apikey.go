// Package apikey defines keyctl's token format: how a secret key is
// generated, how its shape and checksum are checked without any lookup, and
// how it is reduced to the digest and display start that are all keyctl ever
// stores. It does no I/O.
package apikey

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
)

// Alphabet is the base62 alphabet of token bodies and checksums.
// math/big's Text(62) uses 0-9a-zA-Z instead, so it must not be used here.
const Alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

const (
	// BodyLen is the number of random base62 characters in a token (~190 bits).
	BodyLen = 32
	// ChecksumLen is the width of the base62 CRC-32 that ends a token.
	ChecksumLen = 6
	// StartLen is how many body characters the stored display start keeps.
	StartLen = 8
	// MaxPrefixLen bounds a prefix; with it, MaxLen bounds a whole token.
	MaxPrefixLen = 16
	// MaxLen is the length of the longest well-formed token.
	MaxLen = MaxPrefixLen + len("_live_") + BodyLen + ChecksumLen

	// DefaultPrefix is the prefix of a key when none is configured.
	DefaultPrefix = "sk"

	// TagLive marks production keys; TagTest staging and development ones.
	TagLive = "live"
	TagTest = "test"
)

// ErrMalformed is returned for a string that is not a keyctl token: wrong
// shape, or a checksum that does not hold.
var ErrMalformed = errors.New("malformed key")

// Token is a parsed, well-formed token.
type Token struct {
	Prefix string // e.g. "sk"
	Tag    string // TagLive or TagTest
	Body   string // the random part, BodyLen characters
}

// String returns the full token with its checksum.
func (t Token) String() string {
	s := t.Prefix + "_" + t.Tag + "_" + t.Body
	return s + Checksum(s)
}

// Start returns the non-secret display start: prefix, tag and the first
// StartLen characters of the body, e.g. "sk_live_AbCd1234".
func (t Token) Start() string {
	return t.Prefix + "_" + t.Tag + "_" + t.Body[:StartLen]
}

// New draws a new token with crypto/rand.
func New(prefix, tag string) (Token, error) {
	if err := ValidatePrefix(prefix); err != nil {
		return Token{}, err
	}
	if tag != TagLive && tag != TagTest {
		return Token{}, fmt.Errorf("invalid tag %q", tag)
	}
	body, err := randomBase62(BodyLen)
	if err != nil {
		return Token{}, err
	}
	return Token{Prefix: prefix, Tag: tag, Body: body}, nil
}

// randomBase62 draws n characters uniformly from Alphabet by rejection
// sampling, so that no character is more likely than another.
func randomBase62(n int) (string, error) {
	out := make([]byte, 0, n)
	buf := make([]byte, n+n/2)
	for len(out) < n {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("reading random bytes: %w", err)
		}
		for _, b := range buf {
			// 248 = 4*62: bytes at or above it would bias the result.
			if b < 248 && len(out) < n {
				out = append(out, Alphabet[b%62])
			}
		}
	}
	return string(out), nil
}

// Checksum returns the CRC-32 (IEEE) of s in base62, left-padded with '0' to
// ChecksumLen characters.
func Checksum(s string) string {
	return encodeBase62(crc32.ChecksumIEEE([]byte(s)))
}

func encodeBase62(v uint32) string {
	var b [ChecksumLen]byte
	for i := ChecksumLen - 1; i >= 0; i-- {
		b[i] = Alphabet[v%62]
		v /= 62
	}
	return string(b[:])
}

// Parse checks a token's shape and checksum, without any lookup.
func Parse(s string) (Token, error) {
	tail := BodyLen + ChecksumLen
	if len(s) > MaxLen || len(s) < len("a_live_")+tail {
		return Token{}, ErrMalformed
	}
	rest, sum := s[:len(s)-ChecksumLen], s[len(s)-ChecksumLen:]
	body := rest[len(rest)-BodyLen:]
	head := rest[:len(rest)-BodyLen] // "<prefix>_<tag>_"
	var tok Token
	switch {
	case strings.HasSuffix(head, "_"+TagLive+"_"):
		tok.Tag = TagLive
	case strings.HasSuffix(head, "_"+TagTest+"_"):
		tok.Tag = TagTest
	default:
		return Token{}, ErrMalformed
	}
	tok.Prefix = head[:len(head)-len(tok.Tag)-2]
	tok.Body = body
	if ValidatePrefix(tok.Prefix) != nil || !isBase62(body) || !isBase62(sum) {
		return Token{}, ErrMalformed
	}
	if subtle.ConstantTimeCompare([]byte(Checksum(rest)), []byte(sum)) != 1 {
		return Token{}, ErrMalformed
	}
	return tok, nil
}

func isBase62(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return true
}

// ValidatePrefix reports whether p may prefix a token: 1 to 16 characters of
// lower-case letters, digits, '-' and '_', starting with a letter.
func ValidatePrefix(p string) error {
	if len(p) == 0 || len(p) > MaxPrefixLen {
		return fmt.Errorf("prefix %q must be 1 to %d characters", p, MaxPrefixLen)
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case 'a' <= c && c <= 'z':
		case i > 0 && ('0' <= c && c <= '9' || c == '-' || c == '_'):
		default:
			return fmt.Errorf("prefix %q must start with a lower-case letter and hold only a-z, 0-9, '-' and '_'", p)
		}
	}
	return nil
}

// Digest returns what keyctl stores in place of a token: its SHA-256, or its
// HMAC-SHA256 under pepper when one is configured.
func Digest(token string, pepper []byte) []byte {
	if len(pepper) == 0 {
		sum := sha256.Sum256([]byte(token))
		return sum[:]
	}
	m := hmac.New(sha256.New, pepper)
	m.Write([]byte(token))
	return m.Sum(nil)
}

// Equal compares two digests in constant time.
func Equal(a, b []byte) bool {
	return subtle.ConstantTimeCompare(a, b) == 1
}

// RandomID returns n random base62 characters, for public identifiers.
func RandomID(n int) (string, error) {
	return randomBase62(n)
}
