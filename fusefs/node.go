package fusefs

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// node is a file, directory or symlink inside a valid path, served from its
// copy in the backing directory. Valid paths never change, so its stat and
// its listing are read once.
type node struct {
	fs.Inode
	fsys *FS
	real string // path in the backing directory
	st   syscall.Stat_t
	gen  uint64

	listMu sync.Mutex      // guards list
	list   []fuse.DirEntry // a directory's entries, once read
	fd     *backingFile    // an open backing file for reads; guarded by fsys.fds.mu
}

var (
	_ fs.NodeLookuper       = (*node)(nil)
	_ fs.NodeGetattrer      = (*node)(nil)
	_ fs.NodeOpener         = (*node)(nil)
	_ fs.NodeReader         = (*node)(nil)
	_ fs.NodeFlusher        = (*node)(nil)
	_ fs.NodeOpendirHandler = (*node)(nil)
	_ fs.NodeReadlinker     = (*node)(nil)
	_ fs.NodeStatfser       = (*node)(nil)
	_ fs.NodeOnForgetter    = (*node)(nil)
)

// newChild makes (or finds) the node of the backing entry real.
func newChild(ctx context.Context, parent *fs.Inode, f *FS, real string, gen uint64, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	n := &node{fsys: f, real: real, gen: gen}
	if err := syscall.Lstat(real, &n.st); err != nil {
		return nil, toErrno(err)
	}
	n.fill(&out.Attr)
	out.SetEntryTimeout(f.opts.EntryTimeout)
	out.SetAttrTimeout(f.opts.EntryTimeout)
	stable := fs.StableAttr{Mode: n.st.Mode & syscall.S_IFMT, Ino: n.st.Ino, Gen: gen}
	return parent.NewInode(ctx, n, stable), 0
}

func (n *node) fill(a *fuse.Attr) {
	a.FromStat(&n.st)
}

func (n *node) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fill(&out.Attr)
	out.SetTimeout(n.fsys.opts.EntryTimeout)
	return 0
}

func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	var st syscall.Statfs_t
	if err := syscall.Statfs(n.real, &st); err != nil {
		return toErrno(err)
	}
	out.FromStatfsT(&st)
	return 0
}

// Lookup finds a child. Inside a valid path a missing name stays missing:
// the kernel may remember the ENOENT as long as an entry.
func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if n.st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return nil, syscall.ENOTDIR
	}
	child, errno := newChild(ctx, &n.Inode, n.fsys, filepath.Join(n.real, name), n.gen, out)
	if errno == syscall.ENOENT {
		out.SetEntryTimeout(n.fsys.opts.EntryTimeout)
	}
	return child, errno
}

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	target, err := os.Readlink(n.real)
	if err != nil {
		return nil, toErrno(err)
	}
	return []byte(target), 0
}

// OpendirHandle hands out the directory's listing, read from the backing
// directory at the first READDIR and kept; the kernel caches it too
// (FOPEN_CACHE_DIR), so a warm opendir costs one round trip and no work.
func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return &dirHandle{n: n}, fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE, 0
}

// entries returns the directory's listing, reading it the first time.
func (n *node) entries() ([]fuse.DirEntry, syscall.Errno) {
	n.listMu.Lock()
	defer n.listMu.Unlock()
	if n.list == nil {
		list, errno := listDir(n.real)
		if errno != 0 {
			return nil, errno
		}
		n.list = list
	}
	return n.list, 0
}

// listDir reads a backing directory: names, types and inode numbers.
func listDir(dir string) ([]fuse.DirEntry, syscall.Errno) {
	ds, errno := fs.NewLoopbackDirStream(dir)
	if errno != 0 {
		return nil, errno
	}
	defer ds.Close()
	list := []fuse.DirEntry{}
	for ds.HasNext() {
		e, errno := ds.Next()
		if errno != 0 {
			return nil, errno
		}
		if e.Name == "." || e.Name == ".." {
			continue
		}
		e.Off = 0
		list = append(list, e)
	}
	return list, 0
}

// dirHandle is an open directory: a position in its node's listing.
type dirHandle struct {
	n    *node
	list fs.DirStream // nil until the first READDIR
}

var (
	_ fs.FileReaddirenter = (*dirHandle)(nil)
	_ fs.FileSeekdirer    = (*dirHandle)(nil)
)

func (d *dirHandle) stream() syscall.Errno {
	if d.list != nil {
		return 0
	}
	list, errno := d.n.entries()
	if errno != 0 {
		return errno
	}
	d.list = fs.NewListDirStream(list)
	return 0
}

func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if errno := d.stream(); errno != 0 {
		return nil, errno
	}
	if !d.list.HasNext() {
		return nil, 0
	}
	e, errno := d.list.Next()
	return &e, errno
}

func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if errno := d.stream(); errno != 0 {
		return errno
	}
	return d.list.(fs.FileSeekdirer).Seekdir(ctx, off)
}

// Open: in no-open mode (the default) it answers ENOSYS, which the kernel
// takes as "opens need no round trip" for the rest of the mount: it keeps
// the page cache of every file (FOPEN_KEEP_CACHE) and sends reads without
// a handle. With Options.Passthrough it opens the backing file, and go-fuse
// registers it for kernel passthrough.
func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND|syscall.O_CREAT) != 0 {
		return nil, 0, syscall.EROFS
	}
	if !n.fsys.opts.Passthrough {
		return nil, 0, syscall.ENOSYS
	}
	fd, err := unix.Open(n.real, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, 0, toErrno(err)
	}
	return &handle{fd: fd}, fuse.FOPEN_KEEP_CACHE, 0
}

// Flush answers ENOSYS, so the kernel stops sending FLUSH at every close.
func (n *node) Flush(ctx context.Context, f fs.FileHandle) syscall.Errno {
	return syscall.ENOSYS
}

// Read serves a read that the page cache (or passthrough) did not: from
// the handle when there is one, else from the cached backing file.
func (n *node) Read(ctx context.Context, f fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if h, ok := f.(*handle); ok {
		return fuse.ReadResultFd(uintptr(h.fd), off, len(dest)), 0
	}
	return n.fsys.fds.read(n, dest, off)
}

// OnForget closes the backing file when the kernel forgets the node.
func (n *node) OnForget() {
	n.fsys.fds.forget(n)
}

// handle is a backing file opened by OPEN (Options.Passthrough).
type handle struct{ fd int }

var (
	_ fs.FilePassthroughFder = (*handle)(nil)
	_ fs.FileReleaser        = (*handle)(nil)
)

func (h *handle) PassthroughFd() (int, bool) { return h.fd, true }

func (h *handle) Release(ctx context.Context) syscall.Errno {
	return toErrno(unix.Close(h.fd))
}
