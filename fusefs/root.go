package fusefs

import (
	"context"
	"encoding/binary"
	"errors"
	"syscall"
	"time"

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

// Getattr: the root's mtime is that of the store's database, which
// changes with every registration (by any process): the kernel keeps the
// root's listing until the mtime it sees changes, and sees it again after
// NegativeTTL. Its mode and owner never change.
func (r *root) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFDIR | 0o555
	out.Nlink = 2
	out.Mtime = 1
	var st syscall.Stat_t
	if err := syscall.Stat(r.fsys.dbFile, &st); err == nil {
		out.Mtime, out.Mtimensec = uint64(st.Mtim.Sec), uint32(st.Mtim.Nsec)
	}
	out.Ctime, out.Ctimensec = out.Mtime, out.Mtimensec
	out.Atime, out.Atimensec = out.Mtime, out.Mtimensec
	out.SetTimeout(r.fsys.opts.NegativeTTL)
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
	f.lookups.Add(1)
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
	f.realisations.Add(1)
	if err := f.realise(ctx, p); err != nil {
		switch {
		case ctx.Err() != nil:
			f.interrupted.Add(1)
			return nil, syscall.EINTR
		case f.ctx.Err() != nil:
			f.opts.Logf("lookup of %s: the mount is shutting down", f.store.Print(p))
			return nil, syscall.EIO
		case f.opts.IsUnknown(err):
			f.rememberNegative(name)
			return nil, syscall.ENOENT
		}
		f.opts.Logf("realising %s: %v", f.store.Print(p), err)
		if f.opts.OnFailure != nil {
			f.opts.OnFailure(p, err)
		}
		return nil, syscall.EIO
	}
	f.rootChanged()
	return r.serve(ctx, p, out)
}

// realise asks the Realiser for p and waits until it is done or the
// lookup is interrupted. An interrupted lookup returns at once, but goes
// on wanting p for InterruptGrace: the kernel makes every other process
// looking up the same name wait for this lookup, uninterruptibly, and then
// ask again; within the grace they find the goal still running.
func (f *FS) realise(ctx context.Context, p storepath.Path) error {
	if err := f.ctx.Err(); err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(f.ctx)
	if caller, ok := fuse.FromContext(ctx); ok && f.opts.WithCaller != nil {
		rctx = f.opts.WithCaller(rctx, caller.Uid)
	}
	done := make(chan error, 1)
	go func() { done <- f.realiser.Realise(rctx, p) }()
	select {
	case err := <-done:
		cancel()
		return err
	case <-ctx.Done():
		time.AfterFunc(f.opts.InterruptGrace, cancel)
		return ctx.Err()
	}
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
	child, errno := newChild(ctx, &r.Inode, f, f.store.RealPath(p), generation(p), out)
	if errno == syscall.ENOENT {
		// Valid, yet not in the backing directory: the store is broken
		// (storefs verify says how); never claim the path does not exist.
		f.opts.Logf("looking up %s: valid, but %s is missing", f.store.Print(p), f.store.RealPath(p))
		return nil, syscall.EIO
	}
	return child, errno
}

// generation tells apart inodes of different store paths that the backing
// filesystem gave the same number (after GC freed one).
func generation(p storepath.Path) uint64 {
	return binary.LittleEndian.Uint64([]byte(p.HashPart()[:8]))
}

// Readdir lists the valid paths: the entries of the backing directory
// (with their types and inode numbers) that have a record.
func (r *root) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	f := r.fsys
	valid := map[string]bool{}
	err := f.store.ForEachPath(func(p storepath.Path) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		valid[p.Base()] = true
		return nil
	})
	if errors.Is(err, context.Canceled) {
		return nil, syscall.EINTR
	}
	if err != nil {
		f.opts.Logf("listing the store: %v", err)
		return nil, syscall.EIO
	}
	all, errno := listDir(f.store.BackingDir())
	if errno != 0 {
		f.opts.Logf("listing the backing directory %s: %v", f.store.BackingDir(), errno)
		return nil, errno
	}
	entries := all[:0]
	for _, e := range all {
		if valid[e.Name] {
			entries = append(entries, e)
		}
	}
	return fs.NewListDirStream(entries), 0
}
