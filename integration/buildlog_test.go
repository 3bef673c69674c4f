package integration

import (
	"fmt"
	"strings"
	"testing"
)

// TestMaxBuildLogSizeAsNix: a builder that writes more than
// max-build-log-size is killed, with exit 1 and Nix's words, in both; a
// log past keep-build-log-size keeps its start, a line saying what was
// dropped, and its last lines, and the build succeeds.
func TestMaxBuildLogSizeAsNix(t *testing.T) {
	e := newBuildEnv(t)
	tag := randomTag(t)
	drvs := e.instantiate(t, fmt.Sprintf(`{
  loud = mk { name = "loud-%s"; args = ["-c" "i=0; while [ $i -lt 20000 ]; do echo line $i of a loud builder; i=$((i+1)); done; echo done > $out"]; };
}`, tag), "loud")
	e.addDrvs(t, drvs...)
	nix := runCmd(t, e.n.env, nil, "nix-store", "--realise", drvs[0], "--option", "max-build-log-size", "1000")
	r := e.sfsResult(t, "realise", "--max-build-log-size", "1000", drvs[0])
	want := "killed after writing more than 1000 bytes of log output"
	if nix.code != 1 || !strings.Contains(string(nix.stderr), want) {
		t.Fatalf("nix-store: exit %d\n%s", nix.code, nix.stderr)
	}
	if r.code != 1 || !strings.Contains(string(r.stderr), want) {
		t.Errorf("storefs realise --max-build-log-size 1000: exit %d, want 1 and %q\n%s", r.code, want, r.stderr)
	}
	e.checkInvalid(t, e.outputsOf(t, drvs[0])...)

	// The same builder with a log cap: it succeeds, and the log is cut.
	r = e.sfsResult(t, "realise", "--retry-failed", "--keep-build-log-size", "10K", drvs[0])
	if r.code != 0 {
		t.Fatalf("realise with a log cap: exit %d\n%s", r.code, r.stderr)
	}
	log := string(e.sfs(t, "log", drvs[0]))
	if !strings.HasPrefix(log, "line 0 of a loud builder\n") || !strings.Contains(log, "more bytes of log output not kept") ||
		!strings.HasSuffix(log, "line 19999 of a loud builder\n") || len(log) > 12<<10 {
		t.Errorf("a log cut at 10K: %d bytes:\n%.400s\n...\n%s", len(log), log, log[max(0, len(log)-400):])
	}
	e.checkVerify(t)
}
