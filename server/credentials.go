package server

import (
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/keyctl/keyctl/api"
	"github.com/keyctl/keyctl/apikey"
	"github.com/keyctl/keyctl/store/decide"
	"github.com/keyctl/keyctl/store/keys"
)

// credentialsRate bounds POST /v1/credentials/revoke per client address:
// it needs no token, so the address is all there is to count by.
var credentialsRate = keys.RateLimit{Count: 10, Unit: "minute"}

// revokeCredentials kills the secrets a holder presents, as GitHub's
// credential revocation API does: whoever holds a secret may kill it,
// without a management token. Each current secret revokes its key; an old
// secret still in its grace stops working, its key's current secret staying
// healthy. The answer is 202 whatever was found, so that it tells nothing.
func (s *Server) revokeCredentials(w http.ResponseWriter, r *http.Request) {
	ip := clientIP(r)
	if retry, ok := s.holders.allow(ip, s.now()); !ok {
		e := errorf(http.StatusTooManyRequests, api.CodeRateLimited,
			"at most %s credential revocations from one address; the next is allowed at %s",
			credentialsRate, retry.UTC().Format(time.RFC3339))
		e.retryAfter = max(1, int(retry.Sub(s.now()).Seconds()+0.999))
		s.fail(w, r, e)
		return
	}
	var req api.CredentialsRequest
	if err := decode(w, r, &req, false); err != nil {
		s.fail(w, r, err)
		return
	}
	if n := len(req.Credentials); n == 0 || n > api.MaxCredentials {
		s.fail(w, r, errorf(http.StatusBadRequest, api.CodeInvalidRequest,
			"credentials holds %d secrets: from 1 to %d", n, api.MaxCredentials))
		return
	}
	note := r.Header.Get(api.NoteHeader)
	if err := keys.CheckText(api.NoteHeader, note, keys.MaxNote); err != nil {
		s.fail(w, r, err)
		return
	}
	if note == "" {
		note = "revoked by its holder through " + r.Pattern
	}
	if err := keys.CheckText("reason", req.Reason, keys.MaxReason); err != nil {
		s.fail(w, r, err)
		return
	}
	// Anyone may send this text: it is kept with control characters
	// escaped, as a note is.
	reason := keys.Escape(req.Reason, keys.MaxReason)
	if reason == "" {
		reason = "revoked by the holder of its secret"
	}
	ctx := keys.WithActor(r.Context(), keys.Actor{Kind: keys.ActorHolder, Name: "holder of the secret", Address: addrString(ip)})
	ctx = keys.WithNote(ctx, note)
	for _, tok := range req.Credentials {
		if _, err := apikey.Parse(tok); err != nil {
			continue // not a secret of any keyctl store: nothing to do
		}
		if _, err := s.store.RevokeSecret(ctx, tok, reason); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	writeJSON(w, http.StatusAccepted, api.Accepted{Status: "accepted"})
}

// holderLimits is the rate limiter of credential revocations, by client
// address, in memory: GCRA's theoretical arrival time per address.
type holderLimits struct {
	mu  sync.Mutex
	tat map[netip.Addr]int64
}

// maxHolders bounds the addresses remembered; past it, those whose limit
// has fully recovered are forgotten.
const maxHolders = 10000

func (h *holderLimits) allow(ip netip.Addr, now time.Time) (time.Time, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.tat == nil {
		h.tat = map[netip.Addr]int64{}
	}
	if len(h.tat) >= maxHolders {
		for a, t := range h.tat {
			if t <= now.UnixNano() {
				delete(h.tat, a)
			}
		}
		if len(h.tat) >= maxHolders {
			// Every address remembered is still limited: refuse new
			// ones until some recover, rather than grow without bound.
			return now.Add(credentialsRate.Period() / time.Duration(credentialsRate.Count)), false
		}
	}
	tat, retry, ok := decide.GCRA(h.tat[ip], now, credentialsRate)
	if ok {
		h.tat[ip] = tat
	}
	return retry, ok
}
