package nar

import (
	"encoding/binary"
	"os"
	"slices"

	"golang.org/x/sys/unix"
)

func (d *dumper) work() {
	defer d.wg.Done()
	for b := range d.jobs {
		d.encode(b)
		for i := range b.items {
			if b.items[i].dir != nil {
				b.items[i].dir.unref()
			}
		}
		close(b.done)
	}
}

func (d *dumper) getSlab() []byte {
	if p, ok := d.slabs.Get().(*[]byte); ok {
		return (*p)[:0]
	}
	return make([]byte, 0, slabInline+256<<10)
}

func (d *dumper) putSlab(b []byte) {
	if cap(b) <= 2*(slabInline+256<<10) {
		d.slabs.Put(&b)
	}
}

// encode writes the NAR encoding of the batch's nodes into its slab.
func (d *dumper) encode(b *batch) {
	select {
	case <-d.quit:
		b.err = errDumpStopped
		return
	default:
	}
	buf := d.getSlab()
	inline := int64(0)
	var target [MaxTargetLen + 1]byte
	for i := range b.items {
		it := &b.items[i]
		switch it.kind {
		case itemDirStart:
			if !it.root {
				buf = appendEntryStart(buf, it.name)
			}
			buf = append(buf, tokDirectory...)
		case itemDirEnd:
			buf = append(buf, tokClose...)
			if !it.root {
				buf = append(buf, tokClose...)
			}
		case itemSymlink:
			n, err := unix.Readlinkat(it.dir.fd, it.name, target[:])
			if err != nil {
				b.err = &os.PathError{Op: "readlink", Path: it.path(), Err: err}
				break
			}
			var t string
			if n < len(target) {
				t = string(target[:n])
			} else if t, err = readlinkat(it.dir.fd, it.name, it.path()); err != nil {
				b.err = err
				break
			}
			buf = appendEntryStart(buf, it.name)
			buf = append(buf, tokSymlink...)
			buf = appendStr(buf, t)
			buf = append(buf, tokClose...)
			buf = append(buf, tokClose...)
		case itemFile:
			buf, inline = d.encodeFile(b, it, buf, inline)
		case itemErr:
			b.err = it.err
		}
		if b.err != nil {
			break
		}
	}
	b.slab = buf
}

// encodeFile appends a regular file: its contents when it is small enough
// and the batch has room, else a segment for the writer to stream.
func (d *dumper) encodeFile(b *batch, it *item, buf []byte, inline int64) ([]byte, int64) {
	fd, err := openRead(it.dir.fd, it.name, unix.O_NOFOLLOW|unix.O_NONBLOCK)
	if err != nil {
		b.err = &os.PathError{Op: "open", Path: it.path(), Err: err}
		return buf, inline
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		b.err = &os.PathError{Op: "fstat", Path: it.path(), Err: err}
		return buf, inline
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		b.err = unsupported(it.path(), st.Mode)
		return buf, inline
	}
	size := st.Size
	buf = appendEntryStart(buf, it.name)
	buf = appendRegularHeader(buf, st.Mode&unix.S_IXUSR != 0, size)
	if size <= aheadMaxFile && inline+size <= slabInline {
		n := len(buf)
		buf = slices.Grow(buf, int(size)+64)[:n+int(size)]
		err := readFull(fd, buf[n:], it.path())
		unix.Close(fd)
		if err != nil {
			b.err = err
			return buf[:n], inline
		}
		inline += size
	} else {
		b.segs = append(b.segs, segment{end: len(buf), fd: fd, size: size, path: it.path()})
	}
	buf = append(buf, zeros[:-size&7]...)
	buf = append(buf, tokClose...)
	buf = append(buf, tokClose...)
	return buf, inline
}

func appendStr(buf []byte, s string) []byte {
	buf = binary.LittleEndian.AppendUint64(buf, uint64(len(s)))
	buf = append(buf, s...)
	return append(buf, zeros[:-len(s)&7]...)
}

func appendEntryStart(buf []byte, name string) []byte {
	buf = append(buf, tokEntry...)
	buf = appendStr(buf, name)
	return append(buf, tokNode...)
}

func appendRegularHeader(buf []byte, exec bool, size int64) []byte {
	if exec {
		buf = append(buf, tokExecutable...)
	} else {
		buf = append(buf, tokRegular...)
	}
	return binary.LittleEndian.AppendUint64(buf, uint64(size))
}

// write writes the batches in order; after an error it only cleans up.
func (d *dumper) write(o *out) error {
	var err error
	pb := newPieceBufs()
	for b := range d.ordered {
		<-b.done
		if err == nil {
			from := 0
			for i := range b.segs {
				s := &b.segs[i]
				o.write(b.slab[from:s.end])
				from = s.end
				err = streamContents(o, s.fd, s.size, s.path, pb)
				unix.Close(s.fd)
				s.fd = -1
				if err != nil {
					break
				}
			}
			if err == nil {
				o.write(b.slab[from:])
				err = b.err
			}
			if err == nil {
				err = o.err
			}
			if err != nil {
				d.stop()
			}
		}
		for _, s := range b.segs {
			if s.fd >= 0 {
				unix.Close(s.fd)
			}
		}
		d.putSlab(b.slab)
		b.slab = nil
	}
	return err
}
