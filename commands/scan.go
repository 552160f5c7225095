package commands

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyctl/keyctl/output"
	"github.com/keyctl/keyctl/scan"
	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/keys"
)

// ScanOptions are the parsed flags of keyctl scan.
type ScanOptions struct {
	Paths   []string // empty: stdin
	MaxSize int64
	Action  string // "", "revoke" or "disable"
	Format  output.Format
}

// finding is one key found, as printed. It never holds the secret.
type finding struct {
	File    string     `json:"file"`
	Line    int        `json:"line"`
	Column  int        `json:"column"`
	Start   string     `json:"start"`
	Known   bool       `json:"known"`
	KeyID   string     `json:"key_id"`
	KeyName string     `json:"key_name"`
	Status  string     `json:"status"`  // the secret's own status (see secretStatus), or "unknown"
	EndsAt  *time.Time `json:"ends_at"` // when an old secret stops, or stopped, working
	Action  string     `json:"action"`  // "revoked", "disabled", "grace_ended", or ""
}

// Statuses of a secret found that are not its key's: an old secret still in
// its rotation grace, and one rotated out, which works no more.
const (
	statusInGrace = "in_grace"
	statusRotated = "rotated"
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

func newScanCmd(f *Factory) *cobra.Command {
	var maxSize string
	var revoke, disable bool
	cmd := &cobra.Command{
		Use:   "scan [PATH...]",
		Short: "Find keyctl keys in files, and revoke the ones that leaked",
		Long: `Find keyctl keys in files and directory trees, or stdin when no path (or -) is
given: any token of the keyctl shape whose checksum holds, so look-alikes and
prose that mentions sk_live_ are never reported. .git folders, binary files
and files over --max-size are skipped.

Each finding is shown as file:line with the masked key and, where the store
knows the key, its id, name and status; -o json lists the findings. No output
ever shows a secret.

A finding's status is its secret's own: the key's status for the key's
current secret; in_grace (with when it stops) for an old secret still in its
rotation grace; rotated for one rotated out, which works no more and fails
no gate. --revoke acts on each secret that still works: a current secret
revokes its key, an old one in its grace has its grace ended (the key's
current secret stays). --disable disables the key of a current secret. The
audit trail records each as a leak response.

EXIT STATUS
  0   nothing found, or every secret found works no more (revoked, or
      rotated out)
  1   a secret found still works, or is unknown to the store (it may belong
      to another keyctl store): use it as a pre-commit hook or a CI gate
  2   usage error`,
		Example: `  keyctl scan .
  git diff --cached | keyctl scan
  keyctl scan ./logs --revoke -o json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := &ScanOptions{}
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
			return runScan(cmd.Context(), f, opts)
		},
	}
	cmd.Flags().StringVar(&maxSize, "max-size", "10MiB", "skip files larger than this (e.g. 512KiB, 10MiB; config scan_max_size)")
	cmd.Flags().BoolVar(&revoke, "revoke", false, "revoke every found key that is not revoked")
	cmd.Flags().BoolVar(&disable, "disable", false, "disable every found key that is not revoked")
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

func runScan(ctx context.Context, f *Factory, opts *ScanOptions) error {
	var found []scan.Finding
	collect := func(fd scan.Finding) { found = append(found, fd) }
	var stats scan.Stats
	if len(opts.Paths) == 0 {
		n, err := scan.Reader(f.IO.In, "-", collect)
		if err != nil {
			return fmt.Errorf("reading stdin: %w", err)
		}
		stats = scan.Stats{Files: 1, Bytes: n}
	} else {
		var err error
		if stats, err = scan.Paths(opts.Paths, scan.Options{MaxSize: opts.MaxSize}, collect); err != nil {
			return err
		}
	}
	var results []finding
	if len(found) > 0 {
		var err error
		if results, err = lookUpFindings(ctx, f, found, opts.Action); err != nil {
			return err
		}
	}
	if err := printFindings(f, opts.Format, results); err != nil {
		return err
	}
	return scanSummary(f, stats, results)
}

// lookUpFindings asks the store about each secret found (once per secret)
// and, with an action, acts on each one that still works, as its own status
// says: a key's current secret revokes (or disables) the key; an old secret
// in its grace has its grace ended, the key's current secret staying; a
// secret rotated out, or of a revoked key, is left alone.
func lookUpFindings(ctx context.Context, f *Factory, found []scan.Finding, action string) ([]finding, error) {
	out := make([]finding, 0, len(found))
	err := f.withStore(ctx, func(s store.Store) error {
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
				sn = &seen{status: "unknown"}
				k, st, err := s.FindSecret(ctx, fd.Token)
				if err != nil && !errors.Is(err, keys.ErrNotFound) {
					return err
				}
				if k != nil {
					sn.k, sn.st, sn.status = k, st, secretStatus(k, st, f.Now())
				}
				if k != nil && action != "" && !dead(sn.status) {
					if err := actOn(ctx, f, s, fd, sn.k, action, &sn.acted); err != nil {
						return err
					}
					if k, st, err = s.FindSecret(ctx, fd.Token); err != nil {
						return err
					}
					sn.k, sn.st, sn.status = k, st, secretStatus(k, st, f.Now())
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

// actOn revokes a live secret found (store.RevokeSecret: its key when it is
// the current secret, its grace when it is an old one), or disables its key
// when it is the current secret; an old secret in its grace cannot be
// disabled alone, and has its grace ended.
func actOn(ctx context.Context, f *Factory, s store.Store, fd scan.Finding, k *keys.Key, action string, acted *string) error {
	where := fmt.Sprintf("found in %s:%d", fd.Path, fd.Line)
	actx := keys.WithNote(ctx, keys.Escape("leak response: "+where, keys.MaxNote))
	_, st, err := s.FindSecret(ctx, fd.Token)
	if err != nil {
		return err
	}
	if action == keys.ActionDisable && st.Current {
		if k.Stored == keys.Disabled || k.Status == keys.Disabled {
			return nil
		}
		*acted = "disabled"
		_, err := s.SetDisabled(actx, k.ID, true)
		return err
	}
	if _, err := s.RevokeSecret(actx, fd.Token, keys.Escape("leaked: "+where, keys.MaxReason)); err != nil {
		return err
	}
	*acted = "revoked"
	if !st.Current {
		*acted = "grace_ended"
	}
	return nil
}

func printFindings(f *Factory, format output.Format, results []finding) error {
	return printData(f, format, nonNil(results), func() error { return findingsTable(f, results) })
}

func findingsTable(f *Factory, results []finding) error {
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
	return output.WriteTable(f.IO.Out, []string{"LOCATION", "KEY", "ID", "NAME", "STATUS", "ACTION"}, rows)
}

func nonNil(r []finding) []finding {
	if r == nil {
		return []finding{}
	}
	return r
}

// scanSummary says what was found on stderr and chooses the exit status:
// 1 when a secret found still works (its key is not revoked, and it was not
// rotated out), or is unknown.
func scanSummary(f *Factory, stats scan.Stats, results []finding) error {
	var live, unknown, rotated int
	for _, r := range results {
		switch {
		case !r.Known:
			unknown++
		case r.Status == statusRotated:
			rotated++
		case !dead(r.Status):
			live++
		}
	}
	skipped := ""
	if n := stats.SkippedBin + stats.SkippedLarge; n > 0 {
		skipped = fmt.Sprintf(" (%d binary and %d large files skipped)", stats.SkippedBin, stats.SkippedLarge)
	}
	if len(results) == 0 {
		f.IO.Notef("keyctl: no keys found in %d files%s", stats.Files, skipped)
		return nil
	}
	rotatedOut := ""
	if rotated > 0 {
		rotatedOut = fmt.Sprintf(", %d rotated out (they work no more)", rotated)
	}
	f.IO.Notef("keyctl: found %d keys in %d files%s: %d not revoked, %d unknown to this store%s",
		len(results), stats.Files, skipped, live, unknown, rotatedOut)
	if live+unknown == 0 {
		return nil
	}
	if live > 0 {
		f.IO.Notef("keyctl: hint: 'keyctl scan --revoke' revokes them; rotate or recreate what used them")
	}
	return &exitError{code: exitFailure}
}
