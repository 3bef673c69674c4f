package nar

import (
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// A large file is read in pieces with pread, piecesAhead of them at once by
// as many goroutines, while the writer writes the pieces in order: copying
// out of the page cache then uses every core.
const (
	pieceSize   = 4 << 20
	piecesAhead = 3
)

type piece struct {
	buf  []byte
	err  error
	done chan struct{}
}

// pieceBufs are the buffers of one dump's pieces, reused file after file.
type pieceBufs struct{ free chan []byte }

func newPieceBufs() *pieceBufs {
	pb := &pieceBufs{free: make(chan []byte, piecesAhead)}
	for range piecesAhead {
		pb.free <- nil // allocated when first needed
	}
	return pb
}

// streamContents writes the size bytes of the file fd (named path) to o.
func streamContents(o *out, fd int, size int64, path string, pb *pieceBufs) error {
	pieces := make(chan *piece, piecesAhead)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	go func() {
		defer close(pieces)
		for off := int64(0); off < size; off += pieceSize {
			var buf []byte
			select {
			case buf = <-pb.free:
			case <-stop:
				return
			}
			if buf == nil {
				buf = make([]byte, pieceSize)
			}
			p := &piece{buf: buf[:min(pieceSize, size-off)], done: make(chan struct{})}
			wg.Add(1)
			go func(off int64) {
				defer wg.Done()
				p.err = preadFull(fd, p.buf, off, path)
				close(p.done)
			}(off)
			pieces <- p // never blocks: at most piecesAhead pieces exist
		}
	}()
	var err error
	for p := range pieces {
		<-p.done
		if err == nil {
			if err = p.err; err == nil {
				o.write(p.buf)
				err = o.err
			}
			if err != nil {
				close(stop)
			}
		}
		pb.free <- p.buf[:cap(p.buf)]
	}
	wg.Wait()
	return err
}

// preadFull reads exactly len(b) bytes of the file fd at off.
func preadFull(fd int, b []byte, off int64, path string) error {
	for len(b) > 0 {
		n, err := unix.Pread(fd, b, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			return fmt.Errorf("%s: file shrank while being archived (%d bytes missing)", path, len(b))
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}
