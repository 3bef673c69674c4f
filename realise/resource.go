package realise

import (
	"errors"
	"fmt"
	"slices"

	"golang.org/x/sys/unix"
)

// A build that failed because the machine ran out of something (space,
// inodes, memory, descriptors) or had an I/O error is not the build's
// failure: it may well succeed once space is freed, so it must not be
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
