package keys

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/keyctl/keyctl/apikey"
)

// Validate checks a new key's settings. Commands check their flags first and
// name them in errors; this guards every other way in (the HTTP API).
func (p CreateParams) Validate() error {
	if p.Name != "" {
		if err := ValidateNewName(p.Name); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	if _, err := ParseEnv(string(p.Env)); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := apikey.ValidatePrefix(p.Prefix); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return validateCommon(p.Scopes, p.AllowedIPs, p.Quota, p.RateLimit, p.Metadata)
}

// Validate checks the changes of an update.
func (p UpdateParams) Validate() error {
	if p.Name != nil {
		if err := ValidateNewName(*p.Name); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	return validateCommon(p.AddScopes, p.AddIPs, p.Quota, p.RateLimit, p.SetMeta)
}

var (
	idShape    = regexp.MustCompile(`^key_[0-9A-Za-z]{16}$`)
	tokenShape = regexp.MustCompile(`_(live|test)_[0-9A-Za-z]{32,}`)
)

// ValidateNewName checks a name given to a key: ValidateName, and besides
// it may not look like a key id (a KEY argument would be ambiguous) nor
// like a secret, which never belongs in a name. The error does not repeat a
// name that looks like a secret.
func ValidateNewName(s string) error {
	if tokenShape.MatchString(s) {
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

func validateCommon(scopes, ips []string, quota *int64, rate *RateLimit, meta map[string]string) error {
	for _, s := range scopes {
		if err := ValidateScope(s); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	for _, ip := range ips {
		if c, err := ParseAllowedIP(ip); err != nil || c != ip {
			return fmt.Errorf("%w: allowed address %q is not a canonical IP address or CIDR", ErrInvalid, ip)
		}
	}
	if quota != nil && *quota < 0 {
		return fmt.Errorf("%w: quota %d is negative", ErrInvalid, *quota)
	}
	if rate != nil {
		if _, err := ParseRateLimit(fmt.Sprintf("%d/%s", rate.Count, rate.Unit)); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	for k := range meta {
		if k == "" || strings.ContainsAny(k, "=\n") {
			return fmt.Errorf("%w: metadata key %q must be non-empty and hold no '=' or newline", ErrInvalid, k)
		}
	}
	return nil
}
