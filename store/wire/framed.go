package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// FramedReader reads the payload of a framed stream: chunks of a u64
// length and that many bytes, unpadded, until a chunk of length 0. Read
// returns io.EOF after the end chunk; a stream that ends before it is
// ErrTruncated, never a silent short payload.
type FramedReader struct {
	r      *Reader
	field  string
	remain uint64 // bytes left in the current chunk
	done   bool
	err    error
}

// NewFramedReader reads a framed stream from r; field names it in errors.
func NewFramedReader(r *Reader, field string) *FramedReader {
	return &FramedReader{r: r, field: field}
}

func (f *FramedReader) Read(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	for f.remain == 0 {
		if f.done {
			return 0, io.EOF
		}
		n, err := f.r.U64(f.field + " chunk length")
		if err != nil {
			f.err = err
			return 0, err
		}
		if n == 0 {
			f.done = true
			return 0, io.EOF
		}
		f.remain = n
	}
	if uint64(len(p)) > f.remain {
		p = p[:f.remain]
	}
	start := f.r.off
	n, err := f.r.br.Read(p)
	f.r.off += int64(n)
	f.remain -= uint64(n)
	if err == io.EOF {
		if f.remain > 0 {
			err = f.r.fail(f.field, start, "", ErrTruncated)
		} else {
			err = nil
		}
	}
	if err != nil {
		f.err = err
	}
	return n, err
}

// Done reports whether the end chunk has been read.
func (f *FramedReader) Done() bool { return f.done }

// Drain reads and discards the rest of the stream, up to its end chunk, so
// that the connection stays in step after a failed upload. It returns the
// stream's error, if reading it failed.
func (f *FramedReader) Drain() error {
	_, err := io.Copy(io.Discard, f)
	return err
}

// FramedWriter writes a framed stream: each flush of its buffer is one
// chunk. Close writes the end chunk; it does not close the stream under it.
type FramedWriter struct {
	w   *Writer
	buf []byte
}

// FrameSize is the FramedWriter's chunk size, as Nix's.
const FrameSize = 32 << 10

// NewFramedWriter writes a framed stream to w.
func NewFramedWriter(w *Writer) *FramedWriter {
	return &FramedWriter{w: w, buf: make([]byte, 0, FrameSize)}
}

func (f *FramedWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := copy(f.buf[len(f.buf):cap(f.buf)], p)
		f.buf = f.buf[:len(f.buf)+k]
		p = p[k:]
		if len(f.buf) == cap(f.buf) {
			f.flushChunk()
		}
	}
	return n, f.w.err
}

func (f *FramedWriter) flushChunk() {
	if len(f.buf) == 0 {
		return
	}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(len(f.buf)))
	f.w.Write(b[:])
	f.w.Write(f.buf)
	f.buf = f.buf[:0]
}

// Close writes what is buffered and the end chunk.
func (f *FramedWriter) Close() error {
	f.flushChunk()
	f.w.U64(0)
	if f.w.err != nil {
		return fmt.Errorf("framed stream: %w", f.w.err)
	}
	return nil
}

// IsProtocolError reports whether err is a malformed or truncated field
// (an *Error), as opposed to a failure of the work a field asked for.
func IsProtocolError(err error) bool {
	var e *Error
	return errors.As(err, &e)
}
