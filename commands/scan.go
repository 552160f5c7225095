package commands

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/spf13/cobra"

	"github.com/keyctl/keyctl/output"
	"github.com/keyctl/keyctl/scan"
	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/keys"
)

// ScanOptions are the parsed flags of keyctl scan.
type ScanOptions struct {
	Deps
	Paths   []string // empty: stdin
	MaxSize int64
	Action  string // "", "revoke" or "disable"
	// DryRun says what Action would do, and changes nothing.
	DryRun bool
	// AllowSkipped: files that could not be scanned do not fail the scan.
	AllowSkipped bool
	Format       output.Format
}

// finding is one key found, or one file skipped, as printed. It never holds
// the secret.
type finding struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Start   string `json:"start"`
	Known   bool   `json:"known"`
	KeyID   string `json:"key_id"`
	KeyName string `json:"key_name"`
	Status  string `json:"status"` // the key's status, "unknown", or "skipped" for a file not scanned
	Action  string `json:"action"` // "revoked", "disabled", "would-revoke", "would-disable", or ""
	Reason  string `json:"reason,omitempty"`
}

// statusSkipped marks, in -o json, a file that was not scanned.
const statusSkipped = "skipped"

const scanExitHelp = `EXIT STATUS
  0   nothing found, or every key found is revoked; every file was scanned
      (or --allow-skipped was given)
  1   a key found is not revoked, or unknown to the store (it may belong to
      another keyctl store); or a file could not be scanned: over
      --max-size, unreadable, or a read error (listed on stderr, and with
      "status": "skipped" in -o json)
  2   usage error
  130 interrupted (Ctrl-C): nothing more is revoked or disabled`

