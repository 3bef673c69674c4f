package nar

import (
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Dumping a directory tree is a pipeline, so that file system calls run on
// every core while the NAR is written in order:
//
//   - the planner walks the tree in NAR order (directory file descriptors,
//     getdents, sort) and cuts the nodes into batches, each sent both to the
//     workers and, in order, to the writer;
//   - a worker encodes a whole batch into one buffer (slab): it opens each
//     file relative to its directory's descriptor, fstats it and reads
//     small files straight into the slab, at their place in the NAR; large
//     files are left open, to be streamed by the writer (dumpstream.go);
//   - the writer (Dump's goroutine) writes the batches in order, each slab in
//     a few large writes.
//
// Synchronisation is per batch, not per file. What is in flight is bounded:
// about maxBatches batches, each with at most slabInline bytes of file
// contents and batchLen nodes (so as many descriptors of large files left
// open, plus one per directory in use).
const (
	batchLen     = 256
	aheadMaxFile = 1 << 20 // larger files are streamed by the writer
	slabInline   = 8 << 20
	maxBatches   = 6
)

type itemKind uint8

const (
	itemDirStart itemKind = iota
	itemDirEnd
	itemSymlink
	itemFile
	itemErr
)

// item is one node, as the planner sees it.
type item struct {
	kind itemKind
	root bool    // the root directory's start or end
	name string  // entry name in dir
	dir  *dirRef // symlinks and files
	err  error   // itemErr
}

func (it *item) path() string { return it.dir.path + "/" + it.name }

// dirRef is an open directory, closed when its last user is done: the
// planner while it lists it, and each batch item in it until encoded.
type dirRef struct {
	fd   int
	path string
	refs atomic.Int32
}

func newDirRef(fd int, path string) *dirRef {
	d := &dirRef{fd: fd, path: path}
	d.refs.Store(1)
	return d
}

func (d *dirRef) unref() {
	if d.refs.Add(-1) == 0 {
		unix.Close(d.fd)
	}
}

// batch is a run of nodes and, once a worker has done it, their encoding.
type batch struct {
	items []item
	done  chan struct{}
	slab  []byte
	segs  []segment
	err   error // the first node that failed; the slab stops there
}

// segment: the slab up to end, then size bytes streamed from fd.
type segment struct {
	end  int
	fd   int
	size int64
	path string
}

type dumper struct {
	ordered chan *batch // to the writer, in NAR order
	jobs    chan *batch // to the workers
	quit    chan struct{}
	slabs   sync.Pool
	cur     *batch // the planner's batch being filled
	wg      sync.WaitGroup
}

// dumpTree writes the directory at root (the magic is written already).
func dumpTree(o *out, root string) error {
	fd, err := openRead(unix.AT_FDCWD, root, unix.O_DIRECTORY|unix.O_NOFOLLOW)
	if err != nil {
		return &os.PathError{Op: "open", Path: root, Err: err}
	}
	o.flush()
	if o.err != nil {
		unix.Close(fd)
		return o.err
	}
	d := &dumper{
		ordered: make(chan *batch, maxBatches),
		jobs:    make(chan *batch, maxBatches),
		quit:    make(chan struct{}),
	}
	workers := max(2, runtime.GOMAXPROCS(0))
	d.wg.Add(1 + workers)
	go d.plan(newDirRef(fd, root))
	for range workers {
		go d.work()
	}
	err = d.write(o)
	d.wg.Wait()
	return err
}

func (d *dumper) stop() {
	select {
	case <-d.quit:
	default:
		close(d.quit)
	}
}

// send hands the current batch on; false once stopped.
func (d *dumper) send() bool {
	b := d.cur
	if len(b.items) == 0 {
		return true
	}
	d.cur = &batch{items: make([]item, 0, batchLen), done: make(chan struct{})}
	select {
	case d.ordered <- b:
	case <-d.quit:
		for i := range b.items {
			if b.items[i].dir != nil {
				b.items[i].dir.unref()
			}
		}
		return false
	}
	d.jobs <- b // waits at most for a worker to take an earlier batch
	return true
}

func (d *dumper) emit(it item) bool {
	if it.dir != nil {
		it.dir.refs.Add(1)
	}
	d.cur.items = append(d.cur.items, it)
	if len(d.cur.items) >= batchLen {
		return d.send()
	}
	return true
}

// fail emits an error for the writer and stops the walk.
func (d *dumper) fail(err error) bool {
	d.emit(item{kind: itemErr, err: err})
	return false
}

func (d *dumper) plan(root *dirRef) {
	defer d.wg.Done()
	d.cur = &batch{items: make([]item, 0, batchLen), done: make(chan struct{})}
	d.walk(root, "", true)
	root.unref()
	d.send()
	close(d.jobs)
	close(d.ordered)
}

// walk emits the nodes of the directory dir, named name in its parent;
// false when the walk must stop.
func (d *dumper) walk(dir *dirRef, name string, root bool) bool {
	if !d.emit(item{kind: itemDirStart, name: name, root: root}) {
		return false
	}
	ents, err := readDir(dir.fd, dir.path)
	if err != nil {
		return d.fail(err)
	}
	slices.SortFunc(ents, func(a, b dirent) int {
		switch {
		case a.name < b.name:
			return -1
		case a.name > b.name:
			return 1
		}
		return 0
	})
	for _, e := range ents {
		typ := e.typ
		if typ == unix.DT_UNKNOWN {
			var st unix.Stat_t
			if err := unix.Fstatat(dir.fd, e.name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return d.fail(&os.PathError{Op: "lstat", Path: dir.path + "/" + e.name, Err: err})
			}
			typ = dtype(st.Mode)
		}
		var ok bool
		switch typ {
		case unix.DT_REG:
			ok = d.emit(item{kind: itemFile, name: e.name, dir: dir})
		case unix.DT_LNK:
			ok = d.emit(item{kind: itemSymlink, name: e.name, dir: dir})
		case unix.DT_DIR:
			fd, err := openRead(dir.fd, e.name, unix.O_DIRECTORY|unix.O_NOFOLLOW)
			if err != nil {
				return d.fail(&os.PathError{Op: "open", Path: dir.path + "/" + e.name, Err: err})
			}
			child := newDirRef(fd, dir.path+"/"+e.name)
			ok = d.walk(child, e.name, false)
			child.unref()
		default:
			var st unix.Stat_t
			unix.Fstatat(dir.fd, e.name, &st, unix.AT_SYMLINK_NOFOLLOW)
			return d.fail(unsupported(dir.path+"/"+e.name, st.Mode))
		}
		if !ok {
			return false
		}
	}
	return d.emit(item{kind: itemDirEnd, root: root})
}

func dtype(mode uint32) uint8 {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return unix.DT_REG
	case unix.S_IFDIR:
		return unix.DT_DIR
	case unix.S_IFLNK:
		return unix.DT_LNK
	}
	return unix.DT_FIFO // any type a NAR cannot hold
}

type dirent struct {
	name string
	typ  uint8
}

// readDir lists the directory fd with the entries' types, without "." and
// "..".
func readDir(fd int, path string) ([]dirent, error) {
	buf := make([]byte, 32<<10)
	var ents []dirent
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "readdir", Path: path, Err: err}
		}
		if n <= 0 {
			return ents, nil
		}
		// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name.
		for b := buf[:n]; len(b) >= 19; {
			reclen := int(b[16]) | int(b[17])<<8
			if reclen < 19 || reclen > len(b) {
				return nil, &os.PathError{Op: "readdir", Path: path, Err: unix.EBADMSG}
			}
			name := b[19:reclen]
			for i, c := range name {
				if c == 0 {
					name = name[:i]
					break
				}
			}
			if s := string(name); s != "." && s != ".." {
				ents = append(ents, dirent{name: s, typ: b[18]})
			}
			b = b[reclen:]
		}
	}
}
