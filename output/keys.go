package output

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/keyctl/keyctl/store/keys"
)

var statusColors = map[keys.Status]string{
	keys.Active:   "\x1b[32m", // green
	keys.Disabled: "\x1b[33m", // yellow
	keys.Expired:  "\x1b[31m", // red
	keys.Revoked:  "\x1b[31m",
}

// Status renders a status, coloured when colour is on.
func (s *IOStreams) Status(st keys.Status) string {
	if !s.color {
		return string(st)
	}
	return statusColors[st] + string(st) + "\x1b[0m"
}

// KeyTable prints keys as a table for people. On a terminal it fits the
// terminal's width: long names and scopes are cut first.
func KeyTable(s *IOStreams, list []*keys.Key, now time.Time) error {
	if len(list) == 0 {
		if s.IsStdoutTTY() {
			fmt.Fprintln(s.ErrOut, "no keys match")
		}
		return nil
	}
	tty := s.IsStdoutTTY()
	rows := make([][]string, 0, len(list))
	for _, k := range list {
		rows = append(rows, []string{
			k.Name, k.ID, k.Masked(), joinOr(k.Scopes, "-"), string(k.Env), string(k.Status),
			Time(k.ExpiresAt, now, tty, "never"), Time(k.LastUsedAt, now, tty, "never"),
			Time(&k.CreatedAt, now, tty, ""),
		})
	}
	const statusCol = 5
	return TextTable{
		Header: []string{"NAME", "ID", "KEY", "SCOPES", "ENV", "STATUS", "EXPIRES", "LAST USED", "CREATED"},
		Rows:   rows,
		Width:  s.TerminalWidth(),
		Flex:   []int{0, 3},
		Paint: func(col int, cell string) string {
			if col != statusCol {
				return cell
			}
			return s.Status(keys.Status(cell))
		},
	}.Write(s.Out)
}

func joinOr(items []string, none string) string {
	if len(items) == 0 {
		return none
	}
	return strings.Join(items, ",")
}

// KeyDetails prints one key as labelled lines for people, its stored text
// escaped.
func KeyDetails(s *IOStreams, w io.Writer, k *keys.Key, now time.Time) {
	tty := s.IsStdoutTTY()
	when := func(t *time.Time, unset string) string {
		v := Time(t, now, tty, unset)
		if t != nil && tty {
			v += " (" + t.UTC().Format(time.RFC3339) + ")"
		}
		return v
	}
	line := func(label, value string) {
		if value != "" {
			fmt.Fprintf(w, "%-13s %s\n", label+":", Escape(value))
		}
	}
	line("Name", k.Name)
	line("ID", k.ID)
	line("Key", k.Masked())
	line("Description", k.Description)
	line("Scopes", joinOr(k.Scopes, "none"))
	line("Env", string(k.Env))
	fmt.Fprintf(w, "%-13s %s\n", "Status:", s.Status(keys.Status(Escape(string(k.Status)))))
	line("Expires", when(k.ExpiresAt, "never"))
	line("Allowed IPs", joinOr(k.AllowedIPs, "any"))
	line("Quota", quota(k))
	rate := "none"
	if k.RateLimit != nil {
		rate = fmt.Sprintf("%d per %s", k.RateLimit.Count, k.RateLimit.Unit)
	}
	line("Rate limit", rate)
	line("Metadata", metadata(k.Metadata))
	usage := plural(int(k.UsageCount), "use")
	if k.LastUsedAt != nil {
		usage += ", last " + when(k.LastUsedAt, "")
		if k.LastUsedIP != "" {
			usage += " from " + k.LastUsedIP
		}
	}
	line("Usage", usage)
	created := when(&k.CreatedAt, "")
	if k.CreatedBy != "" {
		created += " by " + k.CreatedBy
	}
	line("Created", created)
	line("Updated", when(&k.UpdatedAt, ""))
	line("Rotated", when(k.RotatedAt, ""))
	if k.RevokedAt != nil {
		revoked := when(k.RevokedAt, "")
		if k.RevokeReason != "" {
			revoked += ": " + k.RevokeReason
		}
		line("Revoked", revoked)
	}
}

func quota(k *keys.Key) string {
	if k.QuotaRemaining == nil {
		return "unlimited"
	}
	if k.Quota == nil {
		return fmt.Sprintf("%d remaining", *k.QuotaRemaining)
	}
	return fmt.Sprintf("%d of %d remaining (%d used)", *k.QuotaRemaining, *k.Quota, *k.Quota-*k.QuotaRemaining)
}

func metadata(m map[string]string) string {
	if len(m) == 0 {
		return "none"
	}
	pairs := make([]string, 0, len(m))
	for k, v := range m {
		pairs = append(pairs, k+"="+v)
	}
	slices.Sort(pairs)
	return strings.Join(pairs, ", ")
}

// SecretLines prints a key's live secrets under the key's details: the
// current one and those in a rotation's grace, with when they were issued
// and when they end.
func SecretLines(s *IOStreams, w io.Writer, secrets []keys.SecretInfo, now time.Time) {
	tty := s.IsStdoutTTY()
	when := func(t time.Time) string {
		if tty {
			return Relative(t, now) + " (" + t.UTC().Format(time.RFC3339) + ")"
		}
		return t.UTC().Format(time.RFC3339)
	}
	label := "Secrets:"
	if len(secrets) == 0 {
		fmt.Fprintf(w, "%-13s %s\n", label, "none live")
		return
	}
	for _, sc := range secrets {
		state := "current"
		if sc.EndsAt != nil {
			state = "ends " + when(*sc.EndsAt)
		}
		fmt.Fprintf(w, "%-13s %s…  %s, issued %s\n", label, Escape(sc.Start), state, when(sc.CreatedAt))
		label = ""
	}
}
