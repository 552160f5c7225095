package keys

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/keyctl/keyctl/apikey"
)

// Limits on every stored field, whoever sends it: a key costs bounded
// space, and so does every request.
const (
	MaxNameLen        = 64
	MaxDescriptionLen = 1024
	MaxScopes         = 64 // scopes per key
	MaxAllowedIPs     = 64 // addresses and ranges per key
	MaxMetadata       = 32 // metadata entries per key
	MaxMetaKeyLen     = 64
	MaxMetaValueLen   = 512
	MaxReason         = 512 // a revocation's reason
	MaxNote           = 512 // an audit note (X-Keyctl-Note)
	// MaxGrace bounds a rotation's grace period.
	MaxGrace = 100 * 365 * 24 * time.Hour
)

// CheckText checks a free-text field against its limit: at most max bytes
// of UTF-8.
func CheckText(field, s string, max int) error {
	switch {
	case len(s) > max:
		return fmt.Errorf("%w: %s is %d bytes, over the limit of %d", ErrInvalid, field, len(s), max)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalid, field)
	}
	return nil
}

// Normalize checks a new key's settings and returns them in the form they
// are stored in, exactly as the command line's flags would give them:
// environment aliases resolved, scopes and addresses sorted and in
// canonical form, the rate limit's unit spelled out, the expiry in whole
// seconds and in the future. Commands check their flags first and name
// them in errors; this guards every way in (the HTTP API above all).
func (p CreateParams) Normalize(now time.Time) (CreateParams, error) {
	var err error
	if p.Name != "" {
		if err := ValidateNewName(p.Name); err != nil {
			return p, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	if err := CheckText("description", p.Description, MaxDescriptionLen); err != nil {
		return p, err
	}
	if p.Env, err = ParseEnv(string(p.Env)); err != nil {
		return p, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := apikey.ValidatePrefix(p.Prefix); err != nil {
		return p, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if p.Scopes, err = normalizeScopes(p.Scopes); err != nil {
		return p, err
	}
	if p.AllowedIPs, err = normalizeIPs(p.AllowedIPs); err != nil {
		return p, err
	}
	if p.ExpiresAt, err = normalizeExpiry(p.ExpiresAt, now); err != nil {
		return p, err
	}
	if p.Quota != nil && *p.Quota < 0 {
		return p, fmt.Errorf("%w: quota %d is negative", ErrInvalid, *p.Quota)
	}
	if p.RateLimit, err = normalizeRate(p.RateLimit); err != nil {
		return p, err
	}
	if err := checkMeta(p.Metadata); err != nil {
		return p, err
	}
	p.Metadata = maps.Clone(p.Metadata)
	if p.Metadata == nil {
		p.Metadata = map[string]string{}
	}
	k := Key{Scopes: p.Scopes, AllowedIPs: p.AllowedIPs, Metadata: p.Metadata}
	return p, k.CheckLimits()
}

// Normalize checks the changes of an update and returns them in stored
// form, as CreateParams.Normalize does. The limits on the key as a whole
// (how many scopes, addresses, metadata) are checked on the key the update
// makes (Key.CheckLimits).
func (p UpdateParams) Normalize(now time.Time) (UpdateParams, error) {
	var err error
	if p.Name != nil {
		if err := ValidateNewName(*p.Name); err != nil {
			return p, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	if p.Description != nil {
		if err := CheckText("description", *p.Description, MaxDescriptionLen); err != nil {
			return p, err
		}
	}
	if p.AddScopes, err = normalizeScopes(p.AddScopes); err != nil {
		return p, err
	}
	if p.RemoveScopes, err = normalizeScopes(p.RemoveScopes); err != nil {
		return p, err
	}
	if p.AddIPs, err = normalizeIPs(p.AddIPs); err != nil {
		return p, err
	}
	if p.RemoveIPs, err = normalizeIPs(p.RemoveIPs); err != nil {
		return p, err
	}
	both := func(a, b string) error {
		return fmt.Errorf("%w: %s and %s go against each other", ErrInvalid, a, b)
	}
	switch {
	case p.ExpiresAt != nil && p.ClearExpiry:
		return p, both("an expiry", "clearing it")
	case p.Quota != nil && p.ClearQuota:
		return p, both("a quota", "clearing it")
	case p.RateLimit != nil && p.ClearRateLimit:
		return p, both("a rate limit", "clearing it")
	}
	if p.ExpiresAt, err = normalizeExpiry(p.ExpiresAt, now); err != nil {
		return p, err
	}
	if p.Quota != nil && *p.Quota < 0 {
		return p, fmt.Errorf("%w: quota %d is negative", ErrInvalid, *p.Quota)
	}
	if p.RateLimit, err = normalizeRate(p.RateLimit); err != nil {
		return p, err
	}
	return p, checkMeta(p.SetMeta)
}

var idShape = regexp.MustCompile(`^key_[0-9A-Za-z]{16}$`)

// ValidateNewName checks a name given to a key: ValidateName, and besides
// it may not look like a key id (a KEY argument would be ambiguous) nor
// like a secret, which never belongs in a name. The error does not repeat a
// name that looks like a secret.
func ValidateNewName(s string) error {
	if LooksLikeToken(s) {
		return errors.New("the name looks like a secret key, and a secret is never a name (it is not repeated here)")
	}
	if err := ValidateName(s); err != nil {
		return err
	}
	if idShape.MatchString(s) {
		return fmt.Errorf("name %q looks like a key id: a KEY argument would be ambiguous", s)
	}
	return nil
}

// CheckLimits checks the limits on a key as a whole.
func (k *Key) CheckLimits() error {
	over := func(what string, n, max int) error {
		return fmt.Errorf("%w: a key holds at most %d %s, and this one would hold %d", ErrInvalid, max, what, n)
	}
	switch {
	case len(k.Scopes) > MaxScopes:
		return over("scopes", len(k.Scopes), MaxScopes)
	case len(k.AllowedIPs) > MaxAllowedIPs:
		return over("allowed addresses", len(k.AllowedIPs), MaxAllowedIPs)
	case len(k.Metadata) > MaxMetadata:
		return over("metadata entries", len(k.Metadata), MaxMetadata)
	}
	return nil
}

func normalizeScopes(scopes []string) ([]string, error) {
	for _, s := range scopes {
		if err := ValidateScope(s); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	return NormalizeSet(scopes), nil
}

func normalizeIPs(ips []string) ([]string, error) {
	out := make([]string, 0, len(ips))
	for _, ip := range ips {
		c, err := ParseAllowedIP(ip)
		if err != nil {
			return nil, fmt.Errorf("%w: allowed address: %w", ErrInvalid, err)
		}
		out = append(out, c)
	}
	return NormalizeSet(out), nil
}

// normalizeExpiry keeps whole seconds (what is stored) and requires the
// expiry to be in the future.
func normalizeExpiry(t *time.Time, now time.Time) (*time.Time, error) {
	if t == nil {
		return nil, nil
	}
	at := t.UTC().Truncate(time.Second)
	if !at.After(now) {
		return nil, fmt.Errorf("%w: expiry %s is not in the future", ErrInvalid, at.Format(time.RFC3339))
	}
	return &at, nil
}

func normalizeRate(r *RateLimit) (*RateLimit, error) {
	if r == nil {
		return nil, nil
	}
	n, err := ParseRateLimit(fmt.Sprintf("%d/%s", r.Count, r.Unit))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return n, nil
}

func checkMeta(meta map[string]string) error {
	if len(meta) > MaxMetadata {
		return fmt.Errorf("%w: a key holds at most %d metadata entries, and %d were given", ErrInvalid, MaxMetadata, len(meta))
	}
	for k, v := range meta {
		if k == "" || strings.ContainsAny(k, "=\n") {
			return fmt.Errorf("%w: metadata key %q must be non-empty and hold no '=' or newline", ErrInvalid, k)
		}
		if err := CheckText("metadata key "+fmt.Sprintf("%.20q", k), k, MaxMetaKeyLen); err != nil {
			return err
		}
		if strings.Contains(v, "\n") {
			return fmt.Errorf("%w: metadata value of %q holds a newline", ErrInvalid, k)
		}
		if err := CheckText(fmt.Sprintf("metadata value of %.20q", k), v, MaxMetaValueLen); err != nil {
			return err
		}
	}
	return nil
}
