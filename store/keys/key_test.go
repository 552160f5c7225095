package keys

import (
	"testing"
	"time"
)

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", time.Hour: "1h", 90 * time.Minute: "1h30m", 24 * time.Hour: "1d", 30 * 24 * time.Hour: "30d",
		36 * time.Hour: "36h", 90 * time.Second: "1m30s", 15 * time.Minute: "15m",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
