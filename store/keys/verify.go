package keys

import (
	"net/netip"
	"time"
)

// Code is the outcome of a verification. Codes, their exit statuses and
// HTTP statuses are a documented contract.
type Code string

const (
	Valid         Code = "VALID"
	Malformed     Code = "MALFORMED"
	NotFound      Code = "NOT_FOUND"
	CodeRevoked   Code = "REVOKED"
	CodeDisabled  Code = "DISABLED"
	CodeExpired   Code = "EXPIRED"
	Forbidden     Code = "FORBIDDEN"
	RateLimited   Code = "RATE_LIMITED"
	QuotaExceeded Code = "QUOTA_EXCEEDED"
)

// Codes lists every code in check order.
var Codes = []Code{Valid, Malformed, NotFound, CodeRevoked, CodeDisabled, CodeExpired, Forbidden, RateLimited, QuotaExceeded}

// HTTPStatus is the status a service would answer its client with.
func (c Code) HTTPStatus() int {
	switch c {
	case Valid:
		return 200
	case Forbidden:
		return 403
	case RateLimited:
		return 429
	case QuotaExceeded:
		return 402
	}
	return 401
}

// VerifyRequest is one question: may this key be used, for these scopes, in
// this environment, from this address, at this cost?
type VerifyRequest struct {
	Token  string
	Scopes []string   // every one must be held
	Env    Env        // "" accepts any environment
	IP     netip.Addr // the zero Addr when the caller gave none
	Cost   int64      // quota units to spend; 0 checks without spending
}

// VerifyResult is the answer. Key is nil for MALFORMED and NOT_FOUND.
type VerifyResult struct {
	Valid      bool       `json:"valid"`
	Code       Code       `json:"code"`
	Reason     string     `json:"reason"`
	HTTPStatus int        `json:"http_status"`
	RetryAt    *time.Time `json:"retry_at,omitempty"` // RATE_LIMITED: when the next call is allowed
	Key        *Key       `json:"key"`
}

// NewResult builds a result with its derived fields filled in.
func NewResult(code Code, reason string, k *Key) *VerifyResult {
	return &VerifyResult{Valid: code == Valid, Code: code, Reason: reason, HTTPStatus: code.HTTPStatus(), Key: k}
}

// MalformedResult is the answer for input that is not a keyctl key.
func MalformedResult() *VerifyResult {
	return NewResult(Malformed, "not a keyctl key, or its checksum does not hold", nil)
}

// NotFoundResult is the answer for a well-formed key no one has.
func NotFoundResult() *VerifyResult {
	return NewResult(NotFound, "no key has this secret", nil)
}

// UsageEvent is one recorded verification of a key.
type UsageEvent struct {
	At   time.Time `json:"at"`
	Code Code      `json:"code"`
	IP   string    `json:"ip"`
}

// DailyUsage counts a key's verifications on one UTC day.
type DailyUsage struct {
	Day   string         `json:"day"` // YYYY-MM-DD
	Total int64          `json:"total"`
	Codes map[Code]int64 `json:"codes"`
}

// UsageQuery selects the history to report.
type UsageQuery struct {
	Since time.Time // zero: everything kept
	Limit int       // most recent events to list; 0: a default of 50
}

// UsageReport is a key's recent verifications and its counts per day.
type UsageReport struct {
	Key       *Key         `json:"key"`
	Retention string       `json:"retention"` // how long history is kept
	Events    []UsageEvent `json:"events"`
	Daily     []DailyUsage `json:"daily"`
}
