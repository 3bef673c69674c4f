package fusefs

import (
	"container/list"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// In no-open mode reads come without a file handle. fdCache keeps the
// backing files of recently read nodes open, at most max of them, so that
// a file read in many requests is opened once and the backing file's
// readahead sees one sequential reader.
//
// A read is answered with the backing fd itself (go-fuse splices from it
// after Read returns), so an fd is closed only when no reply still uses
// it: each backingFile counts its users, and an evicted one is closed by
// the last.
type fdCache struct {
	max int

	mu  sync.Mutex // guards lru, every node.fd and every backingFile's fields
	lru *list.List // of *backingFile, most recently used first
}

// backingFile is one open backing file.
type backingFile struct {
	fd      int
	users   int           // replies in flight
	elem    *list.Element // nil once evicted
	owner   *node
	evicted bool
}

func newFdCache(max int) *fdCache {
	return &fdCache{max: max, lru: list.New()}
}

// read answers a read of n at off into at most len(dest) bytes.
func (c *fdCache) read(n *node, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	size := n.st.Size
	if off >= size || len(dest) == 0 {
		return fuse.ReadResultData(nil), 0
	}
	want := int64(len(dest))
	if size-off < want {
		want = size - off
	}
	b, errno := c.acquire(n)
	if errno != 0 {
		return nil, errno
	}
	return &fdResult{c: c, b: b, off: off, sz: int(want)}, 0
}

// acquire returns n's open backing file with one more user.
func (c *fdCache) acquire(n *node) (*backingFile, syscall.Errno) {
	c.mu.Lock()
	if b := n.fd; b != nil {
		b.users++
		c.lru.MoveToFront(b.elem)
		c.mu.Unlock()
		return b, 0
	}
	c.mu.Unlock()

	fd, err := unix.Open(n.real, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, toErrno(err)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if b := n.fd; b != nil { // another read opened it meanwhile
		unix.Close(fd)
		b.users++
		c.lru.MoveToFront(b.elem)
		return b, 0
	}
	b := &backingFile{fd: fd, users: 1, owner: n}
	b.elem = c.lru.PushFront(b)
	n.fd = b
	for c.lru.Len() > c.max {
		c.evictLocked(c.lru.Back().Value.(*backingFile))
	}
	return b, 0
}

// evictLocked takes b out of the cache; it is closed now or by its last
// user.
func (c *fdCache) evictLocked(b *backingFile) {
	if b.evicted {
		return
	}
	b.evicted = true
	c.lru.Remove(b.elem)
	b.elem = nil
	b.owner.fd = nil
	if b.users == 0 {
		unix.Close(b.fd)
	}
}

func (c *fdCache) release(b *backingFile) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b.users--
	if b.users == 0 && b.evicted {
		unix.Close(b.fd)
	}
}

// forget closes n's backing file (the kernel forgot n).
func (c *fdCache) forget(n *node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n.fd != nil {
		c.evictLocked(n.fd)
	}
}

// fdResult is a reply read from a backing file; go-fuse splices it to the
// kernel and then calls Done.
type fdResult struct {
	c    *fdCache
	b    *backingFile
	off  int64
	sz   int
	once sync.Once
}

var _ fuse.ReadResult = (*fdResult)(nil)

// Seekable lets go-fuse splice from the fd (one copy fewer).
func (r *fdResult) Seekable() (fd uintptr, off int64, sz int) {
	return uintptr(r.b.fd), r.off, r.sz
}

func (r *fdResult) Bytes(buf []byte) ([]byte, fuse.Status) {
	if len(buf) > r.sz {
		buf = buf[:r.sz]
	}
	n, err := unix.Pread(r.b.fd, buf, r.off)
	if n < 0 {
		n = 0
	}
	return buf[:n], fuse.ToStatus(err)
}

func (r *fdResult) Size() int { return r.sz }

func (r *fdResult) Done() {
	r.once.Do(func() { r.c.release(r.b) })
}
