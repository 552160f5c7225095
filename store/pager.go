package store

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"

	"github.com/keyctl/keyctl/store/keys"
)

// PagerOf returns st's own Pager, or, for a backend without one, a Pager
// that reads every key or entry for each page: correct, not bounded.
func PagerOf(st Store) Pager {
	if p, ok := st.(Pager); ok {
		return p
	}
	return slowPager{st}
}

type slowPager struct{ st Store }

func (p slowPager) ListPage(ctx context.Context, f keys.ListFilter, cursor string, limit int) ([]*keys.Key, string, error) {
	all, err := p.st.List(ctx, f)
	if err != nil {
		return nil, "", err
	}
	start, err := offset(cursor, len(all))
	if err != nil {
		return nil, "", err
	}
	return pageOf(all, start, limit)
}

func (p slowPager) AuditPage(ctx context.Context, f keys.AuditFilter, cursor string, limit int) ([]*keys.AuditEntry, string, error) {
	all, err := p.st.Audit(ctx, f)
	if err != nil {
		return nil, "", err
	}
	if f.Limit == 0 {
		start, err := offset(cursor, len(all))
		if err != nil {
			return nil, "", err
		}
		return pageOf(all, start, limit)
	}
	// Backward: the cursor counts the entries already handed out, from the
	// newest.
	done, err := offset(cursor, len(all))
	if err != nil {
		return nil, "", err
	}
	end := len(all) - done
	start := max(0, end-limit)
	next := ""
	if start > 0 {
		next = encodeOffset(len(all) - start)
	}
	return all[start:end], next, nil
}

func pageOf[T any](all []T, start, limit int) ([]T, string, error) {
	end := min(len(all), start+limit)
	next := ""
	if end < len(all) {
		next = encodeOffset(end)
	}
	return all[start:end], next, nil
}

func encodeOffset(n int) string {
	return base64.RawURLEncoding.EncodeToString([]byte("o" + strconv.Itoa(n)))
}

func offset(cursor string, n int) (int, error) {
	if cursor == "" {
		return 0, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err == nil && len(b) > 1 && b[0] == 'o' {
		if i, err := strconv.Atoi(string(b[1:])); err == nil && i >= 0 && i <= n {
			return i, nil
		}
	}
	return 0, fmt.Errorf("%w: cursor %q is not one this store gave", keys.ErrInvalid, cursor)
}