func newScanCmd(f *Factory, runF func(context.Context, *ScanOptions) error) *cobra.Command {
	var maxSize string
	var revoke, disable, dryRun, allowSkipped bool
	cmd := &cobra.Command{
		Use:   "scan [PATH...]",
		Short: "Find keyctl keys in files, and revoke the ones that leaked",
		Long: `Find keyctl keys in files and directory trees, or stdin when no path (or -) is
given: any token of the keyctl shape whose checksum holds, so look-alikes and
prose that mentions sk_live_ are never reported. A key is found wherever a
character no key holds bounds it, right after an escape sequence of a log or
JSON line (\n, \t, \", \u0022) or of a URL (%0A, %22, %3D) too.

In a directory tree, .git folders and binary files are passed over, and
files over --max-size are skipped. A file named on the command line is
always read whole. A file that cannot be read, or is skipped for its size,
fails the scan (exit 1) unless --allow-skipped: a gate that did not read a
file did not check it.

Each finding is shown as file:line with the masked key and, where the store
knows the key, its id, name and status; -o json lists the findings, and the
skipped files with "status": "skipped" and a "reason". No output ever shows
a secret. On a terminal, a scan that takes more than a second shows its
progress on stderr.

--revoke (or --disable) acts on every found key that is not yet revoked, and
the audit trail records it as a leak response; with --dry-run it says what
it would do and changes nothing.

` + scanExitHelp,
		Example: `  keyctl scan .
  git diff --cached | keyctl scan
  keyctl scan ./logs --revoke --dry-run
  keyctl scan ./logs --revoke -o json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := &ScanOptions{Deps: f.deps(), DryRun: dryRun, AllowSkipped: allowSkipped}
			for _, a := range args {
				if a != "-" {
					opts.Paths = append(opts.Paths, a)
				}
			}
			if len(opts.Paths) > 0 && len(opts.Paths) != len(args) {
				return usagef("scan reads either stdin (-) or paths, not both")
			}
			if revoke && disable {
				return usagef("choose one of --revoke and --disable")
			}
			if revoke {
				opts.Action = keys.ActionRevoke
			} else if disable {
				opts.Action = keys.ActionDisable
			}
			if dryRun && opts.Action == "" {
				return withHint(flagErr("dry-run", fmt.Errorf("goes with --revoke or --disable")),
					"a scan without them changes nothing anyway")
			}
			if !cmd.Flags().Changed("max-size") && f.Config.IsSet("scan_max_size") {
				maxSize = f.Config.GetString("scan_max_size")
			}
			var err error
			if opts.MaxSize, err = parseSize(maxSize); err != nil {
				return flagErr("max-size", err)
			}
			if opts.Format, err = f.outputFormat(); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runScan(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	kindVar(fl, &maxSize, "max-size", "10MiB", "size", "skip files in trees larger than this (e.g. 512KiB, 10MiB; config scan_max_size)")
	fl.BoolVar(&revoke, "revoke", false, "revoke every found key that is not revoked")
	fl.BoolVar(&disable, "disable", false, "disable every found key that is not revoked")
	fl.BoolVar(&dryRun, "dry-run", false, "with --revoke or --disable: say what would be done, change nothing")
	fl.BoolVar(&allowSkipped, "allow-skipped", false, "files that could not be scanned are listed but do not fail the scan")
	return cmd
}

// parseSize accepts a number of bytes with an optional unit: B, KB, KiB,
// MB, MiB, GB, GiB.
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range units {
		if strings.HasSuffix(strings.ToLower(num), strings.ToLower(u.suffix)) {
			num, mult = strings.TrimSpace(num[:len(num)-len(u.suffix)]), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a size (such as 512KiB or 10MiB)", s)
	}
	return n * mult, nil
}

func runScan(ctx context.Context, opts *ScanOptions) error {
	var found []scan.Finding
	var count atomic.Int64
	collect := func(fd scan.Finding) {
		found = append(found, fd)
		count.Add(1)
	}
	progress := &scan.Progress{}
	if opts.IO.IsStderrTTY() {
		stop := startProgress(opts.IO.ErrOut, progress, &count)
		defer stop()
	}
	var stats scan.Stats
	if len(opts.Paths) == 0 {
		n, err := scan.Reader(scan.ReaderContext(ctx, opts.IO.In, progress), "-", collect)
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if err != nil {
			return fmt.Errorf("reading stdin: %w", err)
		}
		stats = scan.Stats{Files: 1, Bytes: n}
	} else {
		var err error
		if stats, err = scan.Paths(ctx, opts.Paths, scan.Options{MaxSize: opts.MaxSize, Progress: progress}, collect); err != nil {
			return err
		}
	}
	var results []finding
	if len(found) > 0 {
		var err error
		if results, err = lookUpFindings(ctx, opts.Deps, found, opts.Action, opts.DryRun); err != nil {
			return err
		}
	}
	if err := printFindings(opts.IO, opts.Format, results, stats.Skipped); err != nil {
		return err
	}
	return scanSummary(opts.IO, stats, results, opts)
}

// lookUpFindings asks the store about each key found (once per key) and, with
// an action, revokes or disables the ones not yet revoked (or, in a dry run,
// says it would). It starts no change once ctx has ended.
func lookUpFindings(ctx context.Context, d Deps, found []scan.Finding, action string, dryRun bool) ([]finding, error) {
	out := make([]finding, 0, len(found))
	err := d.withStore(ctx, func(s store.Store) error {
		byToken := map[string]*keys.Key{} // by token; nil when unknown
		acted := map[string]string{}
		for _, fd := range found {
			k, seen := byToken[fd.Token]
			if !seen {
				if err := ctx.Err(); err != nil {
					return err
				}
				var err error
				k, err = s.Find(ctx, fd.Token)
				if err != nil && !errors.Is(err, keys.ErrNotFound) {
					return err
				}
				if k != nil && action != "" && k.Status != keys.Revoked {
					if k, err = act(ctx, s, k, fd, action, dryRun, acted); err != nil {
						return err
					}
				}
				byToken[fd.Token] = k
			}
			r := finding{File: fd.Path, Line: fd.Line, Column: fd.Column, Start: fd.Masked(), Status: "unknown",
				Action: acted[fd.Token]}
			if k != nil {
				r.Known, r.KeyID, r.KeyName, r.Status = true, k.ID, k.Name, string(k.Status)
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// act revokes or disables a key found at fd, as a leak response, and notes
// what it did in acted; in a dry run it only notes what it would do.
func act(ctx context.Context, s store.Store, k *keys.Key, fd scan.Finding, action string, dryRun bool, acted map[string]string) (*keys.Key, error) {
	if action == keys.ActionDisable && k.Status == keys.Disabled {
		return k, nil
	}
	if dryRun {
		acted[fd.Token] = "would-" + action
		return k, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err // interrupted: nothing more is changed
	}
	where := fmt.Sprintf("found in %s:%d", fd.Path, fd.Line)
	actx := keys.WithNote(ctx, "leak response: "+where)
	if action == keys.ActionRevoke {
		acted[fd.Token] = "revoked"
		return s.Revoke(actx, k.ID, "leaked: "+where)
	}
	acted[fd.Token] = "disabled"
	return s.SetDisabled(actx, k.ID, true)
}

// printFindings prints the findings: a table for people (the skipped files
// go to stderr, in scanSummary), or an array for scripts, the skipped files
// in it with the status "skipped".
func printFindings(io *output.IOStreams, format output.Format, results []finding, skipped []scan.Skip) error {
	all := nonNil(results)
	for _, sk := range skipped {
		all = append(all, finding{File: sk.Path, Status: statusSkipped, Reason: sk.Reason})
	}
	return printData(io, format, all, func() error { return findingsTable(io, results) })
}

func findingsTable(io *output.IOStreams, results []finding) error {
	if len(results) == 0 {
		return nil
	}
	rows := make([][]string, 0, len(results))
	for _, r := range results {
		rows = append(rows, []string{fmt.Sprintf("%s:%d", r.File, r.Line), r.Start, orDash(r.KeyID),
			orDash(r.KeyName), r.Status, orDash(r.Action)})
	}
	return output.WriteTable(io.Out, []string{"LOCATION", "KEY", "ID", "NAME", "STATUS", "ACTION"}, rows)
}

func nonNil(r []finding) []finding {
	if r == nil {
		return []finding{}
	}
	return r
}

// scanSummary says what was found, and what was skipped, on stderr, and
// chooses the exit status: 1 when a key found is not revoked or unknown, or
// a file was skipped without --allow-skipped.
func scanSummary(io *output.IOStreams, stats scan.Stats, results []finding, opts *ScanOptions) error {
	var live, unknown, would int
	for _, r := range results {
		switch {
		case !r.Known:
			unknown++
		case r.Status != string(keys.Revoked):
			live++
		}
		if strings.HasPrefix(r.Action, "would-") {
			would++
		}
	}
	files := output.Plural(stats.Files, "file", "files")
	if stats.SkippedBin > 0 {
		files += fmt.Sprintf(" (%s passed over)", output.Plural(stats.SkippedBin, "binary file", "binary files"))
	}
	if len(results) == 0 {
		io.Notef("keyctl: no keys found in %s", files)
	} else {
		io.Notef("keyctl: found %s in %s: %d not revoked, %d unknown to this store",
			output.Plural(len(results), "key", "keys"), files, live, unknown)
	}
	if opts.DryRun {
		io.Notef("keyctl: dry run: %s would be %s; nothing was changed",
			output.Plural(would, "key", "keys"), map[string]string{keys.ActionRevoke: "revoked", keys.ActionDisable: "disabled"}[opts.Action])
	}
	for _, sk := range stats.Skipped {
		io.Notef("keyctl: skipped %s: %s", sk.Path, sk.Reason)
	}
	incomplete := len(stats.Skipped) > 0 && !opts.AllowSkipped
	if incomplete {
		io.Notef("keyctl: %s not scanned: the scan is incomplete", output.Plural(len(stats.Skipped), "file", "files"))
		io.Notef("keyctl: hint: scan them another way, raise --max-size, or accept it with --allow-skipped")
	}
	if live > 0 && opts.Action == "" {
		io.Notef("keyctl: hint: 'keyctl scan --revoke' revokes them; rotate or recreate what used them")
	}
	if live+unknown == 0 && !incomplete {
		return nil
	}
	return &exitError{code: exitFailure}
}
