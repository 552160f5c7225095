package keys

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// LooksLikeToken reports whether s has the shape of a secret: a prefix,
// _live_ or _test_, and a long base62 body. Such a string, given where a
// name or an id was expected, is a secret pasted in the wrong place: it is
// never shown whole, nor sent in a URL.
func LooksLikeToken(s string) bool {
	_, ok := tokenStart(s)
	return ok
}

// tokenStart returns the display start of a token-shaped s.
func tokenStart(s string) (string, bool) {
	for _, tag := range []string{"_live_", "_test_"} {
		i := strings.Index(s, tag)
		if i <= 0 {
			continue
		}
		body := s[i+len(tag):]
		n := 0
		for n < len(body) && isBase62(body[n]) {
			n++
		}
		if n >= 20 {
			return s[:i+len(tag)+8], true
		}
	}
	return "", false
}

func isBase62(c byte) bool {
	return '0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z'
}

// Redact returns ref as it may be shown: a token-shaped ref is cut to its
// display start, e.g. sk_live_AbCd1234…; anything else is unchanged.
func Redact(ref string) string {
	if start, ok := tokenStart(ref); ok {
		return start + "…"
	}
	return ref
}

// Escape makes text that a caller controls safe to store and show: control
// characters (newlines, escape sequences, and the like) are written as Go
// escapes (\n, \x1b), invalid UTF-8 as \ufffd, and the result is cut to at
// most limit bytes, ending with "…" when cut. A token-shaped word is reduced
// to its display start.
func Escape(s string, limit int) string {
	var b strings.Builder
	for i, w := 0, 0; i < len(s); i += w {
		var r rune
		r, w = utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && w == 1:
			b.WriteString(`\ufffd`)
		case r == '\\':
			b.WriteString(`\\`)
		case unicode.IsControl(r) || r == '\u2028' || r == '\u2029':
			q := fmt.Sprintf("%+q", string(r))
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteRune(r)
		}
	}
	out := b.String()
	if LooksLikeToken(out) {
		words := strings.Fields(out)
		for _, w := range words {
			if LooksLikeToken(w) {
				out = strings.ReplaceAll(out, w, Redact(w))
			}
		}
	}
	if len(out) <= limit {
		return out
	}
	cut := limit - len("…")
	for cut > 0 && !utf8.RuneStart(out[cut]) {
		cut--
	}
	return out[:max(cut, 0)] + "…"
}
