package sandbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Limits on a build's processes and memory (Spec.MaxProcesses,
// Spec.MaxMemory).
//
// Each build gets a cgroup of its own, made beside the cgroup storefs runs
// in, when the host allows it: cgroup v2 when its pids controller can be
// enabled there (pids.max, memory.max), else cgroup v1's pids hierarchy
// (pids.max) and memory hierarchy (memory.limit_in_bytes), which hybrid
// hosts such as this one mount. Run puts the init stage into it before
// sending the config, so nothing of the build runs outside it, and removes
// it once the build's last process is gone. Where no pids controller can
// be used, the limit on processes is RLIMIT_NPROC, set by the init stage
// for the build user: it counts the tasks of a host uid, and every
// concurrent build has a host uid of its own (realise locks them
// machine-wide), so it bounds one build. The memory limit then is not
// enforced (nor where cgroup v1 has no memory hierarchy storefs may use).
// Both count threads as well as processes, as the kernel does.
//
// On a cgroup v2 host storefs's own cgroup must be able to have children
// with the pids controller: the root, or a delegated cgroup without
// processes of its own (the kernel's "no internal processes" rule). A
// service's cgroup that holds storefs itself cannot, and builds then get
// RLIMIT_NPROC; storefs does not move itself into a leaf cgroup.

// cgroupsOff makes Run use RLIMIT_NPROC whatever the host offers (tests).
var cgroupsOff atomic.Bool

// cgroupSeq numbers this process's build cgroups.
var cgroupSeq atomic.Int64

// cgroupPrefix starts the name of every build cgroup; the pid of the
// storefs process that made it follows, so leftovers of dead processes can
// be removed.
const cgroupPrefix = "storefs-build-"

// buildCgroup is the cgroup directories of one build, one per hierarchy.
type buildCgroup struct {
	dirs []string
	how  string // for errors and tests: "cgroup v2", "cgroup v1"
}

// hierarchy is a mounted cgroup hierarchy and where this process is in it.
type hierarchy struct {
	v2          bool
	controllers []string // v1: the mount's controllers
	dir         string   // this process's cgroup directory
}

// hierarchies reads /proc/self/mountinfo and /proc/self/cgroup.
func hierarchies() ([]hierarchy, error) {
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	return parseHierarchies(cg, mi)
}

// parseHierarchies finds the cgroup hierarchies that mountinfo mounts and
// where /proc/self/cgroup's lines (cg) put this process in each.
func parseHierarchies(cg, mountinfo []byte) ([]hierarchy, error) {
	paths := map[string]string{} // controllers ("" for v2) -> path
	for _, line := range strings.Split(strings.TrimSpace(string(cg)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 {
			paths[parts[1]] = parts[2]
		}
	}
	var out []hierarchy
	sc := bufio.NewScanner(bytes.NewReader(mountinfo))
	for sc.Scan() {
		// id parent major:minor root mountpoint options... - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 {
			continue
		}
		root, mnt := pf[3], pf[4]
		var h hierarchy
		var path string
		switch qf[0] {
		case "cgroup2":
			h.v2, path = true, paths[""]
		case "cgroup":
			for _, o := range strings.Split(qf[2], ",") {
				if o == "pids" || o == "memory" {
					h.controllers = append(h.controllers, o)
				}
			}
			if len(h.controllers) == 0 {
				continue
			}
			// The line of /proc/self/cgroup that names the same
			// controllers (e.g. "8:pids:/").
			for k, p := range paths {
				if k != "" && slices.Contains(strings.Split(k, ","), h.controllers[0]) {
					path = p
				}
			}
		default:
			continue
		}
		rel, ok := strings.CutPrefix(path, root)
		if path == "" || !ok {
			continue // not this process's view of the hierarchy
		}
		h.dir = filepath.Join(mnt, rel)
		out = append(out, h)
	}
	return out, sc.Err()
}

