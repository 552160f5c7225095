package commands

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

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
	Format  output.Format
}

// finding is one key found, as printed. It never holds the secret.
type finding struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Start   string `json:"start"`
	Known   bool   `json:"known"`
	KeyID   string `json:"key_id"`
	KeyName string `json:"key_name"`
	Status  string `json:"status"` // the key's status, or "unknown"
	Action  string `json:"action"` // "revoked", "disabled", or ""
}

func newScanCmd(f *Factory, runF func(context.Context, *ScanOptions) error) *cobra.Command {
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

--revoke (or --disable) acts on every found key that is not yet revoked, and
the audit trail records it as a leak response.

EXIT STATUS
  0   nothing found, or every key found is revoked
  1   a key found is not revoked, or unknown to the store (it may belong to
      another keyctl store): use it as a pre-commit hook or a CI gate
  2   usage error`,
		Example: `  keyctl scan .
  git diff --cached | keyctl scan
  keyctl scan ./logs --revoke -o json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := &ScanOptions{Deps: f.deps()}
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
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runScan(cmd.Context(), opts)
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

func runScan(ctx context.Context, opts *ScanOptions) error {
	var found []scan.Finding
	collect := func(fd scan.Finding) { found = append(found, fd) }
	var stats scan.Stats
	if len(opts.Paths) == 0 {
		n, err := scan.Reader(opts.IO.In, "-", collect)
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
		if results, err = lookUpFindings(ctx, opts.Deps, found, opts.Action); err != nil {
			return err
		}
	}
	if err := printFindings(opts.IO, opts.Format, results); err != nil {
		return err
	}
	return scanSummary(opts.IO, stats, results)
}

// lookUpFindings asks the store about each key found (once per key) and, with
// an action, revokes or disables the ones not yet revoked.
func lookUpFindings(ctx context.Context, d Deps, found []scan.Finding, action string) ([]finding, error) {
	out := make([]finding, 0, len(found))
	err := d.withStore(ctx, func(s store.Store) error {
		byToken := map[string]*keys.Key{} // by token; nil when unknown
		acted := map[string]string{}
		for _, fd := range found {
			k, seen := byToken[fd.Token]
			if !seen {
				var err error
				k, err = s.Find(ctx, fd.Token)
				if err != nil && !errors.Is(err, keys.ErrNotFound) {
					return err
				}
				if k != nil && action != "" && k.Status != keys.Revoked {
					where := fmt.Sprintf("found in %s:%d", fd.Path, fd.Line)
					actx := keys.WithNote(ctx, "leak response: "+where)
					if action == keys.ActionRevoke {
						k, err = s.Revoke(actx, k.ID, "leaked: "+where)
						acted[fd.Token] = "revoked"
					} else if k.Status != keys.Disabled {
						k, err = s.SetDisabled(actx, k.ID, true)
						acted[fd.Token] = "disabled"
					}
					if err != nil {
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

func printFindings(io *output.IOStreams, format output.Format, results []finding) error {
	return printData(io, format, nonNil(results), func() error { return findingsTable(io, results) })
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

// scanSummary says what was found on stderr and chooses the exit status:
// 1 when a key found is not revoked or unknown.
func scanSummary(io *output.IOStreams, stats scan.Stats, results []finding) error {
	var live, unknown int
	for _, r := range results {
		switch {
		case !r.Known:
			unknown++
		case r.Status != string(keys.Revoked):
			live++
		}
	}
	skipped := ""
	if n := stats.SkippedBin + stats.SkippedLarge; n > 0 {
		skipped = fmt.Sprintf(" (%d binary and %d large files skipped)", stats.SkippedBin, stats.SkippedLarge)
	}
	if len(results) == 0 {
		io.Notef("keyctl: no keys found in %d files%s", stats.Files, skipped)
		return nil
	}
	io.Notef("keyctl: found %d keys in %d files%s: %d not revoked, %d unknown to this store",
		len(results), stats.Files, skipped, live, unknown)
	if live+unknown == 0 {
		return nil
	}
	if live > 0 {
		io.Notef("keyctl: hint: 'keyctl scan --revoke' revokes them; rotate or recreate what used them")
	}
	return &exitError{code: exitFailure}
}
