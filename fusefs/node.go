package fusefs

import (
	"context"
	"os"
	"path/filepath"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// node is a file, directory or symlink inside a valid path, served from its
// copy in the backing directory. Valid paths never change, so its stat is
// read once.
type node struct {
	fs.Inode
	fsys *FS
	real string // path in the backing directory
	st   syscall.Stat_t
	gen  uint64
}

var (
	_ fs.NodeLookuper       = (*node)(nil)
	_ fs.NodeGetattrer      = (*node)(nil)
	_ fs.NodeOpener         = (*node)(nil)
	_ fs.NodeOpendirHandler = (*node)(nil)
	_ fs.NodeReadlinker     = (*node)(nil)
	_ fs.NodeStatfser       = (*node)(nil)
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

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if n.st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return nil, syscall.ENOTDIR
	}
	return newChild(ctx, &n.Inode, n.fsys, filepath.Join(n.real, name), n.gen, out)
}

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	target, err := os.Readlink(n.real)
	if err != nil {
		return nil, toErrno(err)
	}
	return []byte(target), 0
}

// OpendirHandle lists the directory once; the kernel keeps the listing.
func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	f, err := os.Open(n.real)
	if err != nil {
		return nil, 0, toErrno(err)
	}
	defer f.Close()
	ents, err := f.ReadDir(-1)
	if err != nil {
		return nil, 0, toErrno(err)
	}
	list := make([]fuse.DirEntry, 0, len(ents))
	for _, e := range ents {
		mode := uint32(syscall.S_IFREG)
		switch {
		case e.IsDir():
			mode = syscall.S_IFDIR
		case e.Type()&os.ModeSymlink != 0:
			mode = syscall.S_IFLNK
		}
		list = append(list, fuse.DirEntry{Name: e.Name(), Mode: mode})
	}
	return fs.NewListDirStream(list), fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE, 0
}

// Open opens the backing file; reads go through the kernel (passthrough)
// where it can, and the page cache is kept.
func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND|syscall.O_CREAT) != 0 {
		return nil, 0, syscall.EROFS
	}
	fd, err := unix.Open(n.real, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, 0, toErrno(err)
	}
	return &handle{fd: fd}, fuse.FOPEN_KEEP_CACHE, 0
}

// handle is an open backing file.
type handle struct{ fd int }

var (
	_ fs.FilePassthroughFder = (*handle)(nil)
	_ fs.FileReader          = (*handle)(nil)
	_ fs.FileReleaser        = (*handle)(nil)
)

func (h *handle) PassthroughFd() (int, bool) { return h.fd, true }

// Read serves reads when passthrough is not in use.
func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return fuse.ReadResultFd(uintptr(h.fd), off, len(dest)), 0
}

func (h *handle) Release(ctx context.Context) syscall.Errno {
	return toErrno(unix.Close(h.fd))
}
