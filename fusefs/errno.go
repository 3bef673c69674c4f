package fusefs

import (
	"errors"
	"syscall"
)

// toErrno is the one translation of an error into what FUSE returns: the
// errno it carries, else EIO.
func toErrno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return syscall.EIO
}
