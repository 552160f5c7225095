package keys

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Env is a key's environment.
type Env string

const (
	Production  Env = "production"
	Staging     Env = "staging"
	Development Env = "development"
)

// ParseEnv accepts an environment or one of its aliases.
func ParseEnv(s string) (Env, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "production", "prod":
		return Production, nil
	case "staging", "stage":
		return Staging, nil
	case "development", "dev":
		return Development, nil
	}
	return "", fmt.Errorf("%q is not an environment (production, staging, development; or prod, stage, dev)", Redact(s))
}

// Tag is the token tag of keys in env: live for production, test otherwise.
func (e Env) Tag() string {
	if e == Production {
		return "live"
	}
	return "test"
}

// Status is a key's state. Active, Disabled and Revoked are stored;
// Expired is derived from expires_at when keys are read.
type Status string

const (
	Active   Status = "active"
	Disabled Status = "disabled"
	Revoked  Status = "revoked"
	Expired  Status = "expired"
)

// ParseStatus accepts one of the four statuses.
func ParseStatus(s string) (Status, error) {
	switch st := Status(strings.ToLower(s)); st {
	case Active, Disabled, Revoked, Expired:
		return st, nil
	}
	return "", fmt.Errorf("%q is not a status (active, disabled, revoked, expired)", s)
}

// Key is everything keyctl knows about a key except its secret, which it
// never knows after issuing it. JSON field names are a documented contract.
type Key struct {
	ID             string            `json:"id"`
	Name           string            `json:"name"`
	Description    string            `json:"description"`
	Start          string            `json:"start"`
	Prefix         string            `json:"prefix"`
	Scopes         []string          `json:"scopes"`
	Env            Env               `json:"env"`
	Status         Status            `json:"status"`
	ExpiresAt      *time.Time        `json:"expires_at"`
	AllowedIPs     []string          `json:"allowed_ips"`
	Quota          *int64            `json:"quota"`
	QuotaRemaining *int64            `json:"quota_remaining"`
	RateLimit      *RateLimit        `json:"rate_limit"`
	Metadata       map[string]string `json:"metadata"`
	UsageCount     int64             `json:"usage_count"`
	LastUsedAt     *time.Time        `json:"last_used_at"`
	LastUsedIP     string            `json:"last_used_ip"`
	CreatedAt      time.Time         `json:"created_at"`
	CreatedBy      string            `json:"created_by"`
	UpdatedAt      time.Time         `json:"updated_at"`
	RotatedAt      *time.Time        `json:"rotated_at"`
	RevokedAt      *time.Time        `json:"revoked_at"`
	RevokeReason   string            `json:"revoke_reason"`

	// Stored is the status as stored, before expiry is derived: verify
	// reports a disabled key as disabled even once it has expired.
	Stored Status `json:"-"`
}

// Masked is the key's display start with an ellipsis, e.g. sk_live_AbCd1234….
func (k *Key) Masked() string { return k.Start + "…" }

// StatusAt is the key's status at now: an active or disabled key past its
// expiry is expired; a revoked key stays revoked.
func StatusAt(stored Status, expiresAt *time.Time, now time.Time) Status {
	if stored != Revoked && expiresAt != nil && !now.Before(*expiresAt) {
		return Expired
	}
	return stored
}

// RateLimit is N uses per unit of time.
type RateLimit struct {
	Count int64  `json:"count"`
	Unit  string `json:"unit"` // second, minute, hour or day
}

var rateUnits = map[string]string{
	"s": "second", "sec": "second", "second": "second",
	"m": "minute", "min": "minute", "minute": "minute",
	"h": "hour", "hour": "hour",
	"d": "day", "day": "day",
}

// MaxRateCount bounds a rate limit's N: at most one call a nanosecond.
const MaxRateCount = 1_000_000_000

// ParseRateLimit parses "100/s", "100/m", "100/h" or "100/d".
func ParseRateLimit(s string) (*RateLimit, error) {
	n, unit, ok := strings.Cut(strings.TrimSpace(s), "/")
	count, err := strconv.ParseInt(n, 10, 64)
	u, known := rateUnits[strings.ToLower(unit)]
	if !ok || err != nil || count < 1 || count > MaxRateCount || !known {
		return nil, fmt.Errorf("%q is not a rate limit (N/s, N/m, N/h or N/d, N from 1 to %d)", s, MaxRateCount)
	}
	return &RateLimit{Count: count, Unit: u}, nil
}

// Period is the length of the rate limit's window.
func (r RateLimit) Period() time.Duration {
	switch r.Unit {
	case "second":
		return time.Second
	case "minute":
		return time.Minute
	case "hour":
		return time.Hour
	}
	return 24 * time.Hour
}

func (r RateLimit) String() string { return fmt.Sprintf("%d/%s", r.Count, r.Unit[:1]) }

// ParseAllowedIP checks an IP address or CIDR (v4 or v6) and returns it in
// canonical form.
func ParseAllowedIP(s string) (string, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return "", fmt.Errorf("%q is not an IP address or CIDR", Redact(s))
		}
		return p.Masked().String(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return "", fmt.Errorf("%q is not an IP address or CIDR", Redact(s))
	}
	return a.Unmap().String(), nil
}

// ValidateName checks a key name: 1 to 64 letters, digits, '.', '-' or '_',
// starting with a letter or digit.
func ValidateName(s string) error {
	if len(s) == 0 || len(s) > MaxNameLen {
		return fmt.Errorf("name %q must be 1 to %d characters", Redact(s), MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '-' && c != '_') {
			return fmt.Errorf("name %q must start with a letter or digit and hold only letters, digits, '.', '-' and '_'", Redact(s))
		}
	}
	return nil
}

