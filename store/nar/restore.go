package nar

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// restoreBufSize is the input buffer of Restore: large reads, and file
// contents written in large pieces straight from it.
const restoreBufSize = 1 << 20

// Restore unpacks the NAR read from r into target, which must not exist, and
// checks that nothing follows the archive in r (ErrTrailingData). See
// RestoreFrom for what is created and how failures are cleaned up.
func Restore(r io.Reader, target string) error {
	nr := newReaderSize(r, false, restoreBufSize)
	if err := RestoreFrom(nr, target); err != nil {
		return err
	}
	if err := nr.CheckEOF(); err != nil {
		removeAt(unix.AT_FDCWD, target)
		return err
	}
	return nil
}

// RestoreFrom unpacks the archive nr reads, from its start to its closing
// ")", into target, which must not exist; nr's source may go on after it.
//
// Every entry is created relative to its parent directory's descriptor, with
// O_EXCL and O_NOFOLLOW, so nothing is written through a symlink or over an
// existing file, and nothing outside target. Files get mode 0444, or 0555
// when executable; directories are made writable while they are filled,
// then 0555. On any error what was created (all of target) is removed, and
// the error names the byte offset in the archive.
func RestoreFrom(nr *Reader, target string) error {
	if nr.state != stMagic || nr.err != nil {
		return errors.New("nar: RestoreFrom needs a Reader at the start of an archive")
	}
	rs := &restorer{nr: nr, target: target, fixModes: umaskStrips()}
	err := rs.run()
	if err != nil && rs.created {
		removeAt(unix.AT_FDCWD, target)
	}
	return err
}

// umaskStrips reports whether the process umask would take bits off 0555,
// in which case every mode is set explicitly. Reading it from /proc, unlike
// umask(2), does not change it under other goroutines' feet.
func umaskStrips() bool {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return true
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			return err != nil || m&0o555 != 0
		}
	}
	return true
}

type restorer struct {
	nr       *Reader
	target   string
	fixModes bool
	created  bool    // target exists and is ours to remove on failure
	dirs     []*rdir // the open directories, root first
	w        *writers
}

// fail makes err an *Error at the current node.
func (rs *restorer) fail(h *Header, op string, err error) error {
	return pathError(rs.nr.off, rs.target, h.Path, op, err)
}

func pathError(off int64, target, path, op string, err error) error {
	where := target
	if path != "" {
		where += "/" + path
	}
	return &Error{Offset: off, Path: path, Err: fmt.Errorf("%s %s: %w", op, where, err)}
}

func (rs *restorer) run() error {
	h, err := rs.nr.Next()
	if err != nil {
		return err
	}
	if err := rs.create(nil, rs.target, h); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("restoring a NAR into %s: the target already exists", rs.target)
		}
		return err
	}
	if h.Type != TypeDirectory {
		if _, err := rs.nr.Next(); err != io.EOF {
			return err // the archive's end, or an error: nothing follows a file
		}
		return nil
	}
	rs.w = newWriters(rs)
	err = rs.entries()
	for len(rs.dirs) > 0 { // on success, the last user makes each read-only
		rs.dirs[len(rs.dirs)-1].unref(rs.w, err == nil)
		rs.dirs = rs.dirs[:len(rs.dirs)-1]
	}
	if werr := rs.w.finish(err == nil); err == nil {
		err = werr
	}
	return err
}

// entries creates everything below the root directory.
func (rs *restorer) entries() error {
	for {
		h, err := rs.nr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := rs.w.failed(); err != nil {
			return err
		}
		parent, name := "", h.Path
		if i := strings.LastIndexByte(h.Path, '/'); i >= 0 {
			parent, name = h.Path[:i], h.Path[i+1:]
		}
		for len(rs.dirs) > 0 && rs.dirs[len(rs.dirs)-1].path != parent {
			rs.dirs[len(rs.dirs)-1].unref(rs.w, true)
			rs.dirs = rs.dirs[:len(rs.dirs)-1]
		}
		if len(rs.dirs) == 0 { // the Reader guarantees the parent was read
			return rs.fail(h, "restoring", errors.New("entry outside any directory"))
		}
		if err := rs.create(rs.dirs[len(rs.dirs)-1], name, h); err != nil {
			return err
		}
	}
}

// create makes the node h as name in the directory dir (nil: name is the
// target itself). Small files are handed to the writers.
func (rs *restorer) create(dir *rdir, name string, h *Header) error {
	const flags = unix.O_NOFOLLOW | unix.O_CLOEXEC
	dirfd := unix.AT_FDCWD
	if dir != nil {
		dirfd = dir.fd
	}
	switch h.Type {
	case TypeDirectory:
		if err := unix.Mkdirat(dirfd, name, 0o755); err != nil {
			return rs.fail(h, "mkdir", err)
		}
		rs.created = true
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|flags, 0)
		if err != nil {
			return rs.fail(h, "open", err)
		}
		d := &rdir{fd: fd, path: h.Path}
		d.refs.Store(1)
		rs.dirs = append(rs.dirs, d)
		if rs.fixModes {
			if err := unix.Fchmod(fd, 0o755); err != nil {
				return rs.fail(h, "chmod", err)
			}
		}
	case TypeSymlink:
		if err := unix.Symlinkat(h.LinkTarget, dirfd, name); err != nil {
			return rs.fail(h, "symlink", err)
		}
		rs.created = true
	case TypeRegular:
		if dir != nil && h.Size <= writerMaxFile {
			return rs.w.add(dir, name, h)
		}
		fd, err := unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|flags, fileMode(h.Executable))
		if err != nil {
			return rs.fail(h, "create", err)
		}
		rs.created = true
		if dir != nil {
			return rs.w.addLarge(fd, h)
		}
		err = rs.nr.eachChunk(func(b []byte) error { return writeAll(fd, b) })
		if err == nil && rs.fixModes {
			err = unix.Fchmod(fd, fileMode(h.Executable))
		}
		if cerr := unix.Close(fd); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			var ne *Error
			if errors.As(err, &ne) {
				return err
			}
			return rs.fail(h, "writing", err)
		}
	default:
		return rs.fail(h, "restoring", fmt.Errorf("unknown node type %v", h.Type))
	}
	return nil
}

func fileMode(exec bool) uint32 {
	if exec {
		return 0o555
	}
	return 0o444
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// removeAt removes name in dirfd and everything below it, making
// directories writable first, never following a symlink. It works on
// descriptors, so trees deeper than PATH_MAX are removed too.
func removeAt(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR && err != unix.EPERM {
		return err
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	unix.Fchmod(fd, 0o700)
	ents, err := readDir(fd, name)
	if err == nil {
		for _, e := range ents {
			if rerr := removeAt(fd, e.name); rerr != nil && err == nil {
				err = rerr
			}
		}
	}
	unix.Close(fd)
	if rerr := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); rerr != nil && err == nil {
		err = rerr
	}
	return err
}
