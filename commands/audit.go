package commands

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyctl/keyctl/output"
	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/keys"
)

// AuditOptions are the parsed flags of keyctl audit.
type AuditOptions struct {
	Deps
	Filter keys.AuditFilter
	Format output.Format
}

// AuditVerifyOptions are the parsed flags of keyctl audit verify.
type AuditVerifyOptions struct {
	Deps
	Format output.Format
}

func newAuditCmd(f *Factory, runF func(context.Context, *AuditOptions) error) *cobra.Command {
	var key, action, since, actor, limit string
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Show the audit trail of every change",
		Long: `Show the audit trail: every change to a key (create, update, rotate, disable,
enable, revoke), and admin calls refused for lack of scope, with the time,
the actor (the OS user locally; the admin key and the client's address
through the service), the key and what changed. Never a secret or a digest.

Each entry carries the SHA-256 of the previous entry together with its own
content; 'keyctl audit verify' walks that chain.`,
		Example: `  keyctl audit --key billing
  keyctl audit --action revoke --since 30d -o json
  keyctl audit verify`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := &AuditOptions{Deps: f.deps()}
			flt := &opts.Filter
			flt.Key, flt.Actor = key, actor
			if action != "" {
				if !keys.ValidAction(action) {
					return flagErr("action", fmt.Errorf("%q is not an action (%s)", action, strings.Join(keys.AuditActions, ", ")))
				}
				flt.Action = action
			}
			if since != "" {
				d, err := parsePositiveDuration("since", since)
				if err != nil {
					return err
				}
				flt.Since = f.Now().Add(-d)
			}
			if limit != "" {
				n, err := strconv.Atoi(limit)
				if err != nil || n < 1 {
					return flagErr("limit", fmt.Errorf("%q is not a positive number", limit))
				}
				flt.Limit = n
			}
			var err error
			if opts.Format, err = f.outputFormat(); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runAudit(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&key, "key", "", "only entries about this key (id or name)")
	fl.StringVar(&action, "action", "", "only this action: "+strings.Join(keys.AuditActions, ", "))
	kindVar(fl, &since, "since", "", "duration", "only entries within this duration (e.g. 24h, 30d)")
	fl.StringVar(&actor, "actor", "", "only entries by this actor (a user name, or an admin key's name or id)")
	kindVar(fl, &limit, "limit", "", "int", "only the most recent N entries")
	cmd.AddCommand(newAuditVerifyCmd(f, nil))
	return cmd
}

func runAudit(ctx context.Context, opts *AuditOptions) error {
	return opts.withStore(ctx, func(s store.Store) error {
		entries, err := s.Audit(ctx, opts.Filter)
		if err != nil {
			return err
		}
		return printData(opts.IO, opts.Format, entries, func() error { return auditTable(opts.Deps, entries) })
	})
}

func newAuditVerifyCmd(f *Factory, runF func(context.Context, *AuditVerifyOptions) error) *cobra.Command {
	return &cobra.Command{
		Use:   "verify",
		Short: "Check that no audit entry was edited, deleted or reordered",
		Long: `Walk the audit chain from the first entry. Exit 0 when it is intact; exit 1,
naming the first bad entry, when any entry was edited, deleted or reordered
behind keyctl's back (with the sqlite3 shell, say).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := &AuditVerifyOptions{Deps: f.deps()}
			var err error
			if opts.Format, err = f.outputFormat(); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runAuditVerify(cmd.Context(), opts)
		},
	}
}

func runAuditVerify(ctx context.Context, opts *AuditVerifyOptions) error {
	return opts.withStore(ctx, func(s store.Store) error {
		check, err := s.VerifyAudit(ctx)
		if err != nil {
			return err
		}
		if err := printData(opts.IO, opts.Format, check, func() error { return nil }); err != nil {
			return err
		}
		if !check.OK {
			return &exitError{code: exitFailure, err: fmt.Errorf("audit trail broken at entry %d: %s", check.BadSeq, check.Problem)}
		}
		head := check.Head
		if len(head) > 16 {
			head = head[:16]
		}
		opts.IO.Notef("keyctl: audit trail intact: %s, head %s", output.Plural(int(check.Entries), "entry", "entries"), head)
		return nil
	})
}

func auditTable(d Deps, entries []*keys.AuditEntry) error {
	if len(entries) == 0 {
		return nil
	}
	tty, now := d.IO.IsStdoutTTY(), d.Now()
	rows := make([][]string, 0, len(entries))
	for _, e := range entries {
		at := e.At
		when := at.UTC().Format(time.RFC3339)
		if tty {
			when = output.Relative(at, now)
		}
		key := e.KeyName
		if e.KeyID != "" {
			key += " (" + e.KeyID + ")"
		}
		rows = append(rows, []string{strconv.FormatInt(e.Seq, 10), when, actorString(e.Actor), e.Action, orDash(key), describeChanges(e)})
	}
	return output.WriteTable(d.IO.Out, []string{"SEQ", "TIME", "ACTOR", "ACTION", "KEY", "CHANGES"}, rows)
}

func actorString(a keys.Actor) string {
	s := a.Name
	if a.ID != "" {
		s += " (" + a.ID + ")"
	}
	if a.Address != "" {
		s += " from " + a.Address
	}
	return s
}

// describeChanges summarises an entry's changes on one line.
func describeChanges(e *keys.AuditEntry) string {
	fields := make([]string, 0, len(e.Changes))
	for name := range e.Changes {
		fields = append(fields, name)
	}
	slices.Sort(fields)
	parts := make([]string, 0, len(fields)+1)
	for _, name := range fields {
		c := e.Changes[name]
		if c.From == nil {
			parts = append(parts, name+"="+compactJSON(c.To))
		} else {
			parts = append(parts, name+": "+compactJSON(c.From)+" → "+compactJSON(c.To))
		}
	}
	if e.Note != "" {
		parts = append(parts, "("+e.Note+")")
	}
	return strings.Join(parts, "; ")
}

func compactJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
