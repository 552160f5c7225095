package scan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keyctl/keyctl/apikey"
)

func token(t testing.TB, prefix, tag string) string {
	t.Helper()
	tok, err := apikey.New(prefix, tag)
	if err != nil {
		t.Fatal(err)
	}
	return tok.String()
}

func findAll(t testing.TB, text string) []Finding {
	t.Helper()
	var out []Finding
	if _, err := Reader(strings.NewReader(text), "in", func(f Finding) { out = append(out, f) }); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestReaderFindsOnlyValidTokens(t *testing.T) {
	live := token(t, "sk", "live")
	test := token(t, "my_app", "test")
	dash := token(t, "pk-x", "live")
	// The same token with its last checksum character changed.
	last := byte('A')
	if live[len(live)-1] == last {
		last = 'B'
	}
	broken := live[:len(live)-1] + string(last)
	text := strings.Join([]string{
		"# config",
		"API_KEY=" + live,
		"prose about sk_live_ keys and sk_test_ ones is never reported",
		`{"key": "` + test + `", "other": "` + broken + `"}`,
		"wordy" + live + " glued to a word is not a token, nor is " + live + "X",
		"  export KEY='" + dash + "'",
	}, "\n")
	got := findAll(t, text)
	want := []Finding{
		{Path: "in", Line: 2, Column: 9, Token: live},
		{Path: "in", Line: 4, Column: 10, Token: test},
		{Path: "in", Line: 6, Column: 15, Token: dash},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("found %+v\nwant  %+v", got, want)
	}
	if m := got[0].Masked(); m != live[:16]+"…" {
		t.Errorf("Masked() = %q", m)
	}
}

// A key must be found wherever it falls relative to the reader's chunks.
func TestReaderChunkEdges(t *testing.T) {
	tok := token(t, "sk", "test")
	for _, at := range []int{0, 1, chunkSize - 100, chunkSize - len(tok) - 1, chunkSize - len(tok), chunkSize - 30,
		chunkSize - 1, chunkSize, chunkSize + 1, 2*chunkSize - 60, 3*chunkSize + 7} {
		var b bytes.Buffer
		lines := 0
		for b.Len() < at {
			b.WriteString(strings.Repeat("x", 79)[:min(79, at-b.Len())])
			if b.Len() < at {
				b.WriteByte('\n')
				lines++
			}
		}
		col := at - (bytes.LastIndexByte(b.Bytes(), '\n') + 1) + 1
		// Keep a boundary before the token.
		if b.Len() > 0 && b.Bytes()[b.Len()-1] == 'x' {
			b.Bytes()[b.Len()-1] = ' '
		}
		b.WriteString(tok)
		b.WriteString("\ntrailing text\n")
		got := findAll(t, b.String())
		if len(got) != 1 || got[0].Token != tok || got[0].Line != lines+1 || got[0].Column != col {
			t.Errorf("token at %d: found %+v, want line %d column %d", at, got, lines+1, col)
		}
	}
}

func TestPathsSkipsGitBinaryAndLargeFiles(t *testing.T) {
	dir := t.TempDir()
	tok := token(t, "sk", "live")
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	write("app/config.env", []byte("KEY="+tok+"\n"))
	write(".git/config", []byte(tok))
	blob := write("bin/blob", append([]byte{0, 1, 2}, tok...))
	big := write("big.txt", append(bytes.Repeat([]byte("a\n"), 600), tok...))
	var got []string
	collect := func(f Finding) {
		got = append(got, fmt.Sprintf("%s:%d", strings.TrimPrefix(f.Path, dir+"/"), f.Line))
	}
	st, err := Paths(context.Background(), []string{dir}, Options{MaxSize: 1000}, collect)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"app/config.env:1"}) {
		t.Errorf("found %v", got)
	}
	if st.Files != 1 || st.SkippedBin != 1 || len(st.Skipped) != 1 || st.Skipped[0].Path != big ||
		!strings.Contains(st.Skipped[0].Reason, "larger than --max-size") {
		t.Errorf("stats %+v", st)
	}

	// Named explicitly, a large or binary file is read whole.
	got = nil
	st, err = Paths(context.Background(), []string{big, blob}, Options{MaxSize: 1000}, collect)
	if err != nil || len(st.Skipped) != 0 || st.Files != 2 || st.SkippedBin != 0 {
		t.Fatalf("explicit files: %+v, %v", st, err)
	}
	if !slices.Equal(got, []string{"big.txt:601", "bin/blob:1"}) {
		t.Errorf("found %v", got)
	}
}

