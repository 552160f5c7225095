package sqlite

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/keyctl/keyctl/store/chain"
)

// The pepper lives outside the database, so a database records only a
// fingerprint of it, from which nothing can be learned that the pepper
// does not already tell: PBKDF2-SHA256 of the pepper under a random salt
// (pepperIterations rounds, so that a weak pepper is slow to guess from
// it), and an HMAC of a constant under that. Every open compares the
// configured pepper with it, so that a wrong pepper is said at once rather
// than making every key NOT_FOUND. The same derived root keys the audit
// chain from the moment the database has a pepper (auditKeyedFrom).

// ErrPepper: the configured pepper is not the one the database was made
// with (or there is one, and the database has none, or the other way).
var ErrPepper = errors.New("wrong pepper")

// pepperIterations is PBKDF2's cost: about 8 ms per process that opens a
// database with a pepper.
const pepperIterations = 50_000

// Rows of the meta table.
const (
	metaPepper     = "pepper"           // "none", or pbkdf2-sha256$ITER$SALT$FINGERPRINT
	metaKeyedFrom  = "audit_keyed_from" // SEQ$MAC: the first audit entry keyed with the pepper
	pepperNone     = "none"
	pepperSchemeV1 = "pbkdf2-sha256"
)

// pepperRoot derives the root secret of a pepper under salt.
func pepperRoot(pepper, salt []byte, iterations int) ([]byte, error) {
	return pbkdf2.Key(sha256.New, string(pepper), salt, iterations, 32)
}

func derive(root []byte, label string) []byte {
	m := hmac.New(sha256.New, root)
	m.Write([]byte(label))
	return m.Sum(nil)
}

func b64(b []byte) string { return base64.RawStdEncoding.EncodeToString(b) }

// checkPepper compares the configured pepper with the database's record of
// its own, records it when there is none yet (see recordPepper), and
// derives the audit chain's key.
func (s *SQLite) checkPepper(ctx context.Context) error {
	rec, err := s.meta(ctx, s.db, metaPepper)
	if err != nil {
		return err
	}
	if rec == "" {
		return s.firstPepper(ctx)
	}
	has := len(s.pepper) > 0
	switch {
	case rec == pepperNone && has:
		return s.pepperErr("the database %s was made without a pepper, and one is configured (KEYCTL_PEPPER or pepper in the config file): every key would be NOT_FOUND", s.path)
	case rec == pepperNone:
		return nil
	case !has:
		return s.pepperErr("the database %s was made with a pepper, and none is configured: every key would be NOT_FOUND", s.path)
	}
	parts := strings.Split(rec, "$")
	iter, _ := strconv.Atoi(safeIndex(parts, 1))
	salt, serr := base64.RawStdEncoding.DecodeString(safeIndex(parts, 2))
	if len(parts) != 4 || parts[0] != pepperSchemeV1 || iter < 1 || serr != nil {
		return fmt.Errorf("%w: the database %s holds a pepper fingerprint keyctl cannot read (%.40q)", ErrPepper, s.path, rec)
	}
	root, err := pepperRoot(s.pepper, salt, iter)
	if err != nil {
		return err
	}
	if !hmac.Equal([]byte(b64(derive(root, "fingerprint"))), []byte(parts[3])) {
		return s.pepperErr("the configured pepper is not the one the database %s was made with: every key would be NOT_FOUND", s.path)
	}
	s.auditKey = derive(root, "audit chain")
	return s.loadKeyedFrom(ctx)
}

func safeIndex(s []string, i int) string {
	if i < len(s) {
		return s[i]
	}
	return ""
}

func (s *SQLite) pepperErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrPepper, fmt.Sprintf(format, a...))
}

// loadKeyedFrom reads where the audit chain became keyed, and checks that
// the record was made with the pepper: it cannot be moved without it.
func (s *SQLite) loadKeyedFrom(ctx context.Context) error {
	rec, err := s.meta(ctx, s.db, metaKeyedFrom)
	if err != nil {
		return err
	}
	seq, mac, _ := strings.Cut(rec, "$")
	n, perr := strconv.ParseInt(seq, 10, 64)
	switch {
	case rec == "":
		s.keyedProblem = "the database's record of where its audit chain became keyed with the pepper is gone: it was removed behind keyctl's back"
	case perr != nil || n < 1 || !hmac.Equal([]byte(mac), []byte(chain.KeyedFromMAC(s.auditKey, n))):
		s.keyedProblem = "the database's record of where its audit chain became keyed with the pepper was changed behind keyctl's back"
	default:
		s.keyedFrom = n
	}
	return nil
}

// firstPepper handles a database without a record of its pepper: a new one,
// or one made before keyctl kept the record. When it holds no secret yet,
// the configured pepper is recorded at once (writable only). Otherwise the
// record waits until a secret is found with the configured pepper, which
// proves it the right one (recorded at Close): a wrong pepper on the first
// open must not lock the database out of the right one.
func (s *SQLite) firstPepper(ctx context.Context) error {
	if s.readOnly {
		return nil
	}
	var secrets int
	if err := s.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM secrets)`).Scan(&secrets); err != nil {
		return err
	}
	if secrets > 0 {
		s.pepperUnproven.Store(true)
		return nil
	}
	return s.recordPepper(ctx)
}

// recordPepper writes the configured pepper's fingerprint, and where the
// audit chain becomes keyed (the next entry), in one transaction, unless
// another process recorded them first.
func (s *SQLite) recordPepper(ctx context.Context) error {
	var root []byte
	rec := pepperNone
	if len(s.pepper) > 0 {
		salt := make([]byte, 16)
		if _, err := rand.Read(salt); err != nil {
			return err
		}
		var err error
		if root, err = pepperRoot(s.pepper, salt, pepperIterations); err != nil {
			return err
		}
		rec = strings.Join([]string{pepperSchemeV1, strconv.Itoa(pepperIterations), b64(salt), b64(derive(root, "fingerprint"))}, "$")
	}
	recorded := false
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if have, err := s.meta(ctx, tx, metaPepper); err != nil || have != "" {
			return err // recorded meanwhile: checked at the next open
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO meta (name, value) VALUES (?, ?)`, metaPepper, rec); err != nil {
			return err
		}
		recorded = true
		if root == nil {
			return nil
		}
		var head int64
		if err := tx.QueryRowContext(ctx, `SELECT coalesce((SELECT seq FROM audit_head WHERE id = 1), 0)`).Scan(&head); err != nil {
			return err
		}
		key := derive(root, "audit chain")
		_, err := tx.ExecContext(ctx, `INSERT INTO meta (name, value) VALUES (?, ?)`, metaKeyedFrom,
			strconv.FormatInt(head+1, 10)+"$"+chain.KeyedFromMAC(key, head+1))
		if err == nil {
			s.auditKey, s.keyedFrom = key, head+1
		}
		return err
	})
	if err == nil && !recorded {
		return s.checkPepper(ctx)
	}
	return err
}

// pepperProven notes that a secret was found with the configured pepper:
// the database's record of it, if it has none yet, can be written.
func (s *SQLite) pepperProven() {
	if s.pepperUnproven.Load() {
		s.pepperFound.Store(true)
	}
}

// meta reads one row of the meta table; "" when there is none.
func (s *SQLite) meta(ctx context.Context, q querier, name string) (string, error) {
	var v string
	err := q.QueryRowContext(ctx, `SELECT value FROM meta WHERE name = ?`, name).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return v, err
}