// ValidateScope checks a scope: 1 to 64 letters, digits, or ':._-/*',
// starting with a letter or digit.
func ValidateScope(s string) error {
	if len(s) == 0 || len(s) > 64 {
		return fmt.Errorf("scope %q must be 1 to 64 characters", Redact(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || !strings.ContainsRune(":._-/*", rune(c))) {
			return fmt.Errorf("scope %q must start with a letter or digit and hold only letters, digits and ':._-/*'", Redact(s))
		}
	}
	return nil
}

// NormalizeSet sorts and de-duplicates a set of strings.
func NormalizeSet(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	out = slices.Compact(out)
	if out == nil {
		out = []string{}
	}
	return out
}

// CreateParams are the settings of a new key. The zero value of each
// optional field means "not set".
type CreateParams struct {
	Name        string // generated when empty
	Description string
	Scopes      []string
	Env         Env
	Prefix      string
	ExpiresAt   *time.Time
	AllowedIPs  []string
	Quota       *int64
	RateLimit   *RateLimit
	Metadata    map[string]string
	CreatedBy   string // the acting user or key (ActorFrom) when empty
}

// UpdateParams are the changes to a key; nil or empty fields change nothing.
type UpdateParams struct {
	Name         *string
	Description  *string
	AddScopes    []string
	RemoveScopes []string
	// ExpiresAt sets the expiry; ClearExpiry removes it ("never").
	ExpiresAt   *time.Time
	ClearExpiry bool
	AddIPs      []string
	RemoveIPs   []string
	// Quota sets the remaining uses; ClearQuota makes them unlimited.
	Quota      *int64
	ClearQuota bool
	// RateLimit sets the rate limit; ClearRateLimit removes it.
	RateLimit      *RateLimit
	ClearRateLimit bool
	SetMeta        map[string]string
	RemoveMeta     []string
}

// Empty reports whether p changes nothing.
func (p UpdateParams) Empty() bool {
	return p.Name == nil && p.Description == nil && len(p.AddScopes) == 0 && len(p.RemoveScopes) == 0 &&
		p.ExpiresAt == nil && !p.ClearExpiry && len(p.AddIPs) == 0 && len(p.RemoveIPs) == 0 &&
		p.Quota == nil && !p.ClearQuota && p.RateLimit == nil && !p.ClearRateLimit &&
		len(p.SetMeta) == 0 && len(p.RemoveMeta) == 0
}

// ListFilter selects keys for List. Zero fields select everything, except
// that revoked keys are left out unless All is set or Status is Revoked.
type ListFilter struct {
	Env      Env
	Status   Status
	Scope    string
	All      bool
	Expiring time.Duration // expiring within this window (not yet expired)
	Unused   time.Duration // not used for at least this long
}

// Match reports whether k passes the filter at now.
func (f ListFilter) Match(k *Key, now time.Time) bool {
	if k.Status == Revoked && !f.All && f.Status != Revoked {
		return false
	}
	if f.Env != "" && k.Env != f.Env {
		return false
	}
	if f.Status != "" && k.Status != f.Status {
		return false
	}
	if f.Scope != "" && !slices.Contains(k.Scopes, f.Scope) {
		return false
	}
	if f.Expiring > 0 && (k.ExpiresAt == nil || !k.ExpiresAt.After(now) || k.ExpiresAt.After(now.Add(f.Expiring))) {
		return false
	}
	if f.Unused > 0 {
		since := now.Add(-f.Unused)
		last := k.CreatedAt
		if k.LastUsedAt != nil {
			last = *k.LastUsedAt
		}
		if last.After(since) {
			return false
		}
	}
	return true
}

// FormatDuration writes whole days as "30d" and anything else as Go does,
// without zero trailing units ("1h", not "1h0m0s").
func FormatDuration(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// Apply returns k with p's changes made; k itself is left as it was.
func (p UpdateParams) Apply(k *Key) Key {
	u := *k
	if p.Name != nil {
		u.Name = *p.Name
	}
	if p.Description != nil {
		u.Description = *p.Description
	}
	u.Scopes = NormalizeSet(slices.DeleteFunc(append(slices.Clone(k.Scopes), p.AddScopes...),
		func(s string) bool { return slices.Contains(p.RemoveScopes, s) }))
	u.AllowedIPs = NormalizeSet(slices.DeleteFunc(append(slices.Clone(k.AllowedIPs), p.AddIPs...),
		func(s string) bool { return slices.Contains(p.RemoveIPs, s) }))
	switch {
	case p.ClearExpiry:
		u.ExpiresAt = nil
	case p.ExpiresAt != nil:
		u.ExpiresAt = p.ExpiresAt
	}
	switch {
	case p.ClearQuota:
		u.Quota, u.QuotaRemaining = nil, nil
	case p.Quota != nil:
		u.Quota, u.QuotaRemaining = p.Quota, p.Quota
	}
	switch {
	case p.ClearRateLimit:
		u.RateLimit = nil
	case p.RateLimit != nil:
		u.RateLimit = p.RateLimit
	}
	u.Metadata = maps.Clone(k.Metadata)
	if u.Metadata == nil {
		u.Metadata = map[string]string{}
	}
	maps.Copy(u.Metadata, p.SetMeta)
	for _, m := range p.RemoveMeta {
		delete(u.Metadata, m)
	}
	return u
}
