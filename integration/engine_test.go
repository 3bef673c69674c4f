package integration

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"storefs/realise"
)

// The engine's behaviour through storefs realise: build slots, one build
// per derivation across processes, failures, limits and cancellation.

// builderProcs lists the processes running as a builder's host uid
// (realise.DefaultUIDBase and up), by pid with their command lines. Every
// store on the machine uses these uids (mount_test.go finds its builders
// here by a marker in their command lines).
func builderProcs(t testing.TB) map[int]string {
	t.Helper()
	return procsWhere(t, func(dir string) bool { return true })
}

// storeBuilders lists the builder processes of the store whose state dir
// is state: those whose mounts come from under state.
func storeBuilders(t testing.TB, state string) map[int]string {
	t.Helper()
	return procsWhere(t, func(dir string) bool {
		mounts, err := os.ReadFile(filepath.Join(dir, "mountinfo"))
		return err == nil && bytes.Contains(mounts, []byte(" "+state+"/"))
	})
}

// procsWhere lists the processes of builder uids for which keep (given
// /proc/<pid>) is true.
func procsWhere(t testing.TB, keep func(dir string) bool) map[int]string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	found := map[int]string{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		dir := filepath.Join("/proc", e.Name())
		status, err := os.ReadFile(filepath.Join(dir, "status"))
		if err != nil || !builderUID(string(status)) || !keep(dir) {
			continue // gone meanwhile, or not one we look for
		}
		cmdline, _ := os.ReadFile(filepath.Join(dir, "cmdline"))
		found[pid] = strings.ReplaceAll(string(cmdline), "\x00", " ")
	}
	return found
}

// builderUID says whether a /proc/<pid>/status is of a builder's host uid.
func builderUID(status string) bool {
	for _, line := range strings.Split(status, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "Uid:" {
			continue
		}
		for _, u := range f[1:] {
			if uid, _ := strconv.Atoi(u); uid >= realise.DefaultUIDBase && uid < realise.DefaultUIDBase+4096 {
				return true
			}
		}
	}
	return false
}

// noBuilderLeft fails the test if a builder's process is still running.
func (e *buildEnv) noBuilderLeft(t testing.TB) {
	t.Helper()
	if left := storeBuilders(t, e.state); len(left) > 0 {
		t.Errorf("builder processes survived: %v", left)
	}
}

// waitForBuilder waits until some builder process runs.
func (e *buildEnv) waitForBuilder(t testing.TB) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if len(storeBuilders(t, e.state)) > 0 {
			return
		}
	}
	t.Fatal("no builder started within 20s")
}