// A file that cannot be read is a Skip, with its reason, and the scan goes
// on with the rest.
func TestPathsListsWhatItCannotRead(t *testing.T) {
	dir := t.TempDir()
	tok := token(t, "sk", "test")
	ok := filepath.Join(dir, "ok.txt")
	if err := os.WriteFile(ok, []byte(tok), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.txt")
	paths := []string{missing, ok}
	if _, err := os.Stat("/proc/self/mem"); err == nil {
		paths = append(paths, "/proc/self/mem") // reading it at offset 0 fails
	}
	n := 0
	st, err := Paths(context.Background(), paths, Options{}, func(Finding) { n++ })
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 || len(st.Skipped) != len(paths)-1 {
		t.Fatalf("found %d, skipped %+v", n, st.Skipped)
	}
	if st.Skipped[0].Path != missing || !strings.Contains(st.Skipped[0].Reason, "no such file") {
		t.Errorf("skip %+v", st.Skipped[0])
	}
	if len(st.Skipped) > 1 && !strings.Contains(st.Skipped[1].Reason, "read error") {
		t.Errorf("skip %+v", st.Skipped[1])
	}
	if os.Geteuid() != 0 {
		locked := filepath.Join(dir, "locked.txt")
		if err := os.WriteFile(locked, []byte(tok), 0o000); err != nil {
			t.Fatal(err)
		}
		st, _ := Paths(context.Background(), []string{dir}, Options{}, func(Finding) {})
		if len(st.Skipped) != 1 || st.Skipped[0].Path != locked {
			t.Errorf("an unreadable file in a tree: %+v", st.Skipped)
		}
	}
}

// A key right after an escape sequence of a log, JSON or URL is found; a
// key glued to a word is not.
func TestReaderAfterEscapes(t *testing.T) {
	tok := token(t, "sk", "live")
	for _, esc := range []string{`\n`, `\t`, `\r`, `\"`, `\\`, `\u0022`, `\u003d`, `\x22`, "%0A", "%0a", "%22", "%3D", "%3d", "&quot;", "'", "="} {
		text := `{"log":"request failed` + esc + tok + `\n","level":"error"}`
		got := findAll(t, text)
		if len(got) != 1 || got[0].Token != tok {
			t.Errorf("after %s: found %+v", esc, got)
		}
		got = findAll(t, "a%0A"+esc+tok)
		if len(got) != 1 || got[0].Token != tok {
			t.Errorf("after %%0A%s: found %+v", esc, got)
		}
	}
	for _, glued := range []string{"word", "X", "%ZZ", `\u00zz`, "%2", "9"} {
		if got := findAll(t, "log "+glued+tok+" end"); len(got) != 0 {
			t.Errorf("glued to %q: found %+v", glued, got)
		}
	}
}

// A scan stops when its context ends.
func TestPathsStopsWhenCancelled(t *testing.T) {
	dir := t.TempDir()
	for i := range 3 {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprint(i)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	st, err := Paths(ctx, []string{dir}, Options{}, func(Finding) {})
	if !errors.Is(err, context.Canceled) || st.Files != 0 {
		t.Fatalf("cancelled scan: %+v, %v", st, err)
	}
}

// BenchmarkScan scans 100 MB of source-like text with a key every ~1 MB.
// Run it with: go test -run '^$' -bench BenchmarkScan ./scan
func BenchmarkScan(b *testing.B) {
	var text bytes.Buffer
	line := "func handler(w http.ResponseWriter, r *http.Request) { key := os.Getenv(\"API_KEY\") // sk_live_ docs mention\n"
	for text.Len() < 100<<20 {
		for i := 0; i < 10000; i++ {
			text.WriteString(line)
		}
		text.WriteString("KEY=" + token(b, "sk", "live") + "\n")
	}
	data := text.Bytes()
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n := 0
		if _, err := Reader(bytes.NewReader(data), "bench", func(Finding) { n++ }); err != nil || n == 0 {
			b.Fatalf("found %d, %v", n, err)
		}
	}
}
