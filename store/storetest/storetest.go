// Package storetest is the conformance suite of store.Store: every
// guarantee the interface and its capabilities document, concurrency
// included, run against a backend by one call. A backend is correct when
// Run passes against it, unchanged.
package storetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/keys"
)

// Opener opens a new backing store whose clock is now and returns handles
// onto it: two for a backend that several processes or machines share (the
// concurrency tests then split their callers across both), or one and nil.
// The handles must be closed when t ends. The store may hold keys the suite
// did not make, such as a remote store's own token: the suite ignores them.
type Opener func(t *testing.T, now func() time.Time) (a, b store.Store)

// Flusher is a handle that records uses in the background (as a
// store.FastVerifier does): Flush returns once every use it took is written,
// so that a read through any handle sees it. The suite flushes every handle
// that has it before it reads usage.
type Flusher interface {
	Flush(ctx context.Context) error
}

// Epoch is the time every test's clock starts at.
var Epoch = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// Run runs every contract against stores open returns, each test on a new
// one.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(*H)
	}{
		{"Create", testCreate},
		{"CreateInvalid", testCreateInvalid},
		{"CreateNameInUse", testCreateNameInUse},
		{"GetAndNames", testGetAndNames},
		{"Find", testFind},
		{"List", testList},
		{"ListTimeFilters", testListTimeFilters},
		{"Update", testUpdate},
		{"UpdateErrors", testUpdateErrors},
		{"Rotate", testRotate},
		{"RotateGraceOverlap", testRotateGraceOverlap},
		{"DisableEnable", testDisableEnable},
		{"Revoke", testRevoke},
		{"VerifyCodes", testVerifyCodes},
		{"VerifyBoundaries", testVerifyBoundaries},
		{"VerifySpendsOnlyWhenValid", testVerifySpendsOnlyWhenValid},
		{"VerifyRecordsUse", testVerifyRecordsUse},
		{"Usage", testUsage},
		{"Audit", testAudit},
		{"AuditFilters", testAuditFilters},
		{"NoSecretShown", testNoSecretShown},
		{"BatchVerifier", testBatchVerifier},
		{"FastVerifier", testFastVerifier},
		{"FastVerifierSeesOtherHandles", testFastVerifierSeesOtherHandles},
		{"DenialRecorder", testDenialRecorder},
		{"Background", testBackground},
		{"Normalizes", testNormalizes},
		{"Authorization", testAuthorization},
		{"FindSecret", testFindSecret},
		{"SecretAsRef", testSecretAsRef},
		{"RevokeSecret", testRevokeSecret},
		{"UndoRotate", testUndoRotate},
		{"EndGrace", testEndGrace},
		{"Secrets", testSecrets},
		{"PagerKeys", testPagerKeys},
		{"PagerAudit", testPagerAudit},
		{"AuditCheckpoints", testAuditCheckpoints},

		// Concurrent callers, split across both handles.
		{"ConcurrentQuota", testConcurrentQuota},
		{"ConcurrentRateLimit", testConcurrentRateLimit},
		{"ConcurrentCreateOneName", testConcurrentCreateOneName},
		{"ConcurrentRenameOneName", testConcurrentRenameOneName},
		{"ConcurrentRotate", testConcurrentRotate},
		{"ConcurrentRevoke", testConcurrentRevoke},
		{"ConcurrentDisableEnable", testConcurrentDisableEnable},
		{"ConcurrentAuditChain", testConcurrentAuditChain},
		{"ConcurrentUsage", testConcurrentUsage},
		// An admin may not change a key that holds keyctl:* scopes, checked
		// in the change's own transaction, so that a rename racing a
		// rotation never escapes the check.
		{"AuthorizationInTransaction", testAuthorizationInTransaction},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := &Clock{t: Epoch}
			a, b := open(t, clock.Now)
			if b == nil {
				b = a
			}
			tc.fn(&H{T: t, A: a, B: b, Clock: clock, ctx: t.Context()})
		})
	}
}

// Clock is a test's clock, moved by hand.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// H is one test's store: two handles (the same one twice for a backend
// tested through one) and the clock.
type H struct {
	*testing.T
	A, B  store.Store
	Clock *Clock
	ctx   context.Context
}

// handle is the i-th caller's handle: callers alternate between the two.
func (h *H) handle(i int) store.Store {
	if i%2 == 0 {
		return h.A
	}
	return h.B
}

// create issues a production key with prefix sk unless p says otherwise.
func (h *H) create(p keys.CreateParams) (*keys.Key, string) {
	h.Helper()
	if p.Env == "" {
		p.Env = keys.Production
	}
	if p.Prefix == "" {
		p.Prefix = "sk"
	}
	k, secret, err := h.A.Create(h.ctx, p)
	if err != nil {
		h.Fatalf("create %q: %v", p.Name, err)
	}
	return k, secret
}

func (h *H) get(s store.Store, ref string) *keys.Key {
	h.Helper()
	k, err := s.Get(h.ctx, ref)
	if err != nil {
		h.Fatalf("get %q: %v", ref, err)
	}
	return k
}

// verify verifies req through s, which must decide.
func (h *H) verify(s store.Store, req keys.VerifyRequest) *keys.VerifyResult {
	h.Helper()
	res, err := s.Verify(h.ctx, req)
	if err != nil {
		h.Fatalf("verify: %v", err)
	}
	return res
}

// code verifies token at cost 1 through handle A and returns the result's
// code.
func (h *H) code(token string) keys.Code {
	h.Helper()
	return h.verify(h.A, keys.VerifyRequest{Token: token, Cost: 1}).Code
}

// settle writes out every use either handle took in the background.
func (h *H) settle() {
	h.Helper()
	for _, s := range []store.Store{h.A, h.B} {
		if f, ok := s.(Flusher); ok {
			if err := f.Flush(h.ctx); err != nil {
				h.Fatalf("flush: %v", err)
			}
		}
	}
}

// audit returns every audit entry.
func (h *H) audit(f keys.AuditFilter) []*keys.AuditEntry {
	h.Helper()
	entries, err := h.A.Audit(h.ctx, f)
	if err != nil {
		h.Fatalf("audit: %v", err)
	}
	return entries
}

// chainHolds checks that the audit chain verifies and has n entries.
func (h *H) chainHolds(s store.Store, n int) {
	h.Helper()
	check, err := s.VerifyAudit(h.ctx)
	if err != nil {
		h.Fatalf("verify audit: %v", err)
	}
	if !check.OK || check.Entries != int64(n) {
		h.Fatalf("audit chain: %+v, want ok with %d entries", check, n)
	}
}

// wantErr checks that err is target, the sentinel a store returns.
func (h *H) wantErr(what string, err, target error) {
	h.Helper()
	if !errors.Is(err, target) {
		h.Fatalf("%s: error %v, want %v", what, err, target)
	}
}

// parallel runs fn for each of n callers at once and waits for them.
func parallel(n int, fn func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			fn(i)
		})
	}
	close(start)
	wg.Wait()
}

func ptr[T any](v T) *T { return &v }
