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
	// Checkpoints are heads kept elsewhere (--head) that the trail must
	// still hold unchanged.
	Checkpoints []keys.Checkpoint
}

// AuditHeadOptions are the parsed flags of keyctl audit head.
type AuditHeadOptions struct {
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

Each entry carries a link over the previous entry's and its own content:
SHA-256, or, once the database has a pepper, HMAC-SHA256 under a key
derived from it, so that rewriting history needs the pepper as well as the
database. 'keyctl audit verify' walks that chain; 'keyctl audit head'
prints its head, to keep elsewhere and check later with
'keyctl audit verify --head SEQ:DIGEST'.`,
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
	cmd.AddCommand(newAuditVerifyCmd(f, nil), newAuditHeadCmd(f, nil))
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
	var heads []string
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check that no audit entry was edited, deleted or reordered",
		Long: `Walk the audit chain from the first entry. Exit 0 when it is intact; exit 1,
naming the first bad entry, when any entry was edited, deleted or reordered
behind keyctl's back (with the sqlite3 shell, say).

Someone who can write the database can also recompute an unkeyed chain
(one without a pepper) after rewriting it. --head SEQ:DIGEST, a head kept
elsewhere ('keyctl audit head'), proves the trail still holds that entry
unchanged: a rewrite of anything up to it, or a truncation after it, fails.`,
		Example: `  keyctl audit verify
  keyctl audit verify --head "$(cat audit-head.txt)"`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := &AuditVerifyOptions{Deps: f.deps()}
			for _, h := range heads {
				cp, err := keys.ParseCheckpoint(h)
				if err != nil {
					return flagErr("head", err)
				}
				opts.Checkpoints = append(opts.Checkpoints, cp)
			}
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
	cmd.Flags().StringArrayVar(&heads, "head", nil, "a head kept elsewhere, SEQ:DIGEST, that the trail must still hold unchanged; repeatable")
	return cmd
}

func runAuditVerify(ctx context.Context, opts *AuditVerifyOptions) error {
	return opts.withStore(ctx, func(s store.Store) error {
		check, err := s.VerifyAudit(ctx, opts.Checkpoints...)
		if err != nil {
			return err
		}
		if err := printData(opts.IO, opts.Format, check, func() error { return nil }); err != nil {
			return err
		}
		if !check.OK {
			return &exitError{code: exitFailure, err: fmt.Errorf("audit trail broken at entry %d: %s", check.BadSeq, check.Problem)}
		}
		opts.IO.Notef("keyctl: audit trail intact: %s, head %s", output.Plural(int(check.Entries), "entry", "entries"), shortHash(check.Head))
		for _, cp := range opts.Checkpoints {
			opts.IO.Notef("keyctl: it holds the head %d:%s unchanged", cp.Seq, shortHash(cp.Hash))
		}
		return nil
	})
}

func shortHash(h string) string {
	if len(h) > 16 {
		return h[:16]
	}
	return h
}

// auditHead is what keyctl audit head prints with -o json.
type auditHead struct {
	Head   string `json:"head"` // SEQ:DIGEST
	Seq    int64  `json:"seq"`
	Digest string `json:"digest"`
}

func newAuditHeadCmd(f *Factory, runF func(context.Context, *AuditHeadOptions) error) *cobra.Command {
	return &cobra.Command{
		Use:   "head",
		Short: "Print the audit chain's head, to keep elsewhere",
		Long: `Walk the audit chain and, when it is intact, print its head as SEQ:DIGEST on
stdout: the last entry's sequence number and link. Keep it where the
database's writers cannot reach (a CI artifact, a ticket, a log line);
'keyctl audit verify --head SEQ:DIGEST' later proves the trail still holds
that entry unchanged, so that a rewrite or a truncation after it shows,
even without a pepper. Exit 1 when the chain is broken or empty.`,
		Example: `  keyctl audit head > audit-head.txt
  keyctl audit verify --head "$(cat audit-head.txt)"`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := &AuditHeadOptions{Deps: f.deps()}
			var err error
			if opts.Format, err = f.outputFormat(); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runAuditHead(cmd.Context(), opts)
		},
	}
}

func runAuditHead(ctx context.Context, opts *AuditHeadOptions) error {
	return opts.withStore(ctx, func(s store.Store) error {
		check, err := s.VerifyAudit(ctx)
		if err != nil {
			return err
		}
		if !check.OK {
			return fmt.Errorf("audit trail broken at entry %d: %s: its head is not worth keeping", check.BadSeq, check.Problem)
		}
		if check.HeadSeq == 0 {
			return fmt.Errorf("the audit trail is empty: there is no head to keep yet")
		}
		h := keys.Checkpoint{Seq: check.HeadSeq, Hash: check.Head}
		return printData(opts.IO, opts.Format, auditHead{Head: h.String(), Seq: h.Seq, Digest: h.Hash}, func() error {
			_, err := fmt.Fprintln(opts.IO.Out, h)
			opts.IO.Notef("keyctl: keep this head where the database's writers cannot reach it; 'keyctl audit verify --head %s' checks it", h)
			return err
		})
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
