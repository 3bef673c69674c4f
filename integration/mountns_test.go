package integration

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// Tests that mount the store dir itself (/store: their paths are Nix's,
// hashed with it) run in a mount namespace of their own, so that whatever
// the machine serves at /store (`make demo` leaves a storefs there) neither
// stops them nor sees them, and no one else sees their mount.

// The environment of a test binary re-executed by inPrivateMountNS.
const (
	privateNSEnv  = "STOREFS_TEST_PRIVATE_NS"    // the test it runs in a namespace of its own
	parentNSEnv   = "STOREFS_TEST_PARENT_MNT_NS" // the namespace it must not be in
	storefsBinEnv = "STOREFS_TEST_BIN"           // the storefs binary to use instead of building one
)

// inPrivateMountNS reports whether the caller is to run the test's body.
// Called first in a test, it runs this test alone in a copy of the test
// binary in a new mount namespace whose mounts are all private (nothing
// mounted or unmounted there reaches the host, nor do the host's later
// mounts reach it), passes on its output and its result, and reports
// false. In that copy it detaches whatever the host had at storeDir and
// reports true:
//
//	if !inPrivateMountNS(t) {
//		return // it ran in its namespace
//	}
func inPrivateMountNS(tb testing.TB) bool {
	tb.Helper()
	if os.Getenv(privateNSEnv) == tb.Name() {
		detachHostMounts(tb)
		return true
	}
	runInPrivateMountNS(tb)
	return false
}

// runInPrivateMountNS re-executes the test binary to run tb's test (or
// benchmark) in a new mount namespace, and fails tb if it fails.
func runInPrivateMountNS(tb testing.TB) {
	tb.Helper()
	ns, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		tb.Fatalf("reading this process's mount namespace: %v", err)
	}
	var pattern []string
	for _, part := range strings.Split(tb.Name(), "/") {
		pattern = append(pattern, "^"+regexp.QuoteMeta(part)+"$")
	}
	args := []string{"-test.count=1", "-test.v", "-test.timeout=" + flagValue("test.timeout")}
	if _, ok := tb.(*testing.B); ok {
		args = append(args, "-test.run=^$", "-test.bench="+strings.Join(pattern, "/"), "-test.benchtime="+flagValue("test.benchtime"))
	} else {
		args = append(args, "-test.run="+strings.Join(pattern, "/"))
	}
	if testing.Short() {
		args = append(args, "-test.short")
	}
	_, err = os.Stat(storeDir)
	hadStoreDir := err == nil
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), privateNSEnv+"="+tb.Name(), parentNSEnv+"="+ns, storefsBinEnv+"="+storefsBin)
	// Go's fork marks every mount MS_PRIVATE|MS_REC after the unshare, as
	// unshare(1) does; the copy dies with this process (a -test.timeout).
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	if !hadStoreDir {
		os.Remove(storeDir) // storefs mount made the mount point; it outlives the namespace
	}
	if err != nil {
		tb.Fatalf("%s in a mount namespace of its own: %v\n%s", tb.Name(), err, out.Bytes())
	}
	if b, ok := tb.(*testing.B); ok {
		reportChildMetrics(b, out.String())
	}
	tb.Logf("ran in a mount namespace of its own:\n%s", out.Bytes())
}

// detachHostMounts runs in the re-executed test binary: it detaches this
// namespace's copies of the host's mounts at and under storeDir, and of
// every FUSE mount (a copy would keep another test's mount busy while this
// test runs). It refuses to work in the namespace of the process that
// started it, or where a mount still propagates: it would unmount the
// host's.
func detachHostMounts(tb testing.TB) {
	tb.Helper()
	own, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		tb.Fatalf("reading this process's mount namespace: %v", err)
	}
	if parent := os.Getenv(parentNSEnv); parent == "" || parent == own {
		tb.Fatalf("%s=%s, yet this process is in the mount namespace %s=%q: it runs where the host's %s is, and will not unmount it",
			privateNSEnv, os.Getenv(privateNSEnv), parentNSEnv, parent, storeDir)
	}
	mounts := readMountinfo(tb)
	for _, m := range mounts {
		if m.shared {
			tb.Fatalf("the mount at %s propagates to its peer group in this mount namespace; it must be private", m.point)
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- { // the newest first: stacked mounts come off from the top
		m := mounts[i]
		if m.point != storeDir && !strings.HasPrefix(m.point, storeDir+"/") && !strings.HasPrefix(m.fstype, "fuse") {
			continue
		}
		// EINVAL: gone with a mount above it that was detached already.
		if err := unix.Unmount(m.point, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			tb.Fatalf("detaching the host's %s mount at %s in this test's mount namespace: %v", m.fstype, m.point, err)
		}
	}
	if isMounted(storeDir) {
		tb.Fatalf("%s is still mounted in this test's mount namespace after detaching the host's mounts", storeDir)
	}
}

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	point, fstype string
	shared        bool // it propagates mounts to its peer group
}

func readMountinfo(tb testing.TB) []mountEntry {
	tb.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		tb.Fatalf("listing mounts: %v", err)
	}
	var out []mountEntry
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		// id parent major:minor root point options [optional...] - fstype source super
		f := strings.Fields(line)
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if len(f) < 5 || sep < 0 || sep+1 >= len(f) {
			tb.Fatalf("/proc/self/mountinfo: cannot read line %q", line)
		}
		e := mountEntry{point: unescapeMountinfo(f[4]), fstype: f[sep+1]}
		for _, opt := range f[6:sep] {
			e.shared = e.shared || strings.HasPrefix(opt, "shared:")
		}
		out = append(out, e)
	}
	return out
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) of a path
// in /proc/self/mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// reportChildMetrics reports as b's own the metrics of the result line the
// re-executed benchmark printed, ns/op included.
func reportChildMetrics(b *testing.B, out string) {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || (f[0] != b.Name() && !strings.HasPrefix(f[0], b.Name()+"-")) {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue // not the result line
		}
		for i := 2; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				b.ReportMetric(v, f[i+1])
			}
		}
	}
}

// flagValue is the value of one of the testing package's flags.
func flagValue(name string) string {
	if f := flag.Lookup(name); f != nil {
		return f.Value.String()
	}
	return ""
}
