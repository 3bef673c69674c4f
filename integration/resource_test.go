package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// newBuildEnvAt is newBuildEnv with storefs's state dir at state.
func newBuildEnvAt(t testing.TB, state string) *buildEnv {
	t.Helper()
	needTool(t, "nix-instantiate")
	e := &buildEnv{n: newNixStore(t), state: state, dir: t.TempDir()}
	tree := busyboxTree(t)
	e.bb = e.n.line(t, "nix-store", "--add", tree)
	if got := strings.TrimSpace(string(e.sfs(t, "add", tree))); got != e.bb {
		t.Fatalf("storefs add of the busybox tree gave %s, nix-store --add %s", got, e.bb)
	}
	return e
}

// smallFS mounts a tmpfs of size bytes for the test.
func smallFS(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0755", size)); err != nil {
		t.Fatalf("mounting a tmpfs at %s: %v", dir, err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// TestBuildOutOfSpaceNotRemembered: a builder that fails because the
// state dir's filesystem is full is not remembered as a failed build:
// once space is freed, the same realise (no --retry-failed) builds it.
func TestBuildOutOfSpaceNotRemembered(t *testing.T) {
	fs := smallFS(t, 24<<20)
	e := newBuildEnvAt(t, filepath.Join(fs, "state"))
	tag := randomTag(t)
	drvs := e.instantiate(t, fmt.Sprintf(`{
  big = mk { name = "big-%s"; args = ["-c" "head -c 8000000 /dev/zero > $out"]; };
}`, tag), "big")
	e.addDrvs(t, drvs...)
	// The logs on a filesystem of their own, so that the log is written
	// whole and the builder's failure is what realise reports.
	if err := unix.Mount("tmpfs", filepath.Join(e.state, "logs"), "tmpfs", 0, "size=4m,mode=0755"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(filepath.Join(e.state, "logs"), unix.MNT_DETACH) })
	// Leave less room than the builder needs.
	var st unix.Statfs_t
	if err := unix.Statfs(fs, &st); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(fs, "filler")
	free := int64(st.Bavail) * st.Bsize
	if err := os.WriteFile(filler, make([]byte, free-4<<20), 0o644); err != nil {
		t.Fatalf("filling the filesystem: %v", err)
	}
	r := e.sfsResult(t, "realise", drvs[0])
	if r.code == 0 {
		t.Fatalf("realise on a full filesystem succeeded")
	}
	msg := string(r.stderr)
	t.Logf("realise said:\n%s", msg)
	if r.code != 1 || !strings.Contains(msg, "is full") || !strings.Contains(msg, "not remembered") {
		t.Errorf("realise on a full filesystem: exit %d, want 1 and a message that says the filesystem is full:\n%s", r.code, msg)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	r = e.sfsResult(t, "realise", drvs[0])
	if r.code != 0 {
		t.Errorf("realise once space is freed: exit %d\n%s", r.code, r.stderr)
	}
	e.checkVerify(t)
}

// memoryCgroupV1 makes a cgroup v1 memory cgroup of limit bytes below this
// process's, or fails the test (this host mounts the v1 memory hierarchy).
func memoryCgroupV1(t *testing.T, limit int64) string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	var path string
	for _, line := range strings.Split(string(data), "\n") {
		if parts := strings.SplitN(line, ":", 3); len(parts) == 3 && parts[1] == "memory" {
			path = parts[2]
		}
	}
	if path == "" {
		t.Fatal("no cgroup v1 memory hierarchy on this host")
	}
	dir := filepath.Join("/sys/fs/cgroup/memory", path, "storefs-test-"+randomTag(t))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(dir) })
	if err := os.WriteFile(filepath.Join(dir, "memory.limit_in_bytes"), []byte(fmt.Sprint(limit)), 0); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestBuildHostOOMNotRemembered: a builder killed by the kernel for want
// of memory where storefs runs (here a memory cgroup around storefs, not
// the build's own limit) is not remembered as a failed build: outside
// that cgroup the same realise (no --retry-failed) builds it.
func TestBuildHostOOMNotRemembered(t *testing.T) {
	e := newBuildEnv(t)
	drvs := e.instantiate(t, fmt.Sprintf(`{
  hungry = mk { name = "hungry-%s"; args = ["-c" "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo \${#x} > $out"]; };
}`, randomTag(t)), "hungry")
	e.addDrvs(t, drvs...)
	cg := memoryCgroupV1(t, 96<<20)
	script := fmt.Sprintf("echo $$ > %s/cgroup.procs && exec %s --store-dir %s --state-dir %s realise %s",
		cg, storefsBin, storeDir, e.state, drvs[0])
	r := runCmd(t, os.Environ(), nil, "sh", "-c", script)
	msg := string(r.stderr)
	if r.code != 1 || !strings.Contains(msg, "by the kernel for want of memory") || !strings.Contains(msg, "not remembered") {
		t.Errorf("a build killed by the host's OOM killer: exit %d, want 1 and a message that says so:\n%s", r.code, msg)
	}
	r = e.sfsResult(t, "realise", drvs[0])
	if r.code != 0 {
		t.Errorf("realise with room: exit %d\n%s", r.code, r.stderr)
	}
	e.checkVerify(t)
}