// newBuildCgroup makes the cgroup of one build with the limits; nil (and
// no error) when the host offers no pids controller storefs may use.
func newBuildCgroup(maxProcs, maxMem int64) (*buildCgroup, error) {
	if cgroupsOff.Load() || maxProcs <= 0 && maxMem <= 0 {
		return nil, nil
	}
	hs, err := hierarchies()
	if err != nil {
		return nil, nil
	}
	name := fmt.Sprintf("%s%d-%d", cgroupPrefix, os.Getpid(), cgroupSeq.Add(1))
	for _, h := range hs {
		if h.v2 && enableV2(h.dir, maxMem > 0) {
			removeStale(h.dir)
			c := &buildCgroup{how: "cgroup v2"}
			dir := filepath.Join(h.dir, name)
			if err := c.make(dir); err != nil {
				break // not ours to use after all: v1, or RLIMIT_NPROC
			}
			if err := c.set(dir, "pids.max", maxProcs); err != nil {
				return nil, err
			}
			if err := c.set(dir, "memory.max", maxMem); err != nil {
				return nil, err
			}
			return c, nil
		}
	}
	c := &buildCgroup{how: "cgroup v1"}
	for _, h := range hs {
		if h.v2 || !slices.Contains(h.controllers, "pids") {
			continue
		}
		removeStale(h.dir)
		dir := filepath.Join(h.dir, name)
		if err := c.make(dir); err != nil {
			return nil, nil // not ours to use (read-only, no permission)
		}
		if err := c.set(dir, "pids.max", maxProcs); err != nil {
			return nil, err
		}
		break
	}
	if len(c.dirs) == 0 {
		return nil, nil
	}
	if maxMem > 0 {
		for _, h := range hs {
			if h.v2 || !slices.Contains(h.controllers, "memory") || slices.Contains(h.controllers, "pids") {
				continue
			}
			removeStale(h.dir)
			dir := filepath.Join(h.dir, name)
			if err := os.Mkdir(dir, 0o755); err != nil {
				break // as where there is no memory hierarchy: not enforced
			}
			c.dirs = append(c.dirs, dir)
			if err := c.set(dir, "memory.limit_in_bytes", maxMem); err != nil {
				return nil, err
			}
			break
		}
	}
	return c, nil
}

// enableV2 reports whether a child of dir can have the pids controller
// (and memory), enabling them in dir's subtree_control if need be; that
// fails where dir has processes of its own and is not the root.
func enableV2(dir string, memory bool) bool {
	want := []string{"pids"}
	if memory {
		want = append(want, "memory")
	}
	ctrl, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return false
	}
	have := strings.Fields(string(ctrl))
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	sub, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	if err != nil {
		return false
	}
	for _, w := range want {
		if slices.Contains(strings.Fields(string(sub)), w) {
			continue
		}
		if os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+"+w), 0) != nil {
			return false
		}
	}
	return true
}

func (c *buildCgroup) make(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		c.remove()
		return &SetupError{What: "making the build's " + c.how + " " + dir, Err: err}
	}
	c.dirs = append(c.dirs, dir)
	return nil
}

// set writes a limit (n > 0) to a file of dir.
func (c *buildCgroup) set(dir, file string, n int64) error {
	if n <= 0 {
		return nil
	}
	p := filepath.Join(dir, file)
	if err := os.WriteFile(p, []byte(strconv.FormatInt(n, 10)), 0); err != nil {
		c.remove()
		return &SetupError{What: "setting " + p + " to " + strconv.FormatInt(n, 10), Err: err}
	}
	return nil
}

// add moves a process (the init stage, before it starts anything) into
// every directory of the cgroup.
func (c *buildCgroup) add(pid int) error {
	for _, dir := range c.dirs {
		p := filepath.Join(dir, "cgroup.procs")
		if err := os.WriteFile(p, []byte(strconv.Itoa(pid)), 0); err != nil {
			return &SetupError{What: "moving the init stage into " + p, Err: err}
		}
	}
	return nil
}

// remove removes the cgroup once its processes are gone; the kernel may
// take a moment to let go of the last ones.
func (c *buildCgroup) remove() {
	for _, dir := range c.dirs {
		for i := 0; i < 100; i++ {
			err := unix.Rmdir(dir)
			if err == nil || errors.Is(err, unix.ENOENT) || !errors.Is(err, unix.EBUSY) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	c.dirs = nil
}

// removeStale removes the empty build cgroups of dead storefs processes
// in dir.
func removeStale(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), cgroupPrefix)
		if !ok || !e.IsDir() {
			continue
		}
		pid, _, _ := strings.Cut(rest, "-")
		n, err := strconv.Atoi(pid)
		if err != nil || n == os.Getpid() || unix.Kill(n, 0) != unix.ESRCH {
			continue
		}
		unix.Rmdir(filepath.Join(dir, e.Name()))
	}
}

// limitsHit says which limits the build's processes ran into, from the
// cgroup's event counters: "its limit of N processes and threads", "its
// limit of N bytes of memory".
func (c *buildCgroup) limitsHit(maxProcs, maxMem int64) []string {
	var hit []string
	procs, mem := false, false
	for _, dir := range c.dirs {
		procs = procs || eventCount(filepath.Join(dir, "pids.events"), "max") > 0
		mem = mem || eventCount(filepath.Join(dir, "memory.events"), "oom_kill") > 0 ||
			eventCount(filepath.Join(dir, "memory.oom_control"), "oom_kill") > 0
	}
	if procs && maxProcs > 0 {
		hit = append(hit, fmt.Sprintf("its limit of %d processes and threads", maxProcs))
	}
	if mem && maxMem > 0 {
		hit = append(hit, fmt.Sprintf("its limit of %d bytes of memory", maxMem))
	}
	return hit
}

// eventCount reads the counter key of a cgroup's "key value" lines (0 when
// the file or the key is missing).
func eventCount(file, key string) int64 {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}
