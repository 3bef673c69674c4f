package sandbox

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// buildProbe builds internal/probe statically and returns its path.
func buildProbe(t *testing.T) []byte {
	t.Helper()
	probe := filepath.Join(t.TempDir(), "probe")
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin/go")
	}
	build := exec.Command(gobin, "build", "-o", probe, "storefs/sandbox/internal/probe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the probe: %v\n%s", err, out)
	}
	data, err := os.ReadFile(probe)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// A fork bomb is bounded by MaxProcesses: with a cgroup where the host
// allows one (this host mounts cgroup v1's pids hierarchy), and with
// RLIMIT_NPROC of the build user otherwise; without a limit it is not.
func TestMaxProcesses(t *testing.T) {
	probe := buildProbe(t)
	forked := regexp.MustCompile(`forked (\d+) of (\d+)`)
	run := func(t *testing.T, limit int) int {
		b := newBuild(t, "")
		if err := os.WriteFile(filepath.Join(b.Inputs[0].Host, "bin/probe"), probe, 0o555); err != nil {
			t.Fatal(err)
		}
		b.Builder, b.Args = bbBin+"/probe", []string{"fork", "300", bbBin + "/busybox"}
		b.MaxProcesses = limit
		b.mustSucceed(t)
		m := forked.FindStringSubmatch(b.log.String())
		if m == nil {
			t.Fatalf("the probe said:\n%s", b.log)
		}
		b.noneLeft(t)
		n, _ := strconv.Atoi(m[1])
		t.Logf("limit %d: %s", limit, m[0])
		return n
	}
	cg, err := newBuildCgroup(50, 0)
	if err != nil {
		t.Fatal(err)
	}
	if cg == nil {
		t.Log("this host offers no pids cgroup: only RLIMIT_NPROC is tested")
	} else {
		t.Logf("this host's build cgroups: %s %v", cg.how, cg.dirs)
		cg.remove()
		if n := run(t, 50); n >= 50 || n == 0 {
			t.Errorf("with a cgroup's pids.max of 50 the builder started %d processes", n)
		}
		// A builder that fails on the limit says so.
		b := newBuild(t, `i=0; while [ $i -lt 100 ]; do sleep 30 & i=$((i+1)); done; echo all forked`)
		b.MaxProcesses = 20
		res := b.run(t)
		if got := res.Err(); got == nil || !strings.HasSuffix(got.Error(), "after reaching its limit of 20 processes and threads") {
			t.Errorf("a fork bomb under a limit of 20: %v\n%s", got, b.log)
		}
	}
	cgroupsOff.Store(true)
	n := run(t, 50)
	cgroupsOff.Store(false)
	if n >= 50 || n == 0 {
		t.Errorf("with RLIMIT_NPROC of 50 the builder started %d processes", n)
	}
	if n := run(t, 0); n != 300 {
		t.Errorf("with no limit the builder started %d processes of 300", n)
	}
}

// MaxMemory kills a builder that uses more, where a cgroup holds it.
func TestMaxMemory(t *testing.T) {
	cg, err := newBuildCgroup(0, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	if cg == nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("no cgroup with a memory controller on this host, and CI may not skip")
		}
		t.Skip("no cgroup with a memory controller to test on this host")
	}
	cg.remove()
	// A shell variable of 200 MB lives in the shell's memory.
	b := newBuild(t, `x=$(busybox head -c 200000000 /dev/zero | busybox tr '\0' a); echo ${#x} > $out`)
	b.MaxMemory = 64 << 20
	res := b.run(t)
	if res.Success() {
		t.Fatalf("a builder of 200 MB ran under a limit of 64 MB: %v\n%s", res, b.log)
	}
	if got := res.Err().Error(); !strings.HasSuffix(got, "after reaching its limit of 67108864 bytes of memory") {
		t.Errorf("killed for its memory: %q does not say so", got)
	}
	b.noneLeft(t)
	b = newBuild(t, `x=$(busybox head -c 2000000 /dev/zero | busybox tr '\0' a); echo ${#x} > $out`)
	b.MaxMemory = 64 << 20
	b.mustSucceed(t)
}
