package store

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// The canonical form of contents (docs/formats.md, "References"): only what
// a NAR records survives, so the same NAR always restores to the same tree.
const (
	canonicalFile = 0o444
	canonicalExec = 0o555
	canonicalDir  = 0o555
	canonicalTime = 1 // seconds since the epoch
)

// Canonicalise puts a tree in canonical form: owned by the current user
// (root in production), regular files 0444, or 0555 when the owner may
// execute them (the bit a NAR records),
// directories 0555, no setuid, setgid or sticky bits, every mtime 1.
// Anything but regular files, directories and symlinks is refused.
func Canonicalise(root string) error {
	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	ts := []unix.Timespec{{Sec: canonicalTime}, {Sec: canonicalTime}}
	fail := func(p string, err error) error { return fmt.Errorf("canonicalising %s: %w", p, err) }
	// Post-order, so a directory is made read-only after its entries.
	var walk func(p string) error
	walk = func(p string) error {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return fail(p, err)
		}
		if st.Uid != uid || st.Gid != gid {
			if err := unix.Lchown(p, int(uid), int(gid)); err != nil {
				return fail(p, err)
			}
		}
		perm := st.Mode & 0o7777
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			// Changing an entry needs no write permission on its
			// directory, only reading and searching it.
			if perm&0o500 != 0o500 {
				if err := unix.Chmod(p, 0o755); err != nil {
					return fail(p, err)
				}
				perm = 0o755
			}
			names, err := readDirNames(p)
			if err != nil {
				return fail(p, err)
			}
			for _, name := range names {
				if err := walk(filepath.Join(p, name)); err != nil {
					return err
				}
			}
			if perm != canonicalDir {
				if err := unix.Chmod(p, canonicalDir); err != nil {
					return fail(p, err)
				}
			}
		case unix.S_IFREG:
			want := uint32(canonicalFile)
			if perm&0o100 != 0 {
				want = canonicalExec
			}
			if perm != want {
				if err := unix.Chmod(p, want); err != nil {
					return fail(p, err)
				}
			}
		case unix.S_IFLNK:
		default:
			return fail(p, fmt.Errorf("not a regular file, directory or symlink (mode %#o)", st.Mode))
		}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fail(p, fmt.Errorf("setting mtime: %w", err))
		}
		return nil
	}
	return walk(root)
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
		return nil
	})
}
