package output

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/mattn/go-runewidth"
	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/renderer"
	"github.com/olekukonko/tablewriter/tw"
)

// TextTable is a plain, borderless table for people (gh style): a header line
// and one line a row, columns separated by two spaces. Every cell is
// escaped (Escape): stored text never reaches the terminal raw.
type TextTable struct {
	Header []string
	Rows   [][]string
	// Width, when not zero, is the terminal's: cells are cut short (…) so
	// that no line is wider, and rows never wrap. The Flex columns are cut
	// first, down to minFlex; then the widest of all, down to their header.
	Width int
	Flex  []int
	// Paint, when not nil, colours a cell once it is escaped and cut.
	Paint func(col int, cell string) string
}

const (
	colGap  = 2 // spaces between columns
	minFlex = 8 // a flexible column is not cut narrower first
)

// WriteTable writes a table of rows under header.
func WriteTable(w io.Writer, header []string, rows [][]string) error {
	return TextTable{Header: header, Rows: rows}.Write(w)
}

// Write writes the table to w.
func (t TextTable) Write(w io.Writer) error {
	header := escapeAll(t.Header)
	rows := make([][]string, len(t.Rows))
	for i, r := range t.Rows {
		rows[i] = escapeAll(r)
	}
	if t.Width > 0 {
		fit(header, rows, t.Width, t.Flex)
	}
	if t.Paint != nil {
		for _, r := range rows {
			for c := range r {
				r[c] = t.Paint(c, r[c])
			}
		}
	}
	var buf bytes.Buffer
	table := tablewriter.NewTable(&buf,
		tablewriter.WithRenderer(renderer.NewBlueprint(tw.Rendition{
			Borders: tw.BorderNone,
			Settings: tw.Settings{
				Separators: tw.Separators{BetweenColumns: tw.Off, BetweenRows: tw.Off},
				Lines:      tw.Lines{ShowHeaderLine: tw.Off},
			},
		})),
		tablewriter.WithHeaderAutoFormat(tw.Off),
		tablewriter.WithHeaderAlignment(tw.AlignLeft),
		tablewriter.WithRowAlignment(tw.AlignLeft),
		tablewriter.WithRowAutoWrap(tw.WrapNone),
		tablewriter.WithHeaderAutoWrap(tw.WrapNone),
		tablewriter.WithTrimSpace(tw.Off),
		tablewriter.WithPadding(tw.Padding{Right: strings.Repeat(" ", colGap), Overwrite: true}),
	)
	table.Header(header)
	if err := table.Bulk(rows); err != nil {
		return err
	}
	if err := table.Render(); err != nil {
		return err
	}
	for _, line := range strings.Split(strings.TrimRight(buf.String(), "\n"), "\n") {
		if _, err := fmt.Fprintln(w, strings.TrimRight(line, " ")); err != nil {
			return err
		}
	}
	return nil
}

func escapeAll(cells []string) []string {
	out := make([]string, len(cells))
	for i, c := range cells {
		out[i] = Escape(c)
	}
	return out
}

// fit cuts the cells of header and rows so that each line is at most width
// columns, the widest column first: the flex columns down to minFlex, then
// to their header's width, then any column, header included, down to 3. A
// table too wide even then is as narrow as it can be.
func fit(header []string, rows [][]string, width int, flex []int) {
	widths := make([]int, len(header))
	for c, h := range header {
		widths[c] = runewidth.StringWidth(h)
	}
	for _, r := range rows {
		for c, cell := range r {
			widths[c] = max(widths[c], runewidth.StringWidth(cell))
		}
	}
	total := colGap * (len(widths) - 1)
	for _, w := range widths {
		total += w
	}
	// Three passes: the flex columns down to minFlex, then down to their
	// header, then every column (headers too) down to 3.
	floor := func(c, pass int) int {
		head := max(3, runewidth.StringWidth(header[c]))
		switch {
		case pass == 0 && slices.Contains(flex, c):
			return max(minFlex, head)
		case pass == 1 && slices.Contains(flex, c):
			return head
		case pass == 2:
			return 3
		}
		return widths[c] // not cut in this pass
	}
	for pass := range 3 {
		for total > width {
			widest := -1
			for c := range widths {
				if widths[c] > floor(c, pass) && (widest < 0 || widths[c] > widths[widest]) {
					widest = c
				}
			}
			if widest < 0 {
				break
			}
			widths[widest]--
			total--
		}
	}
	for _, r := range append([][]string{header}, rows...) {
		for c := range r {
			if runewidth.StringWidth(r[c]) > widths[c] {
				r[c] = runewidth.Truncate(r[c], widths[c], "…")
			}
		}
	}
}
