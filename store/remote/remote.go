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
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/keyctl/keyctl/api"
	"github.com/keyctl/keyctl/store/keys"
)

// ErrUnauthorized: the server refused the token (401), or the token may not
// do what was asked (403, 429). Commands exit 1 on it.
var ErrUnauthorized = errors.New("the server refused the token")

// Client is a Store backed by a keyctl server.
type Client struct {
	base     *url.URL
	token    string
	hc       *http.Client
	pageSize int
}

// New returns a client of the server at serverURL (http or https) that
// authenticates with token. hc is the HTTP client to use; nil makes one.
func New(serverURL, token string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(strings.TrimSuffix(serverURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: server %q is not an http:// or https:// URL", keys.ErrInvalid, serverURL)
	}
	if token == "" {
		return nil, fmt.Errorf("no token for server %s", u.Redacted())
	}
	if hc == nil {
		hc = &http.Client{Timeout: time.Minute}
	}
	// A redirect could carry the token elsewhere; the API never redirects.
	c := *hc
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Client{base: u, token: token, hc: &c, pageSize: 1000}, nil
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
	case status == http.StatusUnauthorized, status == http.StatusForbidden, status == http.StatusTooManyRequests:
		return ErrUnauthorized
	}
	return nil
}

// do sends a request with body in (JSON; nil for none) and decodes a
// successful response into out.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	u := *c.base
	u.Path += path
	u.RawQuery = query.Encode()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
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
		return fmt.Errorf("server %s: %w", c.base.Redacted(), err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("server %s: reading the response: %w", c.base.Redacted(), err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("server %s: %s %s: the response is not what keyctl expects: %w", c.base.Redacted(), method, path, err)
		}
		return nil
	}
	var e api.Error
	if json.Unmarshal(data, &e) != nil || e.Error.Code == "" {
		return fmt.Errorf("server %s: %s %s: %s", c.base.Redacted(), method, path, resp.Status)
	}
	return &Error{Status: resp.StatusCode, Code: e.Error.Code, Message: e.Error.Message, kind: kindOf(resp.StatusCode, e.Error.Code)}
}

// keyPath is the path of the key ref names. A ref that cannot be a name or
// an id names no key, as it would locally; it never reaches a URL.
func keyPath(ref string, rest string) (string, error) {
	if keys.ValidateName(ref) != nil {
		return "", fmt.Errorf("key %q %w", ref, keys.ErrNotFound)
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
	path, err := keyPath(ref, rest)
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
	q.Set("limit", strconv.Itoa(c.pageSize))
	keys := []*keys.Key{}
	for {
		var page api.KeyList
		if err := c.do(ctx, http.MethodGet, api.Version+"/keys", q, nil, &page); err != nil {
			return nil, err
		}
		keys = append(keys, page.Keys...)
		if page.NextCursor == "" {
			return keys, nil
		}
		q.Set("cursor", page.NextCursor)
	}
}

// Update changes a key's settings.
func (c *Client) Update(ctx context.Context, ref string, p keys.UpdateParams) (*keys.Key, error) {
	return c.keyCall(ctx, http.MethodPatch, ref, "", api.UpdateFrom(p))
}

// Rotate gives a key a new secret; the old one works for grace more (whole
// seconds).
func (c *Client) Rotate(ctx context.Context, ref string, grace time.Duration) (*keys.Key, string, error) {
	path, err := keyPath(ref, "/rotate")
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
	path, err := keyPath(ref, "/end-grace")
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
	path, err := keyPath(ref, "/secrets")
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
	var k keys.Key
	if err := c.do(ctx, http.MethodPost, api.Version+"/keys/lookup", nil, api.KeyRequest{Key: token}, &k); err != nil {
		return nil, err
	}
	return &k, nil
}

// Usage reports a key's recent verifications and counts per day.
func (c *Client) Usage(ctx context.Context, ref string, uq keys.UsageQuery) (*keys.UsageReport, error) {
	path, err := keyPath(ref, "/usage")
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

// Audit returns the server's audit entries that match f, oldest first.
func (c *Client) Audit(ctx context.Context, f keys.AuditFilter) ([]*keys.AuditEntry, error) {
	q := url.Values{}
	for k, v := range map[string]string{"key": f.Key, "action": f.Action, "actor": f.Actor} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if !f.Since.IsZero() {
		q.Set("since", f.Since.UTC().Format(time.RFC3339Nano))
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	var out []*keys.AuditEntry
	if err := c.do(ctx, http.MethodGet, api.Version+"/audit", q, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// VerifyAudit has the server walk its audit chain.
func (c *Client) VerifyAudit(ctx context.Context) (*keys.AuditCheck, error) {
	var check keys.AuditCheck
	if err := c.do(ctx, http.MethodGet, api.Version+"/audit/verify", nil, nil, &check); err != nil {
		return nil, err
	}
	return &check, nil
}
