package output

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Escape makes stored text safe to show on a terminal, visibly: control
// characters (C0, DEL, C1) become Go escapes (\x1b, \n, \t), and so do the
// Unicode format characters that reorder or hide text (bidi overrides,
// zero-width characters) and the line and paragraph separators (\u202e,
// \u2028); a byte that is not UTF-8 becomes \xff. Everything else is left as
// it is, backslashes included. JSON and YAML output are never escaped: they
// carry values exactly.
func Escape(s string) string {
	i := strings.IndexFunc(s, needsEscape)
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.WriteString(s[:i])
	for len(s[i:]) > 0 {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x100 && needsEscape(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case needsEscape(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
		i += size
	}
	return b.String()
}

func needsEscape(r rune) bool {
	return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == utf8.RuneError ||
		r == '\u2028' || r == '\u2029' || unicode.Is(unicode.Cf, r)
}
