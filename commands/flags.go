package commands

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/keyctl/keyctl/store/keys"
)

var daysRE = regexp.MustCompile(`^(\d+)d$`)

// kindValue is a string flag whose help names the kind of value it takes
// (int, duration, size, …): its values are parsed after the flags, since
// they also take words such as unlimited, never or none.
type kindValue struct {
	p    *string
	kind string
}

func (v *kindValue) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}
func (v *kindValue) Set(s string) error { *v.p = s; return nil }
func (v *kindValue) Type() string       { return v.kind }

// emptyAllowed are the flags whose empty value means something: an empty
// description or reason.
var emptyAllowed = map[string]bool{"description": true, "reason": true}

// checkEmpty refuses a flag given an empty value (or an empty item, for a
// repeated flag): --allow-ip "" or --scope "" must not pass for "no
// restriction", nor --name "" for "generate one".
func checkEmpty(cmd *cobra.Command) error {
	var err error
	cmd.Flags().Visit(func(fl *pflag.Flag) {
		if err != nil || emptyAllowed[fl.Name] || fl.Value.Type() == "bool" {
			return
		}
		values := []string{fl.Value.String()}
		if sv, ok := fl.Value.(pflag.SliceValue); ok {
			values = sv.GetSlice()
		}
		for _, v := range values {
			if strings.TrimSpace(v) == "" {
				err = withHint(flagErr(fl.Name, errors.New("empty value")), "leave the flag out rather than give it nothing")
				return
			}
		}
	})
	return err
}

// kindVar defines a string flag shown in help as --name KIND.
func kindVar(fl *pflag.FlagSet, p *string, name, def, kind, usage string) {
	*p = def
	fl.Var(&kindValue{p: p, kind: kind}, name, usage)
}

// parseDuration accepts Go durations (30s, 15m, 24h) and whole days (90d).
func parseDuration(s string) (time.Duration, error) {
	if m := daysRE.FindStringSubmatch(s); m != nil {
		n, err := strconv.Atoi(m[1])
		if err == nil && n <= 100*365 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	} else if d, err := time.ParseDuration(s); err == nil {
		return d, nil
	}
	return 0, fmt.Errorf("%q is not a duration (such as 30s, 15m, 24h, 90d)", s)
}

// parsePositiveDuration is parseDuration for windows that must be > 0.
func parsePositiveDuration(flag, s string) (time.Duration, error) {
	d, err := parseDuration(s)
	if err == nil && d <= 0 {
		err = fmt.Errorf("%q must be longer than zero", s)
	}
	if err != nil {
		return 0, flagErr(flag, err)
	}
	return d, nil
}

// parseExpires accepts a duration from now, a date (midnight UTC), an RFC
// 3339 time, or "never" (never is true). The time must be in the future.
func parseExpires(s string, now time.Time) (t *time.Time, never bool, err error) {
	if strings.EqualFold(s, "never") {
		return nil, true, nil
	}
	var at time.Time
	if d, derr := parseDuration(s); derr == nil {
		at = now.Add(d)
	} else if day, derr := time.Parse(time.DateOnly, s); derr == nil {
		at = day
	} else if ts, derr := time.Parse(time.RFC3339, s); derr == nil {
		at = ts
	} else {
		return nil, false, flagErr("expires", fmt.Errorf("%q is not a duration, date or time (30s, 15m, 24h, 90d, 2027-01-31, 2027-01-31T12:00:00Z or never)", s))
	}
	at = at.UTC().Truncate(time.Second)
	if !at.After(now) {
		return nil, false, flagErr("expires", fmt.Errorf("%q is not in the future", s))
	}
	return &at, false, nil
}

// parseScopes splits repeated, comma-separated scope flags into a set. An
// empty scope is an error, never "no restriction".
func parseScopes(flag string, values []string) ([]string, error) {
	var out []string
	for _, v := range values {
		for _, s := range strings.Split(v, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				return nil, flagErr(flag, fmt.Errorf("%q holds an empty scope", v))
			}
			if err := keys.ValidateScope(s); err != nil {
				return nil, flagErr(flag, err)
			}
			out = append(out, s)
		}
	}
	return keys.NormalizeSet(out), nil
}

// parseIPs checks repeated, comma-separated IP and CIDR flags. An empty
// one is an error: it would read as "any address".
func parseIPs(flag string, values []string) ([]string, error) {
	var out []string
	for _, v := range values {
		for _, s := range strings.Split(v, ",") {
			if strings.TrimSpace(s) == "" {
				return nil, flagErr(flag, fmt.Errorf("%q holds an empty address", v))
			}
			ip, err := keys.ParseAllowedIP(s)
			if err != nil {
				return nil, flagErr(flag, err)
			}
			out = append(out, ip)
		}
	}
	return keys.NormalizeSet(out), nil
}

// parseMeta parses repeated key=value flags.
func parseMeta(flag string, values []string) (map[string]string, error) {
	m := map[string]string{}
	for _, v := range values {
		k, val, ok := strings.Cut(v, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" || strings.Contains(val, "\n") {
			return nil, flagErr(flag, fmt.Errorf("%q is not key=value", v))
		}
		m[k] = val
	}
	return m, nil
}

// parseQuota accepts a number of uses (0 or more) or "unlimited".
func parseQuota(s string) (n *int64, unlimited bool, err error) {
	if strings.EqualFold(s, "unlimited") || strings.EqualFold(s, "none") {
		return nil, true, nil
	}
	v, perr := strconv.ParseInt(s, 10, 64)
	if perr != nil || v < 0 {
		return nil, false, flagErr("quota", fmt.Errorf("%q is not a number of uses (0 or more, or unlimited)", s))
	}
	return &v, false, nil
}

// parseRateLimit accepts N/s, N/m, N/h, N/d or "none".
func parseRateLimit(s string) (r *keys.RateLimit, none bool, err error) {
	if strings.EqualFold(s, "none") || strings.EqualFold(s, "unlimited") {
		return nil, true, nil
	}
	r, err = keys.ParseRateLimit(s)
	if err != nil {
		return nil, false, flagErr("rate-limit", err)
	}
	return r, false, nil
}

func parseEnv(flag, s string) (keys.Env, error) {
	e, err := keys.ParseEnv(s)
	if err != nil {
		return "", flagErr(flag, err)
	}
	return e, nil
}
