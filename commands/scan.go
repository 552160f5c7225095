package commands

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

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
	File    string     `json:"file"`
	Line    int        `json:"line"`
	Column  int        `json:"column"`
	Start   string     `json:"start"`
	Known   bool       `json:"known"`
	KeyID   string     `json:"key_id"`
	KeyName string     `json:"key_name"`
	Status  string     `json:"status"`  // the secret's own status (see secretStatus), "unknown", or "skipped" for a file not scanned
	EndsAt  *time.Time `json:"ends_at"` // when an old secret stops, or stopped, working
	// Action is "revoked", "disabled", "grace_ended", "would-revoke",
	// "would-disable", "would-end-grace", or "".
	Action string `json:"action"`
	Reason string `json:"reason,omitempty"`
}

// Statuses of a secret found that are not its key's: an old secret still in
// its rotation grace, and one rotated out, which works no more; and a file
// that was not scanned.
const (
	statusInGrace = "in_grace"
	statusRotated = "rotated"
	statusSkipped = "skipped"
)

// secretStatus is a found secret's own status: its key's when it is the
// current secret, "revoked" when its key is, else in_grace or rotated.
func secretStatus(k *keys.Key, st keys.SecretState, now time.Time) string {
	switch {
	case k.Status == keys.Revoked || st.Current:
		return string(k.Status)
	case st.Live(now):
		return statusInGrace
	}
	return statusRotated
}

// dead reports whether a secret of that status works no more: it fails no
// gate, and nothing is done about it.
func dead(status string) bool { return status == string(keys.Revoked) || status == statusRotated }

