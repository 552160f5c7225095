package output

import (
	"bytes"
	"strings"
	"testing"

	"github.com/mattn/go-runewidth"
)

// A table given a width never has a wider line: flexible columns are cut
// first, then any; cells are cut with an ellipsis, never wrapped.
func TestTableFitsWidth(t *testing.T) {
	rows := [][]string{
		{"a-very-long-name-indeed", "key_AAAAAAAAAAAAAAAA", "one,two,three,four,five", "active"},
		{"鍵の名前はとても長い", "key_BBBBBBBBBBBBBBBB", "sdk", "revoked"},
	}
	header := []string{"NAME", "ID", "SCOPES", "STATUS"}
	for _, width := range []int{200, 70, 50, 30, 20} {
		var buf bytes.Buffer
		if err := (TextTable{Header: header, Rows: rows, Width: width, Flex: []int{0, 2}}).Write(&buf); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
		if len(lines) != 3 {
			t.Fatalf("width %d: %d lines, want 3:\n%s", width, len(lines), &buf)
		}
		for _, l := range lines {
			if w := runewidth.StringWidth(l); w > width {
				t.Errorf("width %d: a line of %d columns: %q", width, w, l)
			}
		}
		out := buf.String()
		switch {
		case width == 200 && !strings.Contains(out, "a-very-long-name-indeed  key_AAAAAAAAAAAAAAAA  one,two,three,four,five"):
			t.Errorf("width 200 cut a cell:\n%s", out)
		case width == 70 && (!strings.Contains(out, "key_AAAAAAAAAAAAAAAA") || !strings.Contains(out, "…")):
			t.Errorf("width 70 should cut names and scopes, not ids:\n%s", out)
		}
	}
}

func TestTableEscapesCells(t *testing.T) {
	var buf bytes.Buffer
	err := (TextTable{Header: []string{"NAME"}, Rows: [][]string{{"x\x1b[2J\ny"}},
		Paint: func(_ int, c string) string { return "<" + c + ">" }}).Write(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := buf.String(), "NAME\n<x\\x1b[2J\\ny>\n"; got != want {
		t.Errorf("table %q, want %q", got, want)
	}
}
