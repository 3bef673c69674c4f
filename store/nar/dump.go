package nar

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// outBufSize is Dump's output buffer: few writes, each large.
const outBufSize = 1 << 20

// out is a buffered writer of NAR tokens with a sticky error.
type out struct {
	w   io.Writer
	buf []byte
	err error
}

func newOut(w io.Writer) *out { return &out{w: w, buf: make([]byte, 0, outBufSize)} }

func (o *out) flush() {
	if o.err == nil && len(o.buf) > 0 {
		_, o.err = o.w.Write(o.buf)
	}
	o.buf = o.buf[:0]
}

// write appends raw bytes; large ones go straight to w.
func (o *out) write(p []byte) {
	if len(o.buf)+len(p) > cap(o.buf) {
		o.flush()
		if len(p) >= cap(o.buf)/2 {
			if o.err == nil {
				_, o.err = o.w.Write(p)
			}
			return
		}
	}
	o.buf = append(o.buf, p...)
}

// str appends one token: length, bytes, zero padding.
func (o *out) str(s string) {
	if len(o.buf)+len(s)+16 > cap(o.buf) {
		o.flush()
	}
	if len(s)+16 > cap(o.buf) { // never for names and targets; kept for safety
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
		o.write(n[:])
		o.write([]byte(s))
		o.pad(int64(len(s)))
		return
	}
	o.buf = binary.LittleEndian.AppendUint64(o.buf, uint64(len(s)))
	o.buf = append(o.buf, s...)
	o.pad(int64(len(s)))
}

var zeros [8]byte

// pad appends the zero padding after n bytes of a string.
func (o *out) pad(n int64) { o.write(zeros[:-n&7]) }

// Token sequences written as they are.
var (
	tokMagic      = encode(magic)
	tokDirectory  = encode("(", "type", "directory")
	tokEntry      = encode("entry", "(", "name")
	tokNode       = encode("node")
	tokClose      = encode(")")
	tokSymlink    = encode("(", "type", "symlink", "target")
	tokRegular    = encode("(", "type", "regular", "contents")
	tokExecutable = encode("(", "type", "regular", "executable", "", "contents")
)

func encode(toks ...string) []byte {
	o := &out{buf: make([]byte, 0, 256)}
	for _, t := range toks {
		o.str(t)
	}
	return o.buf
}

// Dump writes the NAR of the file, directory or symlink at path to w. It
// never follows symlinks, records only what a NAR records (type, the owner's
// executable bit, contents, targets), and refuses other file types naming
// the path. Contents are streamed: a file is never held whole in memory,
// except small files read ahead, a bounded window of them.
func Dump(w io.Writer, path string) error {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: path, Err: err}
	}
	o := newOut(w)
	o.write(tokMagic)
	var err error
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		err = dumpRootFile(o, path, &st)
	case unix.S_IFLNK:
		var target string
		if target, err = readlinkat(unix.AT_FDCWD, path, path); err == nil {
			o.write(tokSymlink)
			o.str(target)
			o.write(tokClose)
		}
	case unix.S_IFDIR:
		err = dumpTree(o, path)
	default:
		err = unsupported(path, st.Mode)
	}
	if err != nil {
		return err
	}
	o.flush()
	if o.err != nil {
		return fmt.Errorf("writing the NAR of %s: %w", path, o.err)
	}
	return nil
}

func dumpRootFile(o *out, path string, st *unix.Stat_t) error {
	fd, err := openRead(unix.AT_FDCWD, path, unix.O_NOFOLLOW|unix.O_NONBLOCK)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	o.buf = appendRegularHeader(o.buf, st.Mode&unix.S_IXUSR != 0, st.Size)
	if err := streamContents(o, fd, st.Size, path, newPieceBufs()); err != nil {
		return err
	}
	o.pad(st.Size)
	o.write(tokClose)
	return nil
}

// noAtime is O_NOATIME until the kernel refuses it (EPERM: not the owner
// and no CAP_FOWNER): reading a tree then never dirties its inodes, which
// on a journalling file system is the costly part of a first dump.
var noAtime atomic.Int32

func init() { noAtime.Store(unix.O_NOATIME) }

// openRead opens name in dirfd for reading.
func openRead(dirfd int, name string, flags int) (int, error) {
	flags |= unix.O_RDONLY | unix.O_CLOEXEC
	if na := int(noAtime.Load()); na != 0 {
		fd, err := unix.Openat(dirfd, name, flags|na, 0)
		if err != unix.EPERM {
			return fd, err
		}
		noAtime.Store(0)
	}
	return unix.Openat(dirfd, name, flags, 0)
}

// readFull reads exactly len(b) bytes of the file fd.
func readFull(fd int, b []byte, path string) error {
	for len(b) > 0 {
		n, err := unix.Read(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			return fmt.Errorf("%s: file shrank while being archived (%d bytes missing)", path, len(b))
		}
		b = b[n:]
	}
	return nil
}

// readlinkat reads the target of the symlink name in dirfd; errors name
// path.
func readlinkat(dirfd int, name, path string) (string, error) {
	for size := 256; ; size *= 2 {
		b := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, b)
		if err != nil {
			return "", &os.PathError{Op: "readlink", Path: path, Err: err}
		}
		if n < size {
			return string(b[:n]), nil
		}
	}
}

// unsupported is the error for a file a NAR cannot record.
func unsupported(path string, mode uint32) error {
	what := "a file of unknown type"
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO:
		what = "a named pipe"
	case unix.S_IFSOCK:
		what = "a socket"
	case unix.S_IFCHR:
		what = "a character device"
	case unix.S_IFBLK:
		what = "a block device"
	}
	return fmt.Errorf("%s: cannot archive %s (a NAR records only regular files, directories and symlinks)", path, what)
}

// errDumpStopped is a job's error once the dump has failed elsewhere.
var errDumpStopped = errors.New("dump stopped")
