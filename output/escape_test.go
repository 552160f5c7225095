package output

import "testing"

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"":                  "",
		"billing service":   "billing service",
		`C:\keys\a`:         `C:\keys\a`,
		"\x1b[2Jgone":       `\x1b[2Jgone`,
		"\x1b]0;title\x07":  `\x1b]0;title\x07`,
		"a\nb\tc\rd":        `a\nb\tc\rd`,
		"nul\x00del\x7f":    `nul\x00del\x7f`,
		"c1\u009bcsi":       `c1\x9bcsi`,
		"bidi\u202egnp.exe": `bidi\u202egnp.exe`,
		"zero\u200bwidth":   `zero\u200bwidth`,
		"line\u2028sep":     `line\u2028sep`,
		"bad\xffutf8":       `bad\xffutf8`,
		"héllo wörld ✓ 鍵":   "héllo wörld ✓ 鍵",
		"sk_live_AbCd1234…": "sk_live_AbCd1234…",
	} {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
}
