// Package scan finds keyctl keys in text: any token of the keyctl shape
// whose checksum holds, so that look-alikes and prose that mentions
// "sk_live_" are never reported, wherever a character no token holds (or an
// escape sequence of a log, JSON or URL) bounds it. It reads files and
// directory trees, passing over .git and binary files in trees, and says
// which files it skipped.
package scan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/keyctl/keyctl/apikey"
)

// Finding is one key found in text. Token is the plaintext key, for looking
// it up; it must never be printed.
type Finding struct {
	Path   string
	Line   int
	Column int
	Token  string
}

// Masked is the finding's display start, e.g. sk_live_AbCd1234….
func (f Finding) Masked() string {
	t, err := apikey.Parse(f.Token)
	if err != nil {
		return ""
	}
	return t.Start() + "…"
}

// Options bound a scan.
type Options struct {
	// MaxSize is the largest file scanned in a tree, in bytes; larger files
	// are skipped. A file named explicitly, and standard input, are scanned
	// whatever their size.
	MaxSize int64
	// Progress, when not nil, counts what is read as the scan goes.
	Progress *Progress
}

// Stats counts what a scan read and passed over.
type Stats struct {
	Files      int
	Bytes      int64
	SkippedBin int    // binary files in trees, passed over by design
	Skipped    []Skip // files not read, or read only in part
}

const chunkSize = 1 << 20

var markers = [][]byte{[]byte("_" + apikey.TagLive + "_"), []byte("_" + apikey.TagTest + "_")}

