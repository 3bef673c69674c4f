package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"storefs/realise"
)

// The harness of the mount tests (mount_test.go, posix_test.go,
// bench_mount_test.go): a store served by a `storefs mount` process,
// derivations built by busybox's shell, and the processes that read it.

// mountStore is a store whose store dir a `storefs mount` serves.
type mountStore struct {
	StoreDir string // the mount point
	StateDir string
	BB       string // the busybox tree's store path

	proc   *exec.Cmd
	log    *lockedBuffer
	exited chan struct{} // closed when proc has exited
	err    error         // proc's exit, once exited is closed
}

// lockedBuffer collects a process's output while tests read it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// freshStoreDir is a store dir no other test uses, removed at the end.
func freshStoreDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("/var/tmp", "storefs-mount-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) }) // runs after the unmount, registered later
	return filepath.Join(d, "store")
}

// newMountStore makes a store (not mounted yet) holding the busybox tree.
func newMountStore(t testing.TB, storeDir string) *mountStore {
	t.Helper()
	m := &mountStore{StoreDir: storeDir, StateDir: t.TempDir()}
	m.BB = strings.TrimSpace(string(m.sfs(t, "add", busyboxTree(t))))
	return m
}

func (m *mountStore) args(a ...string) []string {
	return append([]string{"--store-dir", m.StoreDir, "--state-dir", m.StateDir}, a...)
}

// sfs runs storefs on the store and fails the test if it fails.
func (m *mountStore) sfs(t testing.TB, a ...string) []byte {
	t.Helper()
	return storefs(t, nil, m.args(a...)...)
}

func (m *mountStore) sfsResult(t testing.TB, a ...string) result {
	t.Helper()
	return storefsResult(t, nil, m.args(a...)...)
}

// mount starts `storefs mount` and waits until it serves the store dir.
// The test's cleanup unmounts whatever is left.
func (m *mountStore) mount(t testing.TB, flags ...string) {
	t.Helper()
	m.log = &lockedBuffer{}
	m.proc = exec.Command(storefsBin, m.args(append([]string{"mount"}, flags...)...)...)
	m.proc.Stdout, m.proc.Stderr = m.log, m.log
	if err := m.proc.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	m.exited = exited
	proc := m.proc
	go func() { m.err = proc.Wait(); close(exited) }()
	t.Cleanup(func() { m.cleanup(t, proc, exited) })
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if m.serving() {
			return
		}
		select {
		case <-exited:
			t.Fatalf("storefs mount exited (%v):\n%s", m.err, m.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("storefs mount did not serve %s within 20 s:\n%s", m.StoreDir, m.log)
		}
	}
}

// serving reports whether a live daemon answers on the socket and a live
// server behind the mount (statfs always reaches it; a stale mount fails).
func (m *mountStore) serving() bool {
	conn, err := net.Dial("unix", filepath.Join(m.StateDir, "daemon.sock"))
	if err != nil {
		return false
	}
	conn.Close()
	var st unix.Statfs_t
	return isMounted(m.StoreDir) && unix.Statfs(m.StoreDir, &st) == nil
}

// cleanup stops a mount process and detaches its mount if it is left.
func (m *mountStore) cleanup(t testing.TB, proc *exec.Cmd, exited chan struct{}) {
	select {
	case <-exited:
	default:
		proc.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			proc.Process.Signal(syscall.SIGQUIT) // its goroutines go to the log
			select {
			case <-exited:
			case <-time.After(2 * time.Second):
				proc.Process.Kill()
				<-exited
			}
			t.Errorf("storefs mount did not stop within 10 s of SIGTERM:\n%s", m.log)
		}
	}
	for isMounted(m.StoreDir) {
		if err := unix.Unmount(m.StoreDir, unix.MNT_DETACH); err != nil {
			t.Errorf("detaching %s: %v", m.StoreDir, err)
			return
		}
	}
}

// waitExit waits for the mount process to end and returns how it ended.
func (m *mountStore) waitExit(t testing.TB, within time.Duration) error {
	t.Helper()
	select {
	case <-m.exited:
		return m.err
	case <-time.After(within):
		t.Fatalf("storefs mount still runs %v later:\n%s", within, m.log)
		return nil
	}
}

