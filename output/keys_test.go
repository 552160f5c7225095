package output

import (
	"strings"
	"testing"
	"time"

	"github.com/keyctl/keyctl/store/keys"
)

func testKeys(now time.Time) []*keys.Key {
	exp := now.Add(72 * time.Hour)
	used := now.Add(-90 * time.Minute)
	return []*keys.Key{
		{Name: "billing", ID: "key_AAAAAAAAAAAAAAAA", Start: "sk_live_AbCd1234", Scopes: []string{"proxy", "sdk"},
			Env: keys.Production, Status: keys.Active, ExpiresAt: &exp, LastUsedAt: &used, CreatedAt: now.Add(-72 * time.Hour)},
		{Name: "old", ID: "key_BBBBBBBBBBBBBBBB", Start: "sk_test_ZyXw9876", Env: keys.Development,
			Status: keys.Revoked, CreatedAt: now.Add(-400 * 24 * time.Hour)},
	}
}

// Tables for scripts: RFC 3339 times, no colour; for people: relative times
// and a coloured status.
func TestKeyTable(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	io, _, out, _ := Test()
	if err := KeyTable(io, testKeys(now), now); err != nil {
		t.Fatal(err)
	}
	want := `NAME     ID                    KEY                SCOPES     ENV          STATUS   EXPIRES               LAST USED             CREATED
billing  key_AAAAAAAAAAAAAAAA  sk_live_AbCd1234…  proxy,sdk  production   active   2026-11-25T12:00:00Z  2026-11-22T10:30:00Z  2026-11-19T12:00:00Z
old      key_BBBBBBBBBBBBBBBB  sk_test_ZyXw9876…  -          development  revoked  never                 never                 2025-10-18T12:00:00Z
`
	if out.String() != want {
		t.Errorf("pipe table:\n%s\nwant:\n%s", out, want)
	}

	io, _, out, _ = Test()
	io.SetStdoutTTY(true)
	io.SetColor(true)
	if err := KeyTable(io, testKeys(now), now); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, s := range []string{"in 3 days", "1 hour ago", "3 days ago", "1 year ago", "\x1b[32mactive\x1b[0m", "\x1b[31mrevoked\x1b[0m"} {
		if !strings.Contains(got, s) {
			t.Errorf("terminal table lacks %q:\n%s", s, got)
		}
	}
	if strings.Contains(got, "2026-") {
		t.Errorf("terminal table shows an RFC 3339 time:\n%s", got)
	}
}

func TestRelative(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	for d, want := range map[time.Duration]string{
		0: "just now", -30 * time.Second: "30 seconds ago", -time.Minute: "1 minute ago",
		2 * time.Hour: "in 2 hours", -25 * time.Hour: "1 day ago", 45 * 24 * time.Hour: "in 2 months",
		-800 * 24 * time.Hour: "2 years ago",
	} {
		if got := Relative(now.Add(d), now); got != want {
			t.Errorf("Relative(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestWriteYAMLMatchesJSONFields(t *testing.T) {
	io, _, out, _ := Test()
	v := map[string]any{"name": "x", "expires_at": nil, "scopes": []string{}, "n": "123"}
	if err := WriteYAML(io.Out, v); err != nil {
		t.Fatal(err)
	}
	want := "expires_at: null\nn: \"123\"\nname: x\nscopes: []\n"
	if out.String() != want {
		t.Errorf("YAML:\n%s\nwant:\n%s", out, want)
	}
}