// Reader scans r, reporting each key found under the name path. It reads
// in chunks that overlap by more than a token, so a stream of any size is
// scanned in bounded memory and no key is missed at a chunk's edge.
func Reader(r io.Reader, path string, found func(Finding)) (int64, error) {
	const (
		keep  = 2 * apikey.MaxLen // bytes carried into the next chunk
		after = len("_live_") + apikey.BodyLen + apikey.ChecksumLen + 1
	)
	var (
		buf       = make([]byte, 0, chunkSize+keep)
		base      int64 // stream offset of buf[0]
		next      int   // markers before buf[next] have been decided
		counted   int   // newlines before buf[counted] have been counted
		line      = 1
		lineStart int64 // stream offset of the current line's first byte
	)
	countTo := func(i int) {
		if nl := bytes.Count(buf[counted:i], []byte{'\n'}); nl > 0 {
			line += nl
			lineStart = base + int64(bytes.LastIndexByte(buf[counted:i], '\n')+counted+1)
		}
		counted = i
	}
	for {
		n, err := io.ReadFull(r, buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		eof := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
		if err != nil && !eof {
			return base + int64(len(buf)), err
		}
		// A marker needs `after` bytes behind it to be decided now.
		limit := len(buf)
		if !eof {
			limit = max(next, len(buf)-after)
		}
		for _, m := range findMarkers(buf[next:]) {
			if m += next; m >= limit {
				break
			}
			start, end, ok := tokenAt(buf, m)
			if !ok {
				continue
			}
			countTo(start)
			found(Finding{Path: path, Line: line, Column: int(base+int64(start)-lineStart) + 1, Token: string(buf[start:end])})
		}
		next = limit
		if eof {
			return base + int64(len(buf)), nil
		}
		drop := max(0, len(buf)-keep)
		if drop > counted {
			countTo(drop)
		}
		copy(buf, buf[drop:])
		buf = buf[:len(buf)-drop]
		base += int64(drop)
		next -= drop
		counted -= drop
	}
}

// findMarkers returns the offsets of "_live_" and "_test_" in b, in order.
func findMarkers(b []byte) []int {
	live, test := indexAll(b, markers[0]), indexAll(b, markers[1])
	out := make([]int, 0, len(live)+len(test))
	for len(live) > 0 || len(test) > 0 {
		if len(test) == 0 || len(live) > 0 && live[0] < test[0] {
			out, live = append(out, live[0]), live[1:]
		} else {
			out, test = append(out, test[0]), test[1:]
		}
	}
	return out
}

func indexAll(b, sep []byte) []int {
	var out []int
	for i := 0; ; {
		j := bytes.Index(b[i:], sep)
		if j < 0 {
			return out
		}
		out = append(out, i+j)
		i += j + 1
	}
}

// tokenAt checks whether the marker at m belongs to a well-formed token
// whose checksum holds, with a boundary on both sides, and returns its
// bounds. Of several possible prefixes, the longest valid one wins.
func tokenAt(b []byte, m int) (start, end int, ok bool) {
	end = m + 6 + apikey.BodyLen + apikey.ChecksumLen
	if end > len(b) || (end < len(b) && isAlnum(b[end])) {
		return 0, 0, false
	}
	for i := m + 6; i < end; i++ {
		if !isAlnum(b[i]) {
			return 0, 0, false
		}
	}
	run := m
	for run > 0 && m-run < apikey.MaxPrefixLen && isPrefixByte(b[run-1]) {
		run--
	}
	for s := run; s < m; s++ {
		if b[s] < 'a' || b[s] > 'z' || !leftBounded(b, s, run) {
			continue
		}
		if _, err := apikey.Parse(string(b[s:end])); err == nil {
			return s, end, true
		}
	}
	return 0, 0, false
}

// leftBounded reports whether a token may start at s, in the run of prefix
// bytes that starts at run: at the start of the text, after a character no
// token holds, after a '_' or '-' inside the run, or right after an escape
// sequence of a log or JSON line (\n, \t, \", \u0022, \x22) or of a URL
// (%0A, %22, %3D), whose last characters would otherwise glue to the token.
func leftBounded(b []byte, s, run int) bool {
	if s == 0 || !isTokenByte(b[s-1]) {
		return true
	}
	if s > run && (b[s-1] == '_' || b[s-1] == '-') {
		return true
	}
	return escapeEndsAt(b, s)
}

// escapeEndsAt reports whether an escape sequence ends right before s:
// \X for a letter X, \uXXXX, \xXX, or %XX.
func escapeEndsAt(b []byte, s int) bool {
	at := func(i int) byte {
		if i < 0 {
			return 0
		}
		return b[i]
	}
	letter := func(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
	hex := func(i, n int) bool {
		for j := i; j < i+n; j++ {
			c := at(j)
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
		return true
	}
	switch {
	case at(s-2) == '\\' && letter(at(s-1)):
		return true
	case at(s-6) == '\\' && at(s-5) == 'u' && hex(s-4, 4):
		return true
	case at(s-4) == '\\' && at(s-3) == 'x' && hex(s-2, 2):
		return true
	case at(s-3) == '%' && hex(s-2, 2):
		return true
	}
	return false
}

func isAlnum(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func isPrefixByte(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || c == '_' || c == '-'
}

func isTokenByte(c byte) bool { return isAlnum(c) || c == '_' || c == '-' }

// Skip is a file a scan could not read, or read only in part, and why. A
// gate that skips a file has not checked it.
type Skip struct {
	Path   string
	Reason string
}

// Progress counts what a scan has read so far; it may be read while the
// scan runs.
type Progress struct {
	Files atomic.Int64
	Bytes atomic.Int64
}

// Paths scans files and directory trees. In a tree it passes over .git
// directories, binary files (a NUL byte in the first 8 KiB), and anything
// that is not a regular file; it skips files over opts.MaxSize and files it
// cannot read, and lists those in Stats.Skipped. A path named explicitly is
// read whole whatever its size and content (a pipe or a device too): it is
// never passed over. The error is the context's, when it ends the scan.
func Paths(ctx context.Context, paths []string, opts Options, found func(Finding)) (Stats, error) {
	var st Stats
	for _, root := range paths {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		info, err := os.Stat(root)
		if err != nil {
			st.skip(root, "", err)
			continue
		}
		if !info.IsDir() {
			if err := scanFile(ctx, root, true, opts, &st, found); err != nil {
				return st, err
			}
			continue
		}
		err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if cerr := ctx.Err(); cerr != nil {
				return cerr
			}
			if err != nil {
				st.skip(path, "", err)
				return nil
			}
			if d.IsDir() {
				if d.Name() == ".git" && path != root {
					return filepath.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() {
				return nil
			}
			return scanFile(ctx, path, false, opts, &st, found)
		})
		if err != nil {
			return st, err
		}
	}
	return st, nil
}

// skip lists path as skipped, for err (without the path it repeats),
// after what, when not empty.
func (st *Stats) skip(path, what string, err error) {
	reason := err.Error()
	var pe *fs.PathError
	if errors.As(err, &pe) {
		reason = pe.Err.Error()
	}
	if what != "" {
		reason = what + ": " + reason
	}
	st.Skipped = append(st.Skipped, Skip{Path: path, Reason: reason})
}

// scanFile scans one file; explicit is true for a path named on the command
// line, which is read whatever its size and content. Only the context's
// error is returned: a file that cannot be read is a Skip.
func scanFile(ctx context.Context, path string, explicit bool, opts Options, st *Stats, found func(Finding)) error {
	if !explicit {
		info, err := os.Stat(path)
		if err != nil {
			st.skip(path, "", err)
			return nil
		}
		if opts.MaxSize > 0 && info.Size() > opts.MaxSize {
			st.Skipped = append(st.Skipped, Skip{Path: path,
				Reason: fmt.Sprintf("larger than --max-size (%d bytes, the bound is %d)", info.Size(), opts.MaxSize)})
			return nil
		}
	}
	f, err := os.Open(path)
	if err != nil {
		st.skip(path, "", err)
		return nil
	}
	defer f.Close()
	head := make([]byte, 8192)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		st.skip(path, "read error", err)
		return nil
	}
	if !explicit && bytes.IndexByte(head[:n], 0) >= 0 {
		st.SkippedBin++
		return nil
	}
	r := ReaderContext(ctx, io.MultiReader(bytes.NewReader(head[:n]), f), opts.Progress)
	read, err := Reader(r, path, found)
	st.Files++
	st.Bytes += read
	if opts.Progress != nil {
		opts.Progress.Files.Add(1)
	}
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if err != nil {
		st.skip(path, fmt.Sprintf("read error after %d bytes", read), err)
	}
	return nil
}

// ReaderContext wraps r so that reading stops with ctx's error once ctx
// ends, and counts the bytes read in p (when not nil).
func ReaderContext(ctx context.Context, r io.Reader, p *Progress) io.Reader {
	return &ctxReader{ctx: ctx, r: r, p: p}
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
	p   *Progress
}

func (c *ctxReader) Read(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(b)
	if c.p != nil {
		c.p.Bytes.Add(int64(n))
	}
	return n, err
}
