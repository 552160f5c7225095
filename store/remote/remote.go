// Package remote is the Store that talks to a keyctl server (keyctl serve)
// over HTTP: the same interface as the local SQLite store, so that every
// command works against either without knowing which it holds.
package remote

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/keyctl/keyctl/api"
	"github.com/keyctl/keyctl/apikey"
	"github.com/keyctl/keyctl/store/keys"
)

// ErrUnauthorized: the server refused the token (401), or the token may not
// do what was asked (403, 429). Commands exit 1 on it.
var ErrUnauthorized = errors.New("the server refused the token")

// Client is a Store backed by a keyctl server.
type Client struct {
	base      *url.URL
	token     string
	hc        *http.Client
	pageSize  int
	plainHTTP bool
}

// Option changes how New connects.
type Option func(*Client)

// AllowPlainHTTP lets New talk plain http:// to an address that is not
// loopback, for a network its user trusts. Without it, New refuses: the
// token would cross the network in clear text.
func AllowPlainHTTP(c *Client) { c.plainHTTP = true }

// New returns a client of the server at serverURL (https, or http on a
// loopback address) that authenticates with token (none: only the calls
// that need none work). hc is the HTTP client to use; nil makes one.
func New(serverURL, token string, hc *http.Client, opts ...Option) (*Client, error) {
	u, err := url.Parse(strings.TrimSuffix(serverURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: server %q is not an http:// or https:// URL", keys.ErrInvalid, serverURL)
	}
	if hc == nil {
		hc = &http.Client{Timeout: time.Minute}
	}
	// A redirect could carry the token elsewhere; the API never redirects.
	c := *hc
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	cl := &Client{base: u, token: token, hc: &c, pageSize: 1000}
	for _, o := range opts {
		o(cl)
	}
	if u.Scheme == "http" && !loopback(u.Hostname()) && !cl.plainHTTP {
		return nil, fmt.Errorf("%w: server %s is plain http:// to an address that is not loopback: the token would cross the network in clear text; use https://, or allow it deliberately with --allow-http (KEYCTL_ALLOW_HTTP=1)",
			keys.ErrInvalid, u.Redacted())
	}
	return cl, nil
}

// loopback reports whether host is this machine: localhost or a loopback
// address. A name is not resolved: only these are trusted.
func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// Close lets go of idle connections.
func (c *Client) Close() error {
	c.hc.CloseIdleConnections()
	return nil
}

// Error is a response the server refused a request with.
type Error struct {
	Status  int
	Code    string
	Message string
	kind    error
}

func (e *Error) Error() string {
	if errors.Is(e.kind, ErrUnauthorized) {
		return fmt.Sprintf("%s: %s", ErrUnauthorized, e.Message)
	}
	return e.Message
}

// Unwrap is the store error the response stands for, so that commands
// choose the same exit status as for the local store.
func (e *Error) Unwrap() error { return e.kind }

// kindOf maps an API error to the store's errors.
func kindOf(status int, code string) error {
	switch {
	case code == api.CodeNotFound && status == http.StatusNotFound:
		return keys.ErrNotFound
	case code == api.CodeRevoked:
		return keys.ErrRevoked
	case code == api.CodeConflict:
		return keys.ErrConflict
	case code == api.CodeInvalidRequest, code == api.CodeInvalidJSON, code == api.CodeBodyTooLarge:
		return keys.ErrInvalid
	case status == http.StatusForbidden && code == api.CodeForbidden:
		// A refusal of the token's authority, or of a change the store
		// would not let it make: keys.ErrForbidden either way.
		return errors.Join(ErrUnauthorized, keys.ErrForbidden)
	case status == http.StatusUnauthorized, status == http.StatusForbidden, status == http.StatusTooManyRequests:
		return ErrUnauthorized
	}
	return nil
}

// do sends a request with body in (JSON; nil for none) and decodes a
// successful response into out.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	_, err := c.doHeader(ctx, method, path, query, in, out)
	return err
}

