package realise

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"storefs/goals"
	"storefs/sandbox"
)

// A build that failed because the machine ran out of something (space,
// inodes, memory, descriptors) or had an I/O error is not the build's
// failure (a builder killed by the kernel's out-of-memory killer when its
// own memory limit was not what it hit counts too): it may well succeed once space is freed, so it must not be
// remembered (goals remembers only a *goals.BuildError). Build returns such
// failures as plain errors that say why.

// resourceErrnos are the errors of the machine, not of the derivation.
var resourceErrnos = []unix.Errno{
	unix.ENOSPC, unix.EDQUOT, unix.ENOMEM, unix.EAGAIN, unix.EMFILE, unix.ENFILE,
	unix.ENOBUFS, unix.EIO, unix.EROFS,
}

// isResourceError reports whether err is, or wraps, one of resourceErrnos.
func isResourceError(err error) bool {
	var errno unix.Errno
	return errors.As(err, &errno) && slices.Contains(resourceErrnos, errno)
}

// minFree is the free space below which a filesystem counts as full: a
// builder that failed then most likely failed for want of space.
const minFree = 1 << 20

// fullFilesystem reports whether the filesystem holding dir is full for
// an unprivileged user (the builder): less than minFree bytes or no
// inodes left, and says so naming dir.
func fullFilesystem(dir string) (string, bool) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return "", false
	}
	free := st.Bavail * uint64(st.Bsize)
	switch {
	case free < minFree:
		return fmt.Sprintf("the filesystem of %s is full (%d bytes free of %d)", dir, free, st.Blocks*uint64(st.Bsize)), true
	case st.Files > 0 && st.Ffree == 0:
		return fmt.Sprintf("the filesystem of %s has no inodes left (of %d)", dir, st.Files), true
	}
	return "", false
}

// oomKills is the kernel's count of processes killed for want of memory
// (oom_kill in /proc/vmstat; -1 when it cannot be read).
func oomKills() int64 {
	data, err := os.ReadFile("/proc/vmstat")
	if err != nil {
		return -1
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("oom_kill ")); ok {
			n, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}

// killedByHostOOM reports whether a builder that died of SIGKILL was most
// likely killed by the kernel for want of memory on the host (the count
// went up during the build), not by the limit of its own cgroup: nothing
// else sends it SIGKILL unasked.
func killedByHostOOM(res *sandbox.Result, before int64) bool {
	if res.Outcome != sandbox.Signaled || res.Signal != syscall.SIGKILL || before < 0 {
		return false
	}
	for _, l := range res.LimitsHit {
		if strings.Contains(l, "memory") {
			return false // its own limit: the build needs more than it may have
		}
	}
	return oomKills() > before
}

// machineFailure is a failed build that was the machine's fault, why
// saying how, as a plain error: the builder's message, why, and the log's
// last lines.
func machineFailure(drvName string, failed *goals.BuildError, why string) error {
	be := *failed
	be.Message = failed.Message + " " + why + "; not remembered as a build failure, since it may succeed once there is room"
	return fmt.Errorf("building %s: %s", drvName, be.Detail())
}
