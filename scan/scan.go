// Package scan finds keyctl keys in text: any token of the keyctl shape
// whose checksum holds, so that look-alikes and prose that mentions
// "sk_live_" are never reported. It reads files and directory trees,
// skipping .git, binary files and files over a size bound.
package scan

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

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
	// MaxSize is the largest file scanned, in bytes; larger files are
	// skipped. Standard input is scanned whatever its size.
	MaxSize int64
}

// Stats counts what a scan read and passed over.
type Stats struct {
	Files        int
	Bytes        int64
	SkippedLarge int
	SkippedBin   int
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
// whose checksum holds, with a word boundary on both sides, and returns its
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
	if run > 0 && (isTokenByte(b[run-1])) {
		return 0, 0, false // the word goes on beyond the longest prefix
	}
	for s := run; s < m; s++ {
		if b[s] < 'a' || b[s] > 'z' || (s > run && b[s-1] != '_' && b[s-1] != '-') {
			continue
		}
		if _, err := apikey.Parse(string(b[s:end])); err == nil {
			return s, end, true
		}
	}
	return 0, 0, false
}

func isAlnum(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func isPrefixByte(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || c == '_' || c == '-'
}

func isTokenByte(c byte) bool { return isAlnum(c) || c == '_' || c == '-' }

// Paths scans files and directory trees, skipping .git directories, binary
// files (a NUL byte in the first 8 KiB) and files over opts.MaxSize.
func Paths(paths []string, opts Options, found func(Finding)) (Stats, error) {
	var st Stats
	for _, root := range paths {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
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
			return scanFile(path, opts, &st, found)
		})
		if err != nil {
			return st, fmt.Errorf("scanning %s: %w", root, err)
		}
	}
	return st, nil
}

func scanFile(path string, opts Options, st *Stats, found func(Finding)) error {
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	if opts.MaxSize > 0 && info.Size() > opts.MaxSize {
		st.SkippedLarge++
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	head := make([]byte, 8192)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return err
	}
	if bytes.IndexByte(head[:n], 0) >= 0 {
		st.SkippedBin++
		return nil
	}
	read, err := Reader(io.MultiReader(bytes.NewReader(head[:n]), f), path, found)
	st.Files++
	st.Bytes += read
	return err
}