const scanExitHelp = `EXIT STATUS
  0   nothing found, or every secret found works no more (its key is
      revoked, or it was rotated out); every file was scanned (or
      --allow-skipped was given)
  1   a secret found still works, or is unknown to the store (it may belong
      to another keyctl store); or a file could not be scanned: over
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

A finding's status is its secret's own: the key's status for the key's
current secret; in_grace (with when it stops) for an old secret still in its
rotation grace; rotated for one rotated out, which works no more and fails
no gate. --revoke acts on each secret that still works: a current secret
revokes its key, an old one in its grace has its grace ended (the key's
current secret stays). --disable disables the key of a current secret (an
old one in its grace has its grace ended). The audit trail records each as
a leak response; with --dry-run keyctl says what it would do and changes
nothing.

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
	fl.BoolVar(&revoke, "revoke", false, "revoke every found secret that still works (an old one in its grace: end the grace)")
	fl.BoolVar(&disable, "disable", false, "disable the key of every found current secret (an old one in its grace: end the grace)")
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

// lookUpFindings asks the store about each secret found (once per secret)
// and, with an action, acts on each one that still works, as its own status
// says (or, in a dry run, says it would): a key's current secret revokes (or
// disables) the key; an old secret in its grace has its grace ended, the
// key's current secret staying; a secret rotated out, or of a revoked key,
// is left alone. It starts no change once ctx has ended.
func lookUpFindings(ctx context.Context, d Deps, found []scan.Finding, action string, dryRun bool) ([]finding, error) {
	out := make([]finding, 0, len(found))
	err := d.withStore(ctx, func(s store.Store) error {
		type seen struct {
			k      *keys.Key // nil when unknown
			st     keys.SecretState
			acted  string
			status string
		}
		byToken := map[string]*seen{}
		for _, fd := range found {
			sn, ok := byToken[fd.Token]
			if !ok {
				if err := ctx.Err(); err != nil {
					return err
				}
				sn = &seen{status: "unknown"}
				k, st, err := s.FindSecret(ctx, fd.Token)
				if err != nil && !errors.Is(err, keys.ErrNotFound) {
					return err
				}
				if k != nil {
					sn.k, sn.st, sn.status = k, st, secretStatus(k, st, d.Now())
				}
				if k != nil && action != "" && !dead(sn.status) {
					changed, err := actOn(ctx, s, fd, sn.k, sn.st, action, dryRun, &sn.acted)
					if err != nil {
						return err
					}
					if changed {
						if k, st, err = s.FindSecret(ctx, fd.Token); err != nil {
							return err
						}
						sn.k, sn.st, sn.status = k, st, secretStatus(k, st, d.Now())
					}
				}
				byToken[fd.Token] = sn
			}
			r := finding{File: fd.Path, Line: fd.Line, Column: fd.Column, Start: fd.Masked(), Status: sn.status, Action: sn.acted}
			if sn.k != nil {
				r.Known, r.KeyID, r.KeyName, r.EndsAt = true, sn.k.ID, sn.k.Name, sn.st.EndsAt
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// actOn acts on a live secret found at fd, as a leak response, and notes
// what it did in acted: --revoke revokes it (store.RevokeSecret: its key
// when it is the current secret, its grace when it is an old one);
// --disable disables its key when it is the current secret, and ends the
// grace of an old one, which cannot be disabled alone. In a dry run it only
// notes what it would do. changed says whether the store was changed.
func actOn(ctx context.Context, s store.Store, fd scan.Finding, k *keys.Key, st keys.SecretState, action string,
	dryRun bool, acted *string) (changed bool, err error) {
	disable := action == keys.ActionDisable && st.Current
	if disable && (k.Stored == keys.Disabled || k.Status == keys.Disabled) {
		return false, nil
	}
	if dryRun {
		switch {
		case disable:
			*acted = "would-" + keys.ActionDisable
		case st.Current:
			*acted = "would-" + keys.ActionRevoke
		default:
			*acted = "would-" + keys.ActionEndGrace
		}
		return false, nil
	}
	if err := ctx.Err(); err != nil {
		return false, err // interrupted: nothing more is changed
	}
	where := fmt.Sprintf("found in %s:%d", fd.Path, fd.Line)
	actx := keys.WithNote(ctx, keys.Escape("leak response: "+where, keys.MaxNote))
	if disable {
		*acted = "disabled"
		_, err := s.SetDisabled(actx, k.ID, true)
		return true, err
	}
	if _, err := s.RevokeSecret(actx, fd.Token, keys.Escape("leaked: "+where, keys.MaxReason)); err != nil {
		return false, err
	}
	// A keyctl server says nothing of what it did: the secret's state,
	// read just before, says it.
	*acted = "revoked"
	if !st.Current {
		*acted = "grace_ended"
	}
	return true, nil
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
		status := r.Status
		switch {
		case r.Status == statusInGrace && r.EndsAt != nil:
			status = "in grace until " + r.EndsAt.UTC().Format(time.RFC3339)
		case r.Status == statusRotated && r.EndsAt != nil:
			status = "rotated out at " + r.EndsAt.UTC().Format(time.RFC3339)
		}
		rows = append(rows, []string{fmt.Sprintf("%s:%d", r.File, r.Line), r.Start, orDash(r.KeyID),
			orDash(r.KeyName), status, orDash(r.Action)})
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
// chooses the exit status: 1 when a secret found still works (its key is
// not revoked, and it was not rotated out) or is unknown, or a file was
// skipped without --allow-skipped.
func scanSummary(io *output.IOStreams, stats scan.Stats, results []finding, opts *ScanOptions) error {
	var live, unknown, rotated, would int
	for _, r := range results {
		switch {
		case !r.Known:
			unknown++
		case r.Status == statusRotated:
			rotated++
		case !dead(r.Status):
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
		rotatedOut := ""
		if rotated > 0 {
			rotatedOut = fmt.Sprintf(", %d rotated out (they work no more)", rotated)
		}
		io.Notef("keyctl: found %s in %s: %d not revoked, %d unknown to this store%s",
			output.Plural(len(results), "key", "keys"), files, live, unknown, rotatedOut)
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
