package integration

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestBuildPidsMax: a fork bomb is bounded by build-pids-max: it cannot
// fork past the limit and fails, saying it reached the limit where a
// cgroup held it; under the default limit the same 400 processes are fine.
func TestBuildPidsMax(t *testing.T) {
	e := newBuildEnv(t)
	tag := randomTag(t)
	drvs := e.instantiate(t, fmt.Sprintf(`{
  bomb = mk { name = "bomb-%s"; args = ["-c" "i=0; while [ $i -lt 400 ]; do sleep 30 & i=$((i+1)); done; echo all forked; echo ok > $out"]; };
}`, tag), "bomb")
	e.addDrvs(t, drvs...)
	r := e.sfsResult(t, "realise", "--build-pids-max", "50", drvs[0])
	if r.code != 100 || !strings.Contains(string(r.stderr), "can't fork") || strings.Contains(string(r.stderr), "all forked") {
		t.Errorf("a fork bomb under build-pids-max 50: exit %d, want 100 and busybox's \"can't fork\"\n%s", r.code, r.stderr)
	}
	// Where a pids cgroup holds the build (cgroup v1's pids hierarchy here),
	// the error says the limit was reached.
	if _, err := os.Stat("/sys/fs/cgroup/pids/cgroup.procs"); err == nil && !strings.Contains(string(r.stderr), "after reaching its limit of 50 processes and threads") {
		t.Errorf("a fork bomb stopped by its cgroup does not say it reached its limit:\n%s", r.stderr)
	}
	e.checkInvalid(t, e.outputsOf(t, drvs[0])...)
	r = e.sfsResult(t, "realise", "--retry-failed", drvs[0])
	if r.code != 0 {
		t.Errorf("400 processes under the default build-pids-max: exit %d\n%s", r.code, r.stderr)
	}
	e.checkVerify(t)
}