// isMounted reports whether dir is a mount point in this namespace.
func isMounted(dir string) bool {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

// derivation adds a derivation named name whose builder runs script with
// busybox's sh (PATH holds its applets), and returns its .drv and output.
func (m *mountStore) derivation(t testing.TB, name, script string) (drv, out string) {
	t.Helper()
	sh := m.BB + "/bin/sh"
	d := map[string]any{
		"outputs":   map[string]any{"out": map[string]any{}},
		"inputSrcs": []string{m.BB},
		"inputDrvs": map[string]any{},
		"system":    realise.HostSystem(),
		"builder":   sh,
		"args":      []string{"-c", script},
		"env":       map[string]string{"name": name, "out": "", "builder": sh, "system": realise.HostSystem(), "PATH": m.BB + "/bin"},
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(d); err != nil {
		t.Fatal(err)
	}
	f := writeFile(t, t.TempDir(), name+".json", buf.String())
	drv = strings.TrimSpace(string(m.sfs(t, "derivation", "add", f)))
	out = strings.TrimSpace(string(m.sfs(t, "query", "--outputs", drv)))
	return drv, out
}

// mountStatus is what `storefs status --json` says.
type mountStatus struct {
	Daemon   bool     `json:"daemon"`
	Running  []string `json:"running"`
	Goals    []string `json:"goals"`
	Requests int      `json:"requests"` // realise requests the daemon serves
	Started  int      `json:"started"`
	Finished int      `json:"finished"`
	Mount    struct {
		Lookups      uint64 `json:"lookups"`
		Realisations uint64 `json:"realisations"`
		Interrupted  uint64 `json:"interrupted"`
	} `json:"mount"`
	Failures []struct {
		Path    string `json:"path"`
		Message string `json:"message"`
	} `json:"failures"`
}

func (m *mountStore) status(t testing.TB) mountStatus {
	t.Helper()
	var st mountStatus
	if err := json.Unmarshal(m.sfs(t, "status", "--json"), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// waitStatus waits until the daemon's status satisfies ok, and returns it
// with how long that took.
func (m *mountStore) waitStatus(t testing.TB, what string, ok func(mountStatus) bool) (mountStatus, time.Duration) {
	t.Helper()
	t0 := time.Now()
	for {
		st := m.status(t)
		if ok(st) {
			return st, time.Since(t0)
		}
		if time.Since(t0) > 20*time.Second {
			t.Fatalf("waiting for %s: not within 20 s; status %+v\n%s", what, st, m.log)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitWchan waits until the process pid sleeps in the kernel function fn
// (its /proc/<pid>/wchan), and returns how long that took.
func waitWchan(t testing.TB, pid int, fn string) time.Duration {
	t.Helper()
	t0 := time.Now()
	file := fmt.Sprintf("/proc/%d/wchan", pid)
	for {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("waiting for process %d to sleep in %s: %v", pid, fn, err)
		}
		if string(data) == fn {
			return time.Since(t0)
		}
		if time.Since(t0) > 20*time.Second {
			t.Fatalf("process %d does not sleep in %s within 20 s: %s says %q", pid, fn, file, data)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitRunning waits until a build or substitution is under way.
func (m *mountStore) waitRunning(t testing.TB) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if len(m.status(t).Running) > 0 {
			return
		}
	}
	t.Fatalf("nothing started building within 20 s:\n%s", m.log)
}

// marker makes a word that names one test's builders, to find their
// processes by command line.
func marker() string { return fmt.Sprintf("marker-%d", rand.Int63()) }

// buildersWith lists the builder processes whose command line holds mark.
func buildersWith(t testing.TB, mark string) []string {
	t.Helper()
	var out []string
	for _, cmdline := range builderProcs(t) {
		if strings.Contains(cmdline, mark) {
			out = append(out, cmdline)
		}
	}
	return out
}

// waitBuilder waits until a builder with mark runs.
func waitBuilder(t testing.TB, mark string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); len(buildersWith(t, mark)) == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no builder with %s started within 20 s", mark)
		}
	}
}

// waitNoBuilder waits until no builder with mark runs.
func waitNoBuilder(t testing.TB, mark string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for len(buildersWith(t, mark)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("builders still run %v later: %v", within, buildersWith(t, mark))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startCat starts `cat path` in its own process.
func startCat(t testing.TB, path string) (*exec.Cmd, *lockedBuffer, chan error) {
	t.Helper()
	cmd := exec.Command("cat", path)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	return cmd, out, done
}

// waitDone waits for a process started with startCat.
func waitDone(t testing.TB, what string, done chan error, within time.Duration) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(within):
		t.Fatalf("%s still runs %v later", what, within)
		return nil
	}
}

func catFile(t testing.TB, path string) (string, error) {
	t.Helper()
	data, err := os.ReadFile(path)
	return string(data), err
}

// slowDerivation is a derivation whose builder, marked by mark, sleeps
// for secs seconds before it writes $out/greeting.
func (m *mountStore) slowDerivation(t testing.TB, name, mark string, secs int) (drv, out string) {
	t.Helper()
	return m.derivation(t, name, fmt.Sprintf(": %s; sleep %d; mkdir $out; echo %s > $out/greeting", mark, secs, name))
}

// interruptCat sends SIGINT to a cat blocked in a lookup and checks that
// it ends at once.
func interruptCat(t *testing.T, cat *exec.Cmd, done chan error) {
	t.Helper()
	t0 := time.Now()
	if err := cat.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err := waitDone(t, "the interrupted cat", done, 5*time.Second)
	took := time.Since(t0)
	if err == nil {
		t.Errorf("the interrupted cat succeeded")
	}
	if took > time.Second { // the builds take 3 s or more
		t.Errorf("the interrupted cat took %v to end, want at once", took)
	}
	t.Logf("the interrupted cat ended %v after SIGINT (%v)", took, err)
}

// sortedNames returns names sorted, leaving them as they are.
func sortedNames(names ...string) []string {
	c := append([]string(nil), names...)
	sort.Strings(c)
	return c
}

// listing is the sorted names in the store dir.
func (m *mountStore) listing(t testing.TB) []string {
	t.Helper()
	ents, err := os.ReadDir(m.StoreDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// waitListed waits until the store dir lists exactly want.
func (m *mountStore) waitListed(t testing.TB, within time.Duration, want ...string) time.Duration {
	t.Helper()
	want = sortedNames(want...)
	t0 := time.Now()
	for {
		got := m.listing(t)
		if strings.Join(got, " ") == strings.Join(want, " ") {
			return time.Since(t0)
		}
		if time.Since(t0) > within {
			t.Fatalf("the store dir lists %v, want %v", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
