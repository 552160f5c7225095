// Package api is the wire format of keyctl's HTTP API: the request and
// response bodies, the error codes and the admin scopes that the server and
// the remote store (store/remote) share. api/openapi.json documents it.
package api

import (
	"time"

	"github.com/keyctl/keyctl/store/keys"
)

// Version is the path prefix of every versioned route.
const Version = "/v1"

// Admin scopes: what a token may do through the API. owner ⊇ admin ⊇ read;
// verify allows only POST /v1/verify, which owner and admin may also call.
// store/keys defines them, and the rule that uses them (keys.Authorize).
const (
	ScopeOwner  = keys.ScopeOwner
	ScopeAdmin  = keys.ScopeAdmin
	ScopeRead   = keys.ScopeRead
	ScopeVerify = keys.ScopeVerify
	// ReservedScopePrefix marks the scopes only an owner may create or grant.
	ReservedScopePrefix = keys.ReservedScopePrefix
)

// Reserved reports whether scope is one of keyctl's own (keyctl:*).
func Reserved(scope string) bool { return keys.Reserved(scope) }

// Error codes: a documented contract. Each goes with one HTTP status.
const (
	CodeInvalidJSON      = "invalid_json"       // 400: not JSON, wrong types, or unknown fields
	CodeInvalidRequest   = "invalid_request"    // 400: a value the store cannot accept
	CodeUnauthorized     = "unauthorized"       // 401: no token, or not one that may be used
	CodeForbidden        = "forbidden"          // 403: the token lacks the scope, or its address is not allowed
	CodeNotFound         = "not_found"          // 404: no such key, or no such route
	CodeMethodNotAllowed = "method_not_allowed" // 405
	CodeConflict         = "conflict"           // 409: the name is in use by another key
	CodeRevoked          = "revoked"            // 409: the key is revoked and the change is refused
	CodeBodyTooLarge     = "body_too_large"     // 413: the body is over MaxBodyBytes
	CodeRateLimited      = "rate_limited"       // 429: the token is over its own rate limit
	CodeInternal         = "internal"           // 500
	CodeUnavailable      = "unavailable"        // 503: the server is shutting down, or its database is unavailable
)

// NoteHeader carries a note for the audit trail of an admin call, such as
// "leak response: found in app.env:3". It holds no secret.
const NoteHeader = "X-Keyctl-Note"

// NextCursorHeader carries the cursor of the next page of GET /v1/audit,
// when more entries may follow.
const NextCursorHeader = "X-Next-Cursor"

// MaxBodyBytes bounds every request body.
const MaxBodyBytes = 64 << 10

