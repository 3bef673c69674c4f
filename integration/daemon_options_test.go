package integration

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// What a Nix client sets reaches its builds through the daemon: --timeout
// kills its builder, --max-jobs 0 builds nothing here; the daemon's own
// settings (no timeout) stay for other clients.
func TestDaemonClientOptions(t *testing.T) {
	e := newDaemonEnv(t)
	bb, _ := instantiated(t, e, "dep")
	expr := writeFile(t, e.base, "options.nix", `{ bb }:
let bbp = builtins.storePath bb; mk = attrs: derivation ({ system = "x86_64-linux"; builder = "${bbp}/bin/sh"; } // attrs);
in { slow = mk { name = "slow-opts"; args = ["-c" "sleep 30; echo > $out"]; }; quick = mk { name = "quick-opts"; args = ["-c" "echo > $out"]; }; }`)
	drvs := strings.Fields(e.nix(t, "nix-instantiate", expr, "--argstr", "bb", bb, "-A", "slow", "-A", "quick"))
	slow, quick := drvs[0], drvs[1]

	t0 := time.Now()
	r := e.nixResult(t, "nix-store", "-r", "--timeout", "1", slow)
	t.Logf("nix-store -r --timeout 1 through the daemon: exit %d after %v", r.code, time.Since(t0))
	if r.code == 0 || !strings.Contains(string(r.stderr), "timed out") || time.Since(t0) > 20*time.Second {
		t.Errorf("nix-store -r --timeout 1: exit %d after %v, want a timeout\n%s", r.code, time.Since(t0), r.stderr)
	}
	r = e.nixResult(t, "nix-store", "-r", "--max-jobs", "0", quick)
	if r.code == 0 || !strings.Contains(string(r.stderr), "max-jobs is 0") {
		t.Errorf("nix-store -r --max-jobs 0: exit %d, want the build refused\n%s", r.code, r.stderr)
	}
	// The next client, with Nix's defaults, builds it.
	out := e.nix(t, "nix-store", "-r", quick)
	if filepath.Base(out) == "" || !strings.HasSuffix(out, "-quick-opts") {
		t.Errorf("nix-store -r %s printed %q", quick, out)
	}
}
