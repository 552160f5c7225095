package output

import (
	"fmt"
	"math"
	"time"
)

// Time renders t for people on a terminal ("3 days ago", "in 2 hours") and as
// RFC 3339 otherwise; unset is what to print when t is nil.
func Time(t *time.Time, now time.Time, tty bool, unset string) string {
	if t == nil {
		return unset
	}
	if !tty {
		return t.UTC().Format(time.RFC3339)
	}
	return Relative(*t, now)
}

// Relative describes t relative to now in words.
func Relative(t, now time.Time) string {
	d := now.Sub(t)
	future := d < 0
	if future {
		d = -d
	}
	var s string
	switch {
	case d < 5*time.Second:
		return "just now"
	case d < time.Minute:
		s = plural(int(d/time.Second), "second")
	case d < time.Hour:
		s = plural(int(d/time.Minute), "minute")
	case d < 24*time.Hour:
		s = plural(int(d/time.Hour), "hour")
	case d < 30*24*time.Hour:
		s = plural(int(d/(24*time.Hour)), "day")
	case d < 365*24*time.Hour:
		s = plural(int(math.Round(float64(d)/float64(30*24*time.Hour))), "month")
	default:
		s = plural(int(d/(365*24*time.Hour)), "year")
	}
	if future {
		return "in " + s
	}
	return s + " ago"
}

func plural(n int, unit string) string { return Plural(n, unit, unit+"s") }

// Plural is n and the word that goes with it: "1 key", "2 keys", "0 keys".
func Plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
