package sandbox

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// Where this process is in each cgroup hierarchy, on the kinds of host
// there are: cgroup v2 only, hybrid (this one), a container whose mounts
// show only its own part of a hierarchy, and lines that name nothing.
func TestParseHierarchies(t *testing.T) {
	const hybridMounts = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	for _, c := range []struct {
		name       string
		cg, mounts string
		want       []hierarchy
	}{
		{"v2 only", "0::/system.slice/storefs.service\n",
			"25 22 0:23 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
			[]hierarchy{{v2: true, dir: "/sys/fs/cgroup/system.slice/storefs.service"}}},
		{"hybrid", "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/x\n1:cpu:/\n0::/\n", hybridMounts,
			[]hierarchy{
				{controllers: []string{"memory"}, dir: "/sys/fs/cgroup/memory/process_api/x"},
				{controllers: []string{"pids"}, dir: "/sys/fs/cgroup/pids"},
				{v2: true, dir: "/sys/fs/cgroup/unified"},
			}},
		{"container", "0::/docker/abc/inner\n",
			"25 22 0:23 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
			[]hierarchy{{v2: true, dir: "/sys/fs/cgroup/inner"}}},
		{"elsewhere", "0::/other\n", // the mount shows another part of the hierarchy
			"25 22 0:23 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", nil},
		{"no cgroup lines", "", hybridMounts, nil},
		{"garbage", "x\n::\n", "not a mountinfo line\n1 2 3 - cgroup2\n", nil},
	} {
		got, err := parseHierarchies([]byte(c.cg), []byte(c.mounts))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
}

// A v2 parent can give a child the pids controller only if it has it, and
// subtree_control is written only for what it lacks.
func TestEnableV2(t *testing.T) {
	for _, c := range []struct {
		controllers, subtree string
		memory, want         bool
		wantSubtree          string
	}{
		{"cpu io memory pids", "pids", false, true, "pids"},
		{"cpu io memory pids", "", false, true, "+pids"},
		{"cpu io memory pids", "pids", true, true, "+memory"},
		{"cpu io memory", "", false, false, ""},
		{"pids", "pids", true, false, "pids"},
		{"", "", false, false, ""},
	} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "cgroup.controllers"), []byte(c.controllers+"\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte(c.subtree), 0o644)
		if got := enableV2(dir, c.memory); got != c.want {
			t.Errorf("controllers %q subtree %q memory %v: %v, want %v", c.controllers, c.subtree, c.memory, got, c.want)
		}
		sub, _ := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
		if string(sub) != c.wantSubtree {
			t.Errorf("controllers %q subtree %q memory %v: subtree_control %q, want %q", c.controllers, c.subtree, c.memory, sub, c.wantSubtree)
		}
	}
	if enableV2(filepath.Join(t.TempDir(), "missing"), false) {
		t.Error("a missing cgroup can be used")
	}
}
