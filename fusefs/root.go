package fusefs

import (
	"context"
	"encoding/binary"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"storefs/store/storepath"
)

// root is the store dir: the valid paths, and the door to realising more.
type root struct {
	fs.Inode
	fsys *FS
}

var (
	_ fs.NodeLookuper  = (*root)(nil)
	_ fs.NodeReaddirer = (*root)(nil)
	_ fs.NodeGetattrer = (*root)(nil)
	_ fs.NodeStatfser  = (*root)(nil)
)

func (r *root) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFDIR | 0o555
	out.Nlink = 2
	out.Mtime, out.Ctime, out.Atime = 1, 1, 1
	return 0
}

func (r *root) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	var st syscall.Statfs_t
	if err := syscall.Statfs(r.fsys.store.BackingDir(), &st); err != nil {
		return toErrno(err)
	}
	out.FromStatfsT(&st)
	return 0
}

// Lookup serves a valid path, or realises it first (blocking), or answers
// ENOENT.
func (r *root) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	f := r.fsys
	p, err := storepath.ParseBase(name)
	if err != nil {
		return nil, syscall.ENOENT
	}
	if child, errno := r.serve(ctx, p, out); errno != syscall.ENOENT {
		return child, errno
	}
	if f.negative(name) {
		return nil, syscall.ENOENT
	}
	if err := f.realiser.Realise(ctx, p); err != nil {
		if ctx.Err() != nil {
			return nil, syscall.EINTR
		}
		if f.opts.IsUnknown(err) {
			f.rememberNegative(name)
			return nil, syscall.ENOENT
		}
		f.opts.Logf("realising %s: %v", f.store.Print(p), err)
		if f.opts.OnFailure != nil {
			f.opts.OnFailure(p, err)
		}
		return nil, syscall.EIO
	}
	return r.serve(ctx, p, out)
}

// serve returns the node of p if p is valid, ENOENT if not.
func (r *root) serve(ctx context.Context, p storepath.Path, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	f := r.fsys
	ok, err := f.store.IsValid(p)
	if err != nil {
		f.opts.Logf("looking up %s: %v", f.store.Print(p), err)
		return nil, syscall.EIO
	}
	if !ok {
		return nil, syscall.ENOENT
	}
	return newChild(ctx, &r.Inode, f, f.store.RealPath(p), generation(p), out)
}

// generation tells apart inodes of different store paths that the backing
// filesystem gave the same number (after GC freed one).
func generation(p storepath.Path) uint64 {
	return binary.LittleEndian.Uint64([]byte(p.HashPart()[:8]))
}

// Readdir lists the valid paths.
func (r *root) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	var entries []fuse.DirEntry
	err := r.fsys.store.ForEachPath(func(p storepath.Path) error {
		entries = append(entries, fuse.DirEntry{Name: p.Base(), Mode: syscall.S_IFDIR})
		return nil
	})
	if err != nil {
		r.fsys.opts.Logf("listing the store: %v", err)
		return nil, syscall.EIO
	}
	return fs.NewListDirStream(entries), 0
}
