package commands

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyctl/keyctl/output"
	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/keys"
)

// UsageOptions are the parsed flags of keyctl usage.
type UsageOptions struct {
	Deps
	Ref    string
	Query  keys.UsageQuery
	Format output.Format
}

func newUsageCmd(f *Factory, runF func(context.Context, *UsageOptions) error) *cobra.Command {
	var since, limit string
	cmd := &cobra.Command{
		Use:   "usage KEY",
		Short: "Show a key's recent verifications and counts per day",
		Long: `Show a key's usage: how often it was verified and when last, its recent
verifications (time, result, address) and its counts per day. The history is
kept for a bounded time (usage_retention in the config, KEYCTL_USAGE_RETENTION;
30 days by default).`,
		Example: `  keyctl usage billing
  keyctl usage billing --since 7d -o json`,
		Args:              exactKey,
		ValidArgsFunction: completeKeys(f, true),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := &UsageOptions{Deps: f.deps(), Ref: args[0]}
			var err error
			if since != "" {
				d, err := parsePositiveDuration("since", since)
				if err != nil {
					return err
				}
				opts.Query.Since = f.Now().Add(-d)
			}
			if n, err := strconv.Atoi(limit); err != nil || n < 1 || n > 10000 {
				return flagErr("limit", fmt.Errorf("%q is not a number from 1 to 10000", limit))
			} else {
				opts.Query.Limit = n
			}
			if opts.Format, err = f.outputFormat(); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runUsage(cmd.Context(), opts)
		},
	}
	kindVar(cmd.Flags(), &since, "since", "", "duration", "only verifications within this duration (e.g. 24h, 7d)")
	kindVar(cmd.Flags(), &limit, "limit", "20", "int", "how many recent verifications to list")
	return cmd
}

func runUsage(ctx context.Context, opts *UsageOptions) error {
	return opts.withStore(ctx, func(s store.Store) error {
		rep, err := s.Usage(ctx, opts.Ref, opts.Query)
		if err != nil {
			return err
		}
		return printData(opts.IO, opts.Format, rep, func() error { return printUsageTables(opts.Deps, rep) })
	})
}

func printUsageTables(d Deps, rep *keys.UsageReport) error {
	io, now, k := d.IO, d.Now(), rep.Key
	tty := io.IsStdoutTTY()
	last := output.Time(k.LastUsedAt, now, tty, "never")
	fmt.Fprintf(io.Out, "%s (%s): %s, last used %s", output.Escape(k.Name), output.Escape(k.ID),
		output.Plural(int(k.UsageCount), "use", "uses"), last)
	if k.LastUsedIP != "" {
		fmt.Fprintf(io.Out, " from %s", output.Escape(k.LastUsedIP))
	}
	fmt.Fprintf(io.Out, "; history kept %s\n", rep.Retention)
	if k.Quota != nil && k.QuotaRemaining != nil {
		fmt.Fprintf(io.Out, "Quota: %d of %d remaining (%d used)\n", *k.QuotaRemaining, *k.Quota, *k.Quota-*k.QuotaRemaining)
	}
	if len(rep.Daily) == 0 {
		fmt.Fprintln(io.Out, "\nNo verifications recorded.")
		return nil
	}
	fmt.Fprintln(io.Out)
	daily := make([][]string, 0, len(rep.Daily))
	for _, d := range rep.Daily {
		var parts []string
		for _, c := range keys.Codes {
			if n := d.Codes[c]; n > 0 {
				parts = append(parts, fmt.Sprintf("%s %d", c, n))
			}
		}
		daily = append(daily, []string{d.Day, strconv.FormatInt(d.Total, 10), strings.Join(parts, ", ")})
	}
	if err := output.WriteTable(io.Out, []string{"DAY", "VERIFICATIONS", "RESULTS"}, daily); err != nil {
		return err
	}
	fmt.Fprintln(io.Out)
	recent := make([][]string, 0, len(rep.Events))
	for _, e := range rep.Events {
		at := e.At
		when := at.Format(time.RFC3339)
		if tty {
			when = output.Relative(at, now)
		}
		recent = append(recent, []string{when, string(e.Code), orDash(e.IP)})
	}
	return output.WriteTable(io.Out, []string{"TIME", "RESULT", "ADDRESS"}, recent)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