// Error is the body of every error response.
type Error struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail says what went wrong: a stable code and a message for people.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// CreateRequest is the body of POST /v1/keys. Env defaults to development
// and Prefix to "sk".
type CreateRequest struct {
	Name        string            `json:"name,omitempty"`
	Description string            `json:"description,omitempty"`
	Scopes      []string          `json:"scopes,omitempty"`
	Env         string            `json:"env,omitempty"`
	Prefix      string            `json:"prefix,omitempty"`
	ExpiresAt   *time.Time        `json:"expires_at,omitempty"`
	AllowedIPs  []string          `json:"allowed_ips,omitempty"`
	Quota       *int64            `json:"quota,omitempty"`
	RateLimit   *keys.RateLimit   `json:"rate_limit,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
}

// IssuedKey is a key with the secret it was just given: the response of
// create and rotate, the only ones that carry a secret.
type IssuedKey struct {
	*keys.Key
	Secret string `json:"secret"`
}

// UpdateRequest is the body of PATCH /v1/keys/{id}; absent fields change
// nothing. It mirrors keys.UpdateParams.
type UpdateRequest struct {
	Name             *string           `json:"name,omitempty"`
	Description      *string           `json:"description,omitempty"`
	AddScopes        []string          `json:"add_scopes,omitempty"`
	RemoveScopes     []string          `json:"remove_scopes,omitempty"`
	ExpiresAt        *time.Time        `json:"expires_at,omitempty"`
	ClearExpiry      bool              `json:"clear_expiry,omitempty"`
	AddAllowedIPs    []string          `json:"add_allowed_ips,omitempty"`
	RemoveAllowedIPs []string          `json:"remove_allowed_ips,omitempty"`
	Quota            *int64            `json:"quota,omitempty"`
	ClearQuota       bool              `json:"clear_quota,omitempty"`
	RateLimit        *keys.RateLimit   `json:"rate_limit,omitempty"`
	ClearRateLimit   bool              `json:"clear_rate_limit,omitempty"`
	SetMetadata      map[string]string `json:"set_metadata,omitempty"`
	RemoveMetadata   []string          `json:"remove_metadata,omitempty"`
}

// Params converts the request to the store's form.
func (u UpdateRequest) Params() keys.UpdateParams {
	return keys.UpdateParams{
		Name: u.Name, Description: u.Description, AddScopes: u.AddScopes, RemoveScopes: u.RemoveScopes,
		ExpiresAt: u.ExpiresAt, ClearExpiry: u.ClearExpiry, AddIPs: u.AddAllowedIPs, RemoveIPs: u.RemoveAllowedIPs,
		Quota: u.Quota, ClearQuota: u.ClearQuota, RateLimit: u.RateLimit, ClearRateLimit: u.ClearRateLimit,
		SetMeta: u.SetMetadata, RemoveMeta: u.RemoveMetadata,
	}
}

// UpdateFrom converts the store's form to the request.
func UpdateFrom(p keys.UpdateParams) UpdateRequest {
	return UpdateRequest{
		Name: p.Name, Description: p.Description, AddScopes: p.AddScopes, RemoveScopes: p.RemoveScopes,
		ExpiresAt: p.ExpiresAt, ClearExpiry: p.ClearExpiry, AddAllowedIPs: p.AddIPs, RemoveAllowedIPs: p.RemoveIPs,
		Quota: p.Quota, ClearQuota: p.ClearQuota, RateLimit: p.RateLimit, ClearRateLimit: p.ClearRateLimit,
		SetMetadata: p.SetMeta, RemoveMetadata: p.RemoveMeta,
	}
}

// RotateRequest is the optional body of POST /v1/keys/{id}/rotate: how many
// seconds the old secret keeps working (0, the default: it stops now).
type RotateRequest struct {
	GraceSeconds int64 `json:"grace_seconds,omitempty"`
}

// UndoRotateRequest is the body of POST /v1/keys/{id}/rotate/undo: the new
// secret of the rotation to undo, in a body and never in a URL.
type UndoRotateRequest struct {
	Secret string `json:"secret"`
}

// EndGraceResult is the response of POST /v1/keys/{id}/end-grace: the key,
// and how many old secrets stopped.
type EndGraceResult struct {
	Key   *keys.Key `json:"key"`
	Ended int       `json:"ended"`
}

// SecretList is the response of GET /v1/keys/{id}/secrets: the key's live
// secrets, never the secrets themselves.
type SecretList struct {
	Secrets []keys.SecretInfo `json:"secrets"`
}

// RevokeRequest is the optional body of POST /v1/keys/{id}/revoke.
type RevokeRequest struct {
	Reason string `json:"reason,omitempty"`
}

// KeyRequest carries a token in a body, never in a URL: POST
// /v1/keys/lookup.
type KeyRequest struct {
	Key string `json:"key"`
}

// FoundKey is the answer of POST /v1/keys/lookup: the key, and the state of
// the secret presented, which may differ from the key's (an old secret is
// dead once its grace has ended, while its key lives on).
type FoundKey struct {
	*keys.Key
	SecretState SecretState `json:"secret_state"`
}

// SecretState is a secret's own state: current, or old with the end of its
// grace.
type SecretState struct {
	Current bool       `json:"current"`
	EndsAt  *time.Time `json:"ends_at"`
}

// MaxCredentials bounds the secrets one POST /v1/credentials/revoke
// carries.
const MaxCredentials = 100

// CredentialsRequest is the body of POST /v1/credentials/revoke: secrets
// their holder wants dead. No token is needed: holding a secret is the
// authority to kill it.
type CredentialsRequest struct {
	Credentials []string `json:"credentials"`
	// Reason is kept as the revoked keys' reason; by default "revoked by
	// the holder of its secret".
	Reason string `json:"reason,omitempty"`
}

// Accepted is the answer of POST /v1/credentials/revoke, whatever was found:
// it tells nothing about any secret.
type Accepted struct {
	Status string `json:"status"`
}

// VerifyRequest is the body of POST /v1/verify. Cost defaults to 1; 0
// checks without spending quota.
type VerifyRequest struct {
	Key    string   `json:"key"`
	Scopes []string `json:"scopes,omitempty"`
	Env    string   `json:"env,omitempty"`
	IP     string   `json:"ip,omitempty"`
	Cost   *int64   `json:"cost,omitempty"`
}

// KeyList is one page of GET /v1/keys. NextCursor, when not empty, fetches
// the next page.
type KeyList struct {
	Keys       []*keys.Key `json:"keys"`
	NextCursor string      `json:"next_cursor,omitempty"`
}

// Health is the body of GET /healthz.
type Health struct {
	Status string `json:"status"`
}

// Readiness is the body of GET /readyz: "ok" (200), or "degraded" (503)
// with the reason, such as usage that cannot be written.
type Readiness struct {
	Status          string `json:"status"`
	Reason          string `json:"reason,omitempty"`
	UsesRecorded    int64  `json:"uses_recorded"`
	UsesNotRecorded int64  `json:"uses_not_recorded"`
}
