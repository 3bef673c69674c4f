package store

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// The canonical form of contents (docs/formats.md, "Canonical contents"):
// only what a NAR records survives, so the same NAR always restores to the
// same tree.
const (
	canonicalFile = 0o444
	canonicalExec = 0o555
	canonicalDir  = 0o555
	canonicalTime = 1 // seconds since the epoch
)

// Canonicalise puts a tree in canonical form: owned by the current user
// (root in production), regular files 0444, or 0555 when the owner may
// execute them (the bit a NAR records), directories 0555, no setuid,
// setgid or sticky bits, no extended attributes (but security.selinux,
// which the LSM keeps; a NAR records none), every mtime 1. Anything but
// regular files,
// directories and symlinks is refused. Entries are reached from their
// directory's descriptor, never through a symlink.
func Canonicalise(root string) error {
	c := &canonicaliser{
		uid: uint32(os.Getuid()), gid: uint32(os.Getgid()),
		ts: []unix.Timespec{{Sec: canonicalTime}, {Sec: canonicalTime}},
	}
	return c.fix(unix.AT_FDCWD, root, root)
}

type canonicaliser struct {
	uid, gid uint32
	ts       []unix.Timespec
}

// fix canonicalises the entry name of the directory dirfd (path names it
// in errors), post-order: a directory is made read-only after its entries.
func (c *canonicaliser) fix(dirfd int, name, path string) error {
	fail := func(err error) error { return fmt.Errorf("canonicalising %s: %w", path, err) }
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fail(err)
	}
	if st.Uid != c.uid || st.Gid != c.gid {
		if err := unix.Fchownat(dirfd, name, int(c.uid), int(c.gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fail(err)
		}
	}
	if err := stripXattrs(entryPath(dirfd, name)); err != nil {
		return fail(err)
	}
	perm := st.Mode & 0o7777
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		// Changing an entry needs no write permission on its directory,
		// only reading and searching it.
		if perm&0o500 != 0o500 {
			if err := unix.Fchmodat(dirfd, name, 0o755, 0); err != nil {
				return fail(err)
			}
			perm = 0o755
		}
		if err := c.entries(dirfd, name, path); err != nil {
			return err
		}
		if perm != canonicalDir {
			if err := unix.Fchmodat(dirfd, name, canonicalDir, 0); err != nil {
				return fail(err)
			}
		}
	case unix.S_IFREG:
		want := uint32(canonicalFile)
		if perm&0o100 != 0 {
			want = canonicalExec
		}
		if perm != want {
			if err := unix.Fchmodat(dirfd, name, want, 0); err != nil {
				return fail(err)
			}
		}
	case unix.S_IFLNK:
	default:
		return fail(fmt.Errorf("not a regular file, directory or symlink (mode %#o)", st.Mode))
	}
	if err := unix.UtimesNanoAt(dirfd, name, c.ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fail(fmt.Errorf("setting mtime: %w", err))
	}
	return nil
}

// entries canonicalises what the directory name of dirfd holds.
func (c *canonicaliser) entries(dirfd int, name, path string) error {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("canonicalising %s: %w", path, err)
	}
	dir := os.NewFile(uintptr(fd), path)
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("canonicalising %s: %w", path, err)
	}
	for _, n := range names {
		if err := c.fix(fd, n, path+"/"+n); err != nil {
			return err
		}
	}
	return nil
}

// checkCanonical reports the first entry of a tree that is not canonical.
func checkCanonical(root string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		mode := info.Mode()
		var want os.FileMode
		switch {
		case mode.IsDir():
			want = os.ModeDir | canonicalDir
		case mode.IsRegular():
			want = canonicalFile
			if mode&0o100 != 0 {
				want = canonicalExec
			}
		case mode&os.ModeSymlink != 0:
			want = mode
		default:
			return fmt.Errorf("%s is a %s", p, mode.Type())
		}
		if mode != want {
			return fmt.Errorf("%s has mode %s, want %s", p, mode, want)
		}
		if info.ModTime().Unix() != canonicalTime {
			return fmt.Errorf("%s has mtime %d, want %d", p, info.ModTime().Unix(), canonicalTime)
		}
		names, err := listXattrs(p)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		for _, n := range names {
			if n != keptXattr {
				return fmt.Errorf("%s has extended attribute %s", p, n)
			}
		}
		return nil
	})
}

// keptXattr is the one extended attribute canonical contents may carry:
// SELinux labels every file and may refuse its removal, as Nix knows.
const keptXattr = "security.selinux"

// entryPath names the entry name of the directory dirfd for the *xattr
// calls, which take no directory descriptor: through /proc/self/fd, so no
// symlink on the way is followed (the l* calls do not follow the last).
func entryPath(dirfd int, name string) string {
	if dirfd == unix.AT_FDCWD {
		return name
	}
	return "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + name
}

// listXattrs returns the names of the extended attributes of path (not
// following a symlink); a filesystem without them has none.
func listXattrs(path string) ([]string, error) {
	for {
		n, err := unix.Llistxattr(path, nil)
		if err == unix.ENOTSUP || err == unix.EOPNOTSUPP {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("listing extended attributes: %w", err)
		}
		if n == 0 {
			return nil, nil
		}
		buf := make([]byte, n)
		n, err = unix.Llistxattr(path, buf)
		if err == unix.ERANGE {
			continue // it grew meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("listing extended attributes: %w", err)
		}
		var names []string
		for _, b := range bytes.Split(buf[:n], []byte{0}) {
			if len(b) > 0 {
				names = append(names, string(b))
			}
		}
		return names, nil
	}
}

// stripXattrs removes every extended attribute of path but keptXattr.
func stripXattrs(path string) error {
	names, err := listXattrs(path)
	if err != nil {
		return err
	}
	for _, n := range names {
		if n == keptXattr {
			continue
		}
		if err := unix.Lremovexattr(path, n); err != nil && err != unix.ENODATA {
			return fmt.Errorf("removing extended attribute %s: %w", n, err)
		}
	}
	return nil
}