// waitBuilderWrote waits until a builder has written contents to the file
// name in the output whose store path is out (in the store's scratch
// space, state/tmp), and returns how long that took.
func (e *buildEnv) waitBuilderWrote(t testing.TB, out, name, contents string) time.Duration {
	t.Helper()
	t0 := time.Now()
	scratch := filepath.Join(e.state, "tmp")
	suffix := string(filepath.Separator) + filepath.Join(filepath.Base(out), name)
	for {
		found := false
		// Errors are entries that come and go while builds run.
		filepath.WalkDir(scratch, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() && strings.HasSuffix(p, suffix) {
				data, _ := os.ReadFile(p)
				found = found || string(data) == contents
			}
			return nil
		})
		if found {
			return time.Since(t0)
		}
		if time.Since(t0) > 20*time.Second {
			t.Fatalf("no builder wrote %q to %s/%s under %s within 20 s", contents, out, name, scratch)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startSfs starts storefs on the env's store without waiting for it.
func (e *buildEnv) startSfs(t testing.TB, args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(storefsBin, append([]string{"--store-dir", storeDir, "--state-dir", e.state}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &out, &errb
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

var buildingRE = regexp.MustCompile(`(?m)^building (\S+)$`)

// buildsIn lists the derivations a storefs realise's stderr says it built.
func buildsIn(stderr []byte) []string {
	var out []string
	for _, m := range buildingRE.FindAllSubmatch(stderr, -1) {
		out = append(out, string(m[1]))
	}
	return out
}

// TestEngineMaxJobs realises a 200-node DAG whose builders record when they
// run (host uptime, read inside the sandbox): never more than --max-jobs
// at once, and each node built once.
func TestEngineMaxJobs(t *testing.T) {
	e := newBuildEnv(t)
	drvs := e.instantiate(t, dagExpr(200, "jobs", 0.2), "root")
	e.addDrvs(t, drvs...)
	t0 := time.Now()
	r := e.sfsResult(t, "realise", "--max-jobs", "4", drvs[0])
	if r.code != 0 {
		t.Fatalf("realise: exit %d\n%s", r.code, r.stderr)
	}
	t.Logf("200 nodes, 0.2s each, --max-jobs 4: %v", time.Since(t0))
	builds := buildsIn(r.stderr)
	seen := map[string]bool{}
	for _, b := range builds {
		if seen[b] {
			t.Errorf("%s built twice", b)
		}
		seen[b] = true
	}
	if len(seen) != 200 {
		t.Errorf("%d derivations built, want 200", len(seen))
	}
	type span struct{ start, end float64 }
	var spans []span
	for _, drv := range strings.Fields(e.n.line(t, "nix-store", "-qR", drvs[0])) {
		if !strings.HasSuffix(drv, ".drv") {
			continue
		}
		out := e.outputsOf(t, drv)[0]
		data, err := os.ReadFile(filepath.Join(e.state, "store", strings.TrimPrefix(out, storeDir+"/")))
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(string(data))
		if len(f) < 2 {
			t.Fatalf("%s: %q has no times", out, data)
		}
		s, err1 := strconv.ParseFloat(f[0], 64)
		en, err2 := strconv.ParseFloat(f[1], 64)
		if err1 != nil || err2 != nil || en < s {
			t.Fatalf("%s: bad times %q", out, data)
		}
		spans = append(spans, span{s, en})
	}
	// The most builders running at once: sweep the starts and ends; an end
	// at the same instant as a start comes first (times are in 1/100 s).
	type edge struct {
		at    float64
		delta int
	}
	var edges []edge
	for _, s := range spans {
		edges = append(edges, edge{s.start, 1}, edge{s.end, -1})
	}
	sort.Slice(edges, func(i, j int) bool {
		if edges[i].at != edges[j].at {
			return edges[i].at < edges[j].at
		}
		return edges[i].delta < edges[j].delta
	})
	most, cur := 0, 0
	for _, ed := range edges {
		cur += ed.delta
		most = max(most, cur)
	}
	t.Logf("at most %d builders at once", most)
	if most > 4 {
		t.Errorf("%d builders ran at once with --max-jobs 4", most)
	}
	if most < 4 {
		t.Errorf("at most %d builders ran at once with --max-jobs 4 and a DAG 20 wide: slots are wasted", most)
	}
	e.noBuilderLeft(t)
	e.checkVerify(t)
}

// TestEngineConcurrentRealise runs 20 storefs realise processes of one
// derivation at once: one build, and every process prints its output.
func TestEngineConcurrentRealise(t *testing.T) {
	e := newBuildEnv(t)
	drvs := e.instantiate(t, `{
  once = mk { name = "once"; args = ["-c" "read token < /proc/sys/kernel/random/uuid; echo token $token; sleep 1; echo $token > $out"]; };
  onceBad = mk { name = "once-bad"; args = ["-c" "sleep 1; echo failing; exit 1"]; };
}`, "once", "onceBad")
	e.addDrvs(t, drvs...)
	type run struct {
		code        int
		out, stderr string
	}
	realise20 := func(drv string) []run {
		runs := make([]run, 20)
		var wg sync.WaitGroup
		for i := range runs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cmd, out, errb := e.startSfs(t, "realise", drv)
				err := cmd.Wait()
				runs[i] = run{exitCode(err), out.String(), errb.String()}
			}()
		}
		wg.Wait()
		return runs
	}
	runs := realise20(drvs[0])
	outPath := e.outputsOf(t, drvs[0])[0]
	builds := 0
	for i, r := range runs {
		if r.code != 0 || strings.TrimSpace(r.out) != outPath {
			t.Errorf("process %d: exit %d, printed %q, want %s\n%s", i, r.code, r.out, outPath, r.stderr)
		}
		builds += len(buildsIn([]byte(r.stderr)))
	}
	if builds != 1 {
		t.Errorf("%d builds started, want 1", builds)
	}
	data, err := os.ReadFile(filepath.Join(e.state, "store", strings.TrimPrefix(outPath, storeDir+"/")))
	if err != nil {
		t.Fatal(err)
	}
	log := e.sfs(t, "log", drvs[0])
	if want := "token " + string(data); string(log) != want {
		t.Errorf("the log is %q, want %q: more than one build ran", log, want)
	}

	// A failing one: one build too, and every process fails with its log.
	builds = 0
	for i, r := range realise20(drvs[1]) {
		if r.code != 100 || !strings.Contains(r.stderr, drvs[1]) || !strings.Contains(r.stderr, "> failing") {
			t.Errorf("failing, process %d: exit %d, want 100 with the log\n%s", i, r.code, r.stderr)
		}
		builds += len(buildsIn([]byte(r.stderr)))
	}
	if builds != 1 {
		t.Errorf("failing: %d builds started, want 1", builds)
	}
	e.checkVerify(t)
}

const failingExpr = `rec {
  bad = mk { name = "bad"; args = ["-c" "echo about to fail; echo the reason >&2; exit 3"]; };
  needsBad = mk { name = "needs-bad"; args = ["-c" "echo ${bad} > $out"]; };
  slow = mk { name = "slow"; args = ["-c" "sleep 3; echo slow > $out"]; };
}`

// TestEngineFailure realises a failing derivation, one that needs it and
// an unrelated slow one, without and with --keep-going.
func TestEngineFailure(t *testing.T) {
	e := newBuildEnv(t)
	drvs := e.instantiate(t, failingExpr, "needsBad", "slow")
	e.addDrvs(t, drvs...)
	slowOut := e.outputsOf(t, drvs[1])[0]

	t0 := time.Now()
	r := e.sfsResult(t, "realise", "--max-jobs", "2", drvs[0], drvs[1])
	took := time.Since(t0)
	if r.code != 100 {
		t.Errorf("without --keep-going: exit %d, want 100\n%s", r.code, r.stderr)
	}
	if took > 2500*time.Millisecond {
		t.Errorf("without --keep-going the slow build went on: realise took %v", took)
	}
	msg := string(r.stderr)
	for _, want := range []string{"-bad.drv", "builder failed with exit code 3", "> the reason", "> about to fail", "-needs-bad.drv"} {
		if !strings.Contains(msg, want) {
			t.Errorf("without --keep-going: error does not say %q:\n%s", want, msg)
		}
	}
	e.noBuilderLeft(t)
	e.checkInvalid(t, slowOut)

	r = e.sfsResult(t, "realise", "--keep-going", "--retry-failed", "--max-jobs", "2", drvs[0], drvs[1])
	if r.code != 100 {
		t.Errorf("with --keep-going: exit %d, want 100\n%s", r.code, r.stderr)
	}
	if got := strings.TrimSpace(string(r.stdout)); got != slowOut {
		t.Errorf("with --keep-going: printed %q, want %s", got, slowOut)
	}
	if !strings.Contains(string(r.stderr), "dependency") || !strings.Contains(string(r.stderr), "> the reason") {
		t.Errorf("with --keep-going: error does not name the failed dependency and its log:\n%s", r.stderr)
	}
	e.checkVerify(t)
}

// TestEngineFailureCache checks that a failure is remembered for
// --failure-ttl, forgotten with --retry-failed, and not remembered past
// its TTL.
func TestEngineFailureCache(t *testing.T) {
	e := newBuildEnv(t)
	drvs := e.instantiate(t, failingExpr, "bad", "needsBad")
	e.addDrvs(t, drvs...)
	bad := drvs[0]
	realiseBad := func(what string, wantBuild bool, args ...string) string {
		t.Helper()
		r := e.sfsResult(t, append(append([]string{"realise"}, args...), bad)...)
		if r.code != 100 {
			t.Errorf("%s: exit %d, want 100\n%s", what, r.code, r.stderr)
		}
		if built := len(buildsIn(r.stderr)) > 0; built != wantBuild {
			t.Errorf("%s: built %v, want %v\n%s", what, built, wantBuild, r.stderr)
		}
		if !strings.Contains(string(r.stderr), bad) {
			t.Errorf("%s: the error does not name %s:\n%s", what, bad, r.stderr)
		}
		return string(r.stderr)
	}
	realiseBad("first", true)
	msg := realiseBad("again", false)
	if !strings.Contains(msg, "remembered") || !strings.Contains(msg, "exit code 3") {
		t.Errorf("a remembered failure does not say so, or why:\n%s", msg)
	}
	// A derivation that needs it fails fast too, naming it.
	r := e.sfsResult(t, "realise", drvs[1])
	if r.code != 100 || len(buildsIn(r.stderr)) > 0 || !strings.Contains(string(r.stderr), bad) {
		t.Errorf("needs-bad: exit %d, want 100 without building\n%s", r.code, r.stderr)
	}
	realiseBad("--retry-failed", true, "--retry-failed")
	time.Sleep(1100 * time.Millisecond)
	realiseBad("--failure-ttl 1s, after 1.1s", true, "--failure-ttl", "1s")
	realiseBad("--failure-ttl 1m", false, "--failure-ttl", "1m")
	realiseBad("--failure-ttl 0", true, "--failure-ttl", "0")
	e.checkVerify(t)
}

// TestEngineTimeouts checks --timeout and --max-silent-time: exit 101,
// and no process of the builder left, not even one it forked off.
func TestEngineTimeouts(t *testing.T) {
	e := newBuildEnv(t)
	drvs := e.instantiate(t, `{
  forks = mk { name = "forks"; args = ["-c" "sleep 1000 & setsid sleep 1000 & echo started; while true; do sleep 1000; done"]; };
  chatty = mk { name = "chatty"; args = ["-c" "sleep 1000 & while true; do echo tick; sleep 0.2; done"]; };
}`, "forks", "chatty")
	e.addDrvs(t, drvs...)
	for _, c := range []struct {
		what  string
		drv   string
		flags []string
		want  string
	}{
		{"--timeout", drvs[1], []string{"--timeout", "1s"}, "timed out after 1s"},
		{"--max-silent-time", drvs[0], []string{"--max-silent-time", "1s"}, "timed out after 1s of silence"},
	} {
		t0 := time.Now()
		r := e.sfsResult(t, append(append([]string{"realise", "--retry-failed"}, c.flags...), c.drv)...)
		took := time.Since(t0)
		if r.code != 101 || !strings.Contains(string(r.stderr), c.want) || !strings.Contains(string(r.stderr), c.drv) {
			t.Errorf("%s: exit %d, want 101 and an error naming %s and saying %q:\n%s", c.what, r.code, c.drv, c.want, r.stderr)
		}
		if took > 5*time.Second {
			t.Errorf("%s: realise took %v", c.what, took)
		}
		e.noBuilderLeft(t)
		e.checkInvalid(t, e.outputsOf(t, c.drv)...)
	}
	// A builder that keeps talking is not silent.
	r := e.sfsResult(t, "realise", "--retry-failed", "--max-silent-time", "1s", "--timeout", "3s", drvs[1])
	if r.code != 101 || !strings.Contains(string(r.stderr), "timed out after 3s") {
		t.Errorf("a chatty builder: exit %d, want 101 for the 3s timeout:\n%s", r.code, r.stderr)
	}
	e.noBuilderLeft(t)
	e.checkVerify(t)
}

// TestEngineCancel interrupts storefs realise while it builds: it stops at
// once, leaving no builder process, no output and no scratch space.
func TestEngineCancel(t *testing.T) {
	e := newBuildEnv(t)
	drvs := e.instantiate(t, `{
  partial = mk { name = "partial"; args = ["-c" "mkdir $out; echo partial > $out/x; sleep 1000 & sleep 1000"]; };
}`, "partial")
	e.addDrvs(t, drvs...)
	out := e.outputsOf(t, drvs[0])[0]
	cmd, _, errb := e.startSfs(t, "realise", drvs[0])
	took := e.waitBuilderWrote(t, out, "x", "partial\n")
	t.Logf("the builder wrote part of its output %v after storefs realise started", took)
	t0 := time.Now()
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	took = time.Since(t0)
	t.Logf("storefs realise stopped %v after SIGINT", took)
	if took > 10*time.Second { // the builder would sleep 1000 s
		t.Errorf("storefs realise took %v to stop after SIGINT", took)
	}
	if exitCode(err) == 0 {
		t.Errorf("an interrupted realise exited 0")
	}
	if !strings.Contains(errb.String(), "interrupt") {
		t.Errorf("stderr does not say the realise was interrupted:\n%s", errb)
	}
	e.noBuilderLeft(t)
	// Before any other storefs opens the store: it would clean up what a
	// dead process left in tmp.
	if left, _ := os.ReadDir(filepath.Join(e.state, "tmp")); len(left) > 0 {
		t.Errorf("scratch space left behind: %v", left)
	}
	e.checkInvalid(t, out)
	e.checkVerify(t)
	// Not remembered as a failure: the next realise builds again.
	cmd, _, errb = e.startSfs(t, "realise", drvs[0])
	e.waitForBuilder(t)
	cmd.Process.Signal(syscall.SIGINT)
	cmd.Wait()
	if len(buildsIn(errb.Bytes())) != 1 {
		t.Errorf("after a cancelled build, the next realise did not build:\n%s", errb)
	}
	e.noBuilderLeft(t)
}
