package integration

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// The tests run in a mount namespace of their own, so that whatever the
// machine serves at /store (`make demo` leaves a storefs there) neither
// stops them nor sees them, and no one else sees their mounts. Some tests
// mount /store itself (their paths are Nix's, hashed with it), and Nix 2.8
// looks up /store/<output>.check by that logical name at every build, even
// in a store under another root: through a live mount at /store, each such
// lookup would ask that mount to realise a path.

// privateNSEnv is set in the test binary that TestMain re-executed in a
// new mount namespace: to the namespace it must not be in, its parent's.
const privateNSEnv = "STOREFS_TEST_PARENT_MNT_NS"

// runInPrivateMountNS runs this test binary again, with the same arguments
// and streams, in a new mount namespace whose mounts are all private
// (nothing mounted or unmounted there reaches the host, nor do the host's
// later mounts reach it), and returns its exit code.
func runInPrivateMountNS() int {
	ns, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		fmt.Fprintln(os.Stderr, "reading this process's mount namespace:", err)
		return 1
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "finding the test binary to run it in a mount namespace of its own:", err)
		return 1
	}
	_, err = os.Stat(storeDir)
	hadStoreDir := err == nil
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), privateNSEnv+"="+ns)
	// Go's fork marks every mount MS_PRIVATE|MS_REC after the unshare, as
	// unshare(1) does. The copy dies with this process.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "running the tests in a mount namespace of their own:", err)
		return 1
	}
	// go test's timeout sends SIGQUIT for the goroutines of the tests.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGQUIT)
	go func() {
		for s := range sigs {
			cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	signal.Stop(sigs)
	if !hadStoreDir {
		os.Remove(storeDir) // storefs mount made the mount point; it outlives the namespace
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee) && ee.ExitCode() >= 0:
		return ee.ExitCode()
	}
	fmt.Fprintln(os.Stderr, "the tests in their mount namespace:", err)
	return 1
}

// detachHostMounts runs in the re-executed test binary: it detaches this
// namespace's copies of the host's mounts at and under storeDir, and of
// every FUSE mount (a copy would keep the connection of another run's test
// mount open for as long as these tests run). It refuses to in the
// namespace of the process that started it, or where a mount still
// propagates: it would unmount the host's.
func detachHostMounts() error {
	own, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return fmt.Errorf("reading this process's mount namespace: %w", err)
	}
	if parent := os.Getenv(privateNSEnv); parent == own {
		return fmt.Errorf("%s=%s is this process's own mount namespace: it is where the host's %s is, and the tests will not unmount it",
			privateNSEnv, parent, storeDir)
	}
	mounts, err := readMountinfo()
	if err != nil {
		return err
	}
	for _, m := range mounts {
		if m.shared {
			return fmt.Errorf("the mount at %s propagates to its peer group in the tests' mount namespace; it must be private", m.point)
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- { // the newest first: stacked mounts come off from the top
		m := mounts[i]
		if m.point != storeDir && !strings.HasPrefix(m.point, storeDir+"/") && !strings.HasPrefix(m.fstype, "fuse") {
			continue
		}
		// EINVAL: gone with a mount above it that was detached already.
		if err := unix.Unmount(m.point, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("detaching the host's %s mount at %s in the tests' mount namespace: %w", m.fstype, m.point, err)
		}
	}
	if isMounted(storeDir) {
		return fmt.Errorf("%s is still mounted in the tests' mount namespace after detaching the host's mounts", storeDir)
	}
	return nil
}

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	point, fstype string
	shared        bool // it propagates mounts to its peer group
}

func readMountinfo() ([]mountEntry, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("listing mounts: %w", err)
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
		if sep < 0 || sep+1 >= len(f) {
			return nil, fmt.Errorf("/proc/self/mountinfo: cannot read line %q", line)
		}
		e := mountEntry{point: unescapeMountinfo(f[4]), fstype: f[sep+1]}
		for _, opt := range f[6:sep] {
			e.shared = e.shared || strings.HasPrefix(opt, "shared:")
		}
		out = append(out, e)
	}
	return out, nil
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