// doHeader is do, returning the response's header.
func (c *Client) doHeader(ctx context.Context, method, path string, query url.Values, in, out any) (http.Header, error) {
	u := *c.base
	u.Path += path
	u.RawQuery = query.Encode()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("Accept", "application/json")
	if note := keys.NoteFrom(ctx); note != "" {
		req.Header.Set(api.NoteHeader, strings.Map(printable, note))
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("server %s: %w", c.base.Redacted(), err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("server %s: reading the response: %w", c.base.Redacted(), err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			return nil, fmt.Errorf("server %s: %s %s: the response is not what keyctl expects: %w", c.base.Redacted(), method, path, err)
		}
		return resp.Header, nil
	}
	var e api.Error
	if json.Unmarshal(data, &e) != nil || e.Error.Code == "" {
		return nil, fmt.Errorf("server %s: %s %s: %s", c.base.Redacted(), method, path, resp.Status)
	}
	return nil, &Error{Status: resp.StatusCode, Code: e.Error.Code, Message: e.Error.Message, kind: kindOf(resp.StatusCode, e.Error.Code)}
}

// keyPath is the path of the key ref names. A ref that cannot be a name or
// an id names no key, as it would locally; it never reaches a URL. Nor does
// a secret given as a ref: its key is found by POST /v1/keys/lookup, with
// the secret in the body, and named by its id.
func (c *Client) keyPath(ctx context.Context, ref string, rest string) (string, error) {
	if keys.LooksLikeToken(ref) {
		k, _, err := c.FindSecret(ctx, ref)
		if err != nil {
			return "", err
		}
		ref = k.ID
	}
	if keys.ValidateName(ref) != nil {
		return "", fmt.Errorf("key %q %w", keys.Redact(ref), keys.ErrNotFound)
	}
	return api.Version + "/keys/" + url.PathEscape(ref) + rest, nil
}

// Create issues a key on the server.
func (c *Client) Create(ctx context.Context, p keys.CreateParams) (*keys.Key, string, error) {
	req := api.CreateRequest{
		Name: p.Name, Description: p.Description, Scopes: p.Scopes, Env: string(p.Env), Prefix: p.Prefix,
		ExpiresAt: p.ExpiresAt, AllowedIPs: p.AllowedIPs, Quota: p.Quota, RateLimit: p.RateLimit, Metadata: p.Metadata,
	}
	var out api.IssuedKey
	if err := c.do(ctx, http.MethodPost, api.Version+"/keys", nil, req, &out); err != nil {
		return nil, "", err
	}
	return out.Key, out.Secret, nil
}

// Get resolves ref, an id or a name.
func (c *Client) Get(ctx context.Context, ref string) (*keys.Key, error) {
	return c.keyCall(ctx, http.MethodGet, ref, "", nil)
}

func (c *Client) keyCall(ctx context.Context, method, ref, rest string, in any) (*keys.Key, error) {
	path, err := c.keyPath(ctx, ref, rest)
	if err != nil {
		return nil, err
	}
	var k keys.Key
	if err := c.do(ctx, method, path, nil, in, &k); err != nil {
		return nil, err
	}
	return &k, nil
}

// List returns every key that matches f, fetching page after page.
func (c *Client) List(ctx context.Context, f keys.ListFilter) ([]*keys.Key, error) {
	all := []*keys.Key{}
	cursor := ""
	for {
		page, next, err := c.ListPage(ctx, f, cursor, c.pageSize)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if next == "" {
			return all, nil
		}
		cursor = next
	}
}

// ListPage returns one page of the keys that match f (GET /v1/keys).
func (c *Client) ListPage(ctx context.Context, f keys.ListFilter, cursor string, limit int) ([]*keys.Key, string, error) {
	q := url.Values{}
	if f.Env != "" {
		q.Set("env", string(f.Env))
	}
	if f.Status != "" {
		q.Set("status", string(f.Status))
	}
	if f.Scope != "" {
		q.Set("scope", f.Scope)
	}
	if f.All {
		q.Set("all", "true")
	}
	if f.Expiring > 0 {
		q.Set("expiring", strconv.FormatInt(int64((f.Expiring+time.Second-1)/time.Second), 10))
	}
	if f.Unused > 0 {
		q.Set("unused", strconv.FormatInt(int64((f.Unused+time.Second-1)/time.Second), 10))
	}
	q.Set("limit", strconv.Itoa(min(limit, maxPage)))
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	var page api.KeyList
	if err := c.do(ctx, http.MethodGet, api.Version+"/keys", q, nil, &page); err != nil {
		return nil, "", err
	}
	return page.Keys, page.NextCursor, nil
}

// maxPage is the largest page the server answers.
const maxPage = 1000

// Update changes a key's settings.
func (c *Client) Update(ctx context.Context, ref string, p keys.UpdateParams) (*keys.Key, error) {
	return c.keyCall(ctx, http.MethodPatch, ref, "", api.UpdateFrom(p))
}

// Rotate gives a key a new secret; the old one works for grace more (whole
// seconds).
func (c *Client) Rotate(ctx context.Context, ref string, grace time.Duration) (*keys.Key, string, error) {
	path, err := c.keyPath(ctx, ref, "/rotate")
	if err != nil {
		return nil, "", err
	}
	var out api.IssuedKey
	if err := c.do(ctx, http.MethodPost, path, nil, api.RotateRequest{GraceSeconds: int64(grace / time.Second)}, &out); err != nil {
		return nil, "", err
	}
	return out.Key, out.Secret, nil
}

// SetDisabled disables or enables a key.
func (c *Client) SetDisabled(ctx context.Context, ref string, disabled bool) (*keys.Key, error) {
	rest := "/enable"
	if disabled {
		rest = "/disable"
	}
	return c.keyCall(ctx, http.MethodPost, ref, rest, struct{}{})
}

// Revoke revokes a key for good.
func (c *Client) Revoke(ctx context.Context, ref, reason string) (*keys.Key, error) {
	return c.keyCall(ctx, http.MethodPost, ref, "/revoke", api.RevokeRequest{Reason: reason})
}

// UndoRotate asks the server to undo the rotation that issued secret. The
// secret travels in the body, never in a URL.
func (c *Client) UndoRotate(ctx context.Context, ref, secret string) (*keys.Key, error) {
	return c.keyCall(ctx, http.MethodPost, ref, "/rotate/undo", api.UndoRotateRequest{Secret: secret})
}

// EndGrace ends the grace of a key's old secrets now.
func (c *Client) EndGrace(ctx context.Context, ref string) (*keys.Key, int, error) {
	path, err := c.keyPath(ctx, ref, "/end-grace")
	if err != nil {
		return nil, 0, err
	}
	var out api.EndGraceResult
	if err := c.do(ctx, http.MethodPost, path, nil, struct{}{}, &out); err != nil {
		return nil, 0, err
	}
	return out.Key, out.Ended, nil
}

// Secrets lists a key's live secrets.
func (c *Client) Secrets(ctx context.Context, ref string) ([]keys.SecretInfo, error) {
	path, err := c.keyPath(ctx, ref, "/secrets")
	if err != nil {
		return nil, err
	}
	var out api.SecretList
	if err := c.do(ctx, http.MethodGet, path, nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Secrets, nil
}

// Verify asks the server whether a key may be used; the server records the
// use.
func (c *Client) Verify(ctx context.Context, req keys.VerifyRequest) (*keys.VerifyResult, error) {
	in := api.VerifyRequest{Key: req.Token, Scopes: req.Scopes, Env: string(req.Env), Cost: &req.Cost}
	if req.IP.IsValid() {
		in.IP = req.IP.String()
	}
	var out keys.VerifyResult
	if err := c.do(ctx, http.MethodPost, api.Version+"/verify", nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Find returns the key a token belongs to. The token travels in the body,
// never in a URL.
func (c *Client) Find(ctx context.Context, token string) (*keys.Key, error) {
	k, _, err := c.FindSecret(ctx, token)
	return k, err
}

// FindSecret returns the key a token belongs to, and the secret's own
// state.
func (c *Client) FindSecret(ctx context.Context, token string) (*keys.Key, keys.SecretState, error) {
	var out api.FoundKey
	if err := c.do(ctx, http.MethodPost, api.Version+"/keys/lookup", nil, api.KeyRequest{Key: token}, &out); err != nil {
		return nil, keys.SecretState{}, err
	}
	if out.Key == nil {
		return nil, keys.SecretState{}, fmt.Errorf("server %s: the lookup answered no key", c.base.Redacted())
	}
	return out.Key, keys.SecretState{Current: out.SecretState.Current, EndsAt: out.SecretState.EndsAt}, nil
}

// RevokeSecret hands a secret to the server's credential revocation
// (POST /v1/credentials/revoke), which needs no token and tells nothing of
// what it found: the outcome is SecretAccepted.
func (c *Client) RevokeSecret(ctx context.Context, token, reason string) (*keys.SecretRevocation, error) {
	tok, err := apikey.Parse(token)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", keys.ErrInvalid, err)
	}
	var out api.Accepted
	if err := c.do(ctx, http.MethodPost, api.Version+"/credentials/revoke", nil,
		api.CredentialsRequest{Credentials: []string{token}, Reason: reason}, &out); err != nil {
		return nil, err
	}
	return &keys.SecretRevocation{Outcome: keys.SecretAccepted, Start: tok.Start()}, nil
}

// Usage reports a key's recent verifications and counts per day.
func (c *Client) Usage(ctx context.Context, ref string, uq keys.UsageQuery) (*keys.UsageReport, error) {
	path, err := c.keyPath(ctx, ref, "/usage")
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	if !uq.Since.IsZero() {
		q.Set("since", uq.Since.UTC().Format(time.RFC3339Nano))
	}
	if uq.Limit > 0 {
		q.Set("limit", strconv.Itoa(uq.Limit))
	}
	var rep keys.UsageReport
	if err := c.do(ctx, http.MethodGet, path, q, nil, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

// printable keeps a header value to printable ASCII.
func printable(r rune) rune {
	if r < ' ' || r > '~' {
		return '?'
	}
	return r
}

// Audit returns the server's audit entries that match f, oldest first,
// fetching page after page: forward from the first, or, for the f.Limit
// most recent, backward from the last.
func (c *Client) Audit(ctx context.Context, f keys.AuditFilter) ([]*keys.AuditEntry, error) {
	all := []*keys.AuditEntry{}
	cursor := ""
	for {
		limit := c.pageSize
		if f.Limit > 0 {
			limit = f.Limit - len(all)
		}
		page, next, err := c.AuditPage(ctx, f, cursor, limit)
		if err != nil {
			return nil, err
		}
		if f.Limit > 0 {
			all = append(page, all...)
		} else {
			all = append(all, page...)
		}
		if next == "" || f.Limit > 0 && len(all) >= f.Limit {
			return all, nil
		}
		cursor = next
	}
}

// AuditPage returns one page of the audit entries that match f (GET
// /v1/audit; the next cursor comes in the X-Next-Cursor header).
func (c *Client) AuditPage(ctx context.Context, f keys.AuditFilter, cursor string, limit int) ([]*keys.AuditEntry, string, error) {
	q := url.Values{}
	for k, v := range map[string]string{"key": f.Key, "action": f.Action, "actor": f.Actor, "cursor": cursor} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if !f.Since.IsZero() {
		q.Set("since", f.Since.UTC().Format(time.RFC3339Nano))
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(min(limit, maxPage)))
	}
	var out []*keys.AuditEntry
	h, err := c.doHeader(ctx, http.MethodGet, api.Version+"/audit", q, nil, &out)
	if err != nil {
		return nil, "", err
	}
	return out, h.Get(api.NextCursorHeader), nil
}

// VerifyAudit has the server walk its audit chain, and check the
// checkpoints given.
func (c *Client) VerifyAudit(ctx context.Context, checkpoints ...keys.Checkpoint) (*keys.AuditCheck, error) {
	q := url.Values{}
	for _, cp := range checkpoints {
		q.Add("head", cp.String())
	}
	var check keys.AuditCheck
	if err := c.do(ctx, http.MethodGet, api.Version+"/audit/verify", q, nil, &check); err != nil {
		return nil, err
	}
	return &check, nil
}
