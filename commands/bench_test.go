package commands

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// BenchmarkProcess compares the wall time of a whole `keyctl verify`
// process (start, open the database, verify, record the use) with that of
// `keyctl version`, on the real binary. Run it with
//
//	go test -run '^$' -bench BenchmarkProcess -benchtime 200x ./commands
//
// It reports the median of each and their ratio.
func BenchmarkProcess(b *testing.B) {
	dir := b.TempDir()
	bin := filepath.Join(dir, "keyctl")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/keyctl").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	env := append(os.Environ(), "KEYCTL_DB="+filepath.Join(dir, "keyctl.db"), "XDG_CONFIG_HOME="+dir)
	run := func(stdin []byte, args ...string) []byte {
		cmd := exec.Command(bin, args...)
		cmd.Env, cmd.Stdin = env, bytes.NewReader(stdin)
		out, err := cmd.Output()
		if err != nil {
			b.Fatalf("keyctl %v: %v", args, err)
		}
		return out
	}
	secret := run(nil, "create", "--name", "bench", "--scope", "sdk", "--env", "production")

	var version, verify []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		run(nil, "version")
		version = append(version, time.Since(start))
		start = time.Now()
		run(secret, "verify", "--scope", "sdk", "--env", "production", "-q")
		verify = append(verify, time.Since(start))
	}
	b.StopTimer()
	median := func(d []time.Duration) float64 {
		slices.Sort(d)
		return float64(d[len(d)/2].Microseconds()) / 1e3
	}
	v, w := median(version), median(verify)
	b.ReportMetric(v, "version-ms")
	b.ReportMetric(w, "verify-ms")
	b.ReportMetric(w/v, "ratio")
}
