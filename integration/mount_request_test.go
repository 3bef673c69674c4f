package integration

import (
	"strings"
	"testing"
	"time"
)

// The flags of a storefs realise sent to a running mount apply to that
// request: --timeout kills its builder (exit 101), --max-jobs 0 builds
// nothing, -k builds what it can; the mount's own lookups keep the mount's
// settings.
func TestRealiseThroughMountKeepsFlags(t *testing.T) {
	m := newMountStore(t, freshStoreDir(t))
	slow, _ := m.derivation(t, "slow-flags", "sleep 30; mkdir $out")
	quick, quickOut := m.derivation(t, "quick-flags", "mkdir $out")
	bad, _ := m.derivation(t, "bad-flags", "exit 1")
	m.mount(t)

	t0 := time.Now()
	r := m.sfsResult(t, "realise", "--timeout", "1", slow)
	t.Logf("realise --timeout 1 through the mount: exit %d after %v", r.code, time.Since(t0))
	if r.code != 101 || !strings.Contains(string(r.stderr), "timed out") {
		t.Errorf("realise --timeout 1: exit %d, want 101 (timed out)\n%s", r.code, r.stderr)
	}
	if d := time.Since(t0); d > 20*time.Second {
		t.Errorf("--timeout 1 took %v: the mount's settings (no timeout) applied", d)
	}
	r = m.sfsResult(t, "realise", "--max-jobs", "0", quick)
	if r.code == 0 || !strings.Contains(string(r.stderr), "max-jobs is 0") {
		t.Errorf("realise --max-jobs 0: exit %d, want a refusal naming max-jobs\n%s", r.code, r.stderr)
	}
	// Keep going: the good target is built despite the failing one.
	r = m.sfsResult(t, "realise", "-k", "--retry-failed", bad, quick)
	if r.code != 100 || !strings.Contains(string(r.stdout), quickOut) {
		t.Errorf("realise -k bad quick: exit %d, stdout %q, want 100 and quick's output\n%s", r.code, r.stdout, r.stderr)
	}
	if st := m.status(t); len(st.Running) != 0 {
		t.Errorf("still running: %v", st.Running)
	}
}
