package nar

import (
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Restoring a directory is parallel too: the parser (RestoreFrom's
// goroutine) reads the archive and makes directories and symlinks itself,
// in order; small files are copied into batches that writer goroutines
// create (openat with O_EXCL, write, close) while the parser reads on.
// Files larger than writerMaxFile are created by the parser and queued in
// pieces of up to writerSlab bytes, which the writers write with pwrite.
// At most writerSlabs batches exist, so the memory held is
// bounded and the parser waits when the writers fall behind.
//
// A directory becomes read-only when its last user is done with it: the
// parser when it leaves it, or the writer of its last queued file (rdir.refs).
const (
	writerMaxFile    = 1 << 20
	writerBatchFiles = 256
	writerSlab       = 4 << 20
	writerSlabs      = 6
)

// rdir is an open directory being filled.
type rdir struct {
	fd   int
	path string // its Header.Path
	refs atomic.Int32
}

// unref drops a user; the last one makes the directory read-only (unless
// the restore failed) and closes it.
func (d *rdir) unref(w *writers, ok bool) {
	if d.refs.Add(-1) != 0 {
		return
	}
	if ok && !w.bad.Load() {
		if err := unix.Fchmod(d.fd, 0o555); err != nil {
			w.record(pathError(w.rs.nr.off, w.rs.target, d.path, "chmod", err))
		}
	}
	unix.Close(d.fd)
}

// wfile is a file, or a piece of a large one (of), queued for the writers;
// its contents are slab[from:to].
type wfile struct {
	dir      *rdir // small files: where to create it
	name     string
	path     string
	off      int64
	exec     bool
	of       *openFile // pieces: the file, open, and where the piece goes
	pos      int64
	from, to int
}

// openFile is a large file the parser created, closed when the writers are
// done with its last piece.
type openFile struct {
	fd   int
	path string
	off  int64
	mode uint32
	refs atomic.Int32
}

func (of *openFile) unref(w *writers) {
	if of.refs.Add(-1) != 0 {
		return
	}
	var err error
	if w.rs.fixModes {
		err = unix.Fchmod(of.fd, of.mode)
	}
	if cerr := unix.Close(of.fd); err == nil {
		err = cerr
	}
	if err != nil {
		w.record(pathError(of.off, w.rs.target, of.path, "writing", err))
	}
}

type wbatch struct {
	files []wfile
	slab  []byte
}

type writers struct {
	rs    *restorer
	cur   *wbatch // the parser's batch being filled
	jobs  chan *wbatch
	slabs chan []byte // free slabs; nil ones are allocated when first used
	wg    sync.WaitGroup
	bad   atomic.Bool // set once anything failed: writers skip the rest

	mu  sync.Mutex // guards err
	err error      // the first writer failure
}

func newWriters(rs *restorer) *writers {
	w := &writers{rs: rs, jobs: make(chan *wbatch, writerSlabs), slabs: make(chan []byte, writerSlabs)}
	for range writerSlabs {
		w.slabs <- nil
	}
	w.cur = w.newBatch()
	n := max(2, runtime.GOMAXPROCS(0))
	w.wg.Add(n)
	for range n {
		go w.work()
	}
	return w
}

func (w *writers) newBatch() *wbatch {
	slab := <-w.slabs
	if slab == nil {
		slab = make([]byte, 0, writerSlab+writerMaxFile)
	}
	return &wbatch{files: make([]wfile, 0, writerBatchFiles), slab: slab}
}

func (w *writers) record(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
	w.bad.Store(true)
}

// failed returns a writer's failure, if any.
func (w *writers) failed() error {
	if !w.bad.Load() {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// room returns the batch to put n more bytes in, sending the current one
// when it is full.
func (w *writers) room(n int) *wbatch {
	if b := w.cur; len(b.files) >= writerBatchFiles || (len(b.files) > 0 && len(b.slab)+n > writerSlab) {
		w.jobs <- b // never blocks: there are no more batches than slots
		w.cur = w.newBatch()
	}
	return w.cur
}

// read reads the next n bytes of the current file's contents into b's slab.
func (w *writers) read(b *wbatch, n int) (from int, err error) {
	from = len(b.slab)
	b.slab = slices.Grow(b.slab, n)[:from+n]
	if err := w.rs.nr.readContents(b.slab[from:]); err != nil {
		b.slab = b.slab[:from]
		return 0, err
	}
	return from, nil
}

// add queues the small regular file h, reading its contents.
func (w *writers) add(dir *rdir, name string, h *Header) error {
	size := int(h.Size)
	b := w.room(size)
	from, err := w.read(b, size)
	if err != nil {
		return err
	}
	dir.refs.Add(1)
	b.files = append(b.files, wfile{dir: dir, name: name, path: h.Path, off: h.Offset, exec: h.Executable, from: from, to: from + size})
	return nil
}

// addLarge queues the contents of the large file h, created as fd, in pieces.
func (w *writers) addLarge(fd int, h *Header) error {
	of := &openFile{fd: fd, path: h.Path, off: h.Offset, mode: fileMode(h.Executable)}
	of.refs.Store(1)
	defer of.unref(w)
	for pos := int64(0); pos < h.Size; {
		n := int(min(h.Size-pos, writerSlab))
		b := w.room(n)
		from, err := w.read(b, n)
		if err != nil {
			return err
		}
		of.refs.Add(1)
		b.files = append(b.files, wfile{of: of, path: h.Path, off: h.Offset + pos, pos: pos, from: from, to: from + n})
		pos += int64(n)
	}
	return nil
}

// finish queues the last batch (when ok), waits for the writers and
// returns their first failure.
func (w *writers) finish(ok bool) error {
	if !ok {
		w.bad.Store(true)
	}
	w.jobs <- w.cur
	w.cur = nil
	close(w.jobs)
	w.wg.Wait()
	return w.failed()
}

func (w *writers) work() {
	defer w.wg.Done()
	for b := range w.jobs {
		for i := range b.files {
			f := &b.files[i]
			if !w.bad.Load() {
				if err := w.write(b, f); err != nil {
					w.record(err)
				}
			}
			if f.of != nil {
				f.of.unref(w)
			} else {
				f.dir.unref(w, true)
			}
		}
		w.slabs <- b.slab[:0]
	}
}

// write creates one file, or writes one piece of a large one.
func (w *writers) write(b *wbatch, f *wfile) error {
	if f.of != nil {
		for p, pos := b.slab[f.from:f.to], f.pos; len(p) > 0; {
			n, err := unix.Pwrite(f.of.fd, p, pos)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return pathError(f.off, w.rs.target, f.path, "writing", err)
			}
			p, pos = p[n:], pos+int64(n)
		}
		return nil
	}
	mode := fileMode(f.exec)
	fd, err := unix.Openat(f.dir.fd, f.name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
	if err != nil {
		return pathError(f.off, w.rs.target, f.path, "create", err)
	}
	err = writeAll(fd, b.slab[f.from:f.to])
	if err == nil && w.rs.fixModes {
		err = unix.Fchmod(fd, mode)
	}
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err != nil {
		return pathError(f.off, w.rs.target, f.path, "writing", err)
	}
	return nil
}
