// Package pepper is what a database records of the pepper it was made with,
// and what is derived from the pepper: the record reveals nothing the pepper
// does not already tell, and lets every open say at once that a configured
// pepper is not the database's, rather than answer NOT_FOUND for every key.
// The same derivation keys the audit chain (store/chain's SchemeHMAC). Each
// backend stores the records; this package only computes them.
package pepper

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/keyctl/keyctl/store/chain"
	"github.com/keyctl/keyctl/store/keys"
)

// A record is "none" for a database made without a pepper, else
// pbkdf2-sha256$ITER$SALT$FINGERPRINT: PBKDF2-SHA256 of the pepper under a
// random salt (Iterations rounds, so that a weak pepper is slow to guess from
// it), and an HMAC of a constant under that root.
const (
	None     = "none"
	schemeV1 = "pbkdf2-sha256"
)

// Iterations is PBKDF2's cost: about 8 ms per process that opens a database
// with a pepper.
const Iterations = 50_000

func root(pepper, salt []byte, iterations int) ([]byte, error) {
	return pbkdf2.Key(sha256.New, string(pepper), salt, iterations, 32)
}

func derive(root []byte, label string) []byte {
	m := hmac.New(sha256.New, root)
	m.Write([]byte(label))
	return m.Sum(nil)
}

func b64(b []byte) string { return base64.RawStdEncoding.EncodeToString(b) }

// New returns the record of pepper under a new salt ("none" when pepper is
// empty) and the audit chain's key derived from it (nil without a pepper).
func New(pepper []byte) (record string, auditKey []byte, err error) {
	if len(pepper) == 0 {
		return None, nil, nil
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", nil, err
	}
	r, err := root(pepper, salt, Iterations)
	if err != nil {
		return "", nil, err
	}
	record = strings.Join([]string{schemeV1, strconv.Itoa(Iterations), b64(salt), b64(derive(r, "fingerprint"))}, "$")
	return record, derive(r, "audit chain"), nil
}

// Check compares the configured pepper with a database's record of its own,
// and returns the audit chain's key (nil without a pepper). where names the
// database in errors, which wrap keys.ErrPepper.
func Check(record string, pepper []byte, where string) (auditKey []byte, err error) {
	has := len(pepper) > 0
	switch {
	case record == None && has:
		return nil, mismatch("%s was made without a pepper, and one is configured (KEYCTL_PEPPER or pepper in the config file): every key would be NOT_FOUND", where)
	case record == None:
		return nil, nil
	case !has:
		return nil, mismatch("%s was made with a pepper, and none is configured: every key would be NOT_FOUND", where)
	}
	parts := strings.Split(record, "$")
	iter, _ := strconv.Atoi(index(parts, 1))
	salt, serr := base64.RawStdEncoding.DecodeString(index(parts, 2))
	if len(parts) != 4 || parts[0] != schemeV1 || iter < 1 || serr != nil {
		return nil, fmt.Errorf("%w: %s holds a pepper fingerprint keyctl cannot read (%.40q)", keys.ErrPepper, where, record)
	}
	r, err := root(pepper, salt, iter)
	if err != nil {
		return nil, err
	}
	if !hmac.Equal([]byte(b64(derive(r, "fingerprint"))), []byte(parts[3])) {
		return nil, mismatch("the configured pepper is not the one %s was made with: every key would be NOT_FOUND", where)
	}
	return derive(r, "audit chain"), nil
}

func mismatch(format string, a ...any) error {
	return fmt.Errorf("%w: %s", keys.ErrPepper, fmt.Sprintf(format, a...))
}

func index(s []string, i int) string {
	if i < len(s) {
		return s[i]
	}
	return ""
}

// KeyedFrom is the record of the first audit entry keyed with the pepper,
// SEQ$MAC: authenticated with the chain's key, so that it cannot be moved
// without the pepper.
func KeyedFrom(key []byte, seq int64) string {
	return strconv.FormatInt(seq, 10) + "$" + chain.KeyedFromMAC(key, seq)
}

// ParseKeyedFrom reads a KeyedFrom record with the chain's key: the first
// keyed entry, or why the record cannot be trusted ("" when it can).
func ParseKeyedFrom(key []byte, record string) (seq int64, problem string) {
	s, mac, _ := strings.Cut(record, "$")
	n, err := strconv.ParseInt(s, 10, 64)
	switch {
	case record == "":
		return 0, "the database's record of where its audit chain became keyed with the pepper is gone: it was removed behind keyctl's back"
	case err != nil || n < 1 || !hmac.Equal([]byte(mac), []byte(chain.KeyedFromMAC(key, n))):
		return 0, "the database's record of where its audit chain became keyed with the pepper was changed behind keyctl's back"
	}
	return n, ""
}
