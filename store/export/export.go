// Package export reads and writes the stream of `nix-store --export` and
// `--import` (docs/formats.md, "Export stream"): for each path, the number 1,
// the path's NAR, the magic 0x4558494e, the path, its references and its
// deriver; after the last path, the number 0.
//
// The stream has no lengths around its NARs, so the Reader parses each NAR
// (store/nar, strictly) to find where it ends, on one shared buffer that the
// NAR reader never reads past. A path's metadata comes after its contents:
// a caller restores the NAR first and learns its name from Trailer.
//
// Invariants: every error names the path's position in the stream (1-based)
// and the byte offset of the stream where it was found; a number or string
// out of bounds is an error, never an allocation.
package export

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"storefs/store/nar"
	"storefs/store/storepath"
	"storefs/store/wire"
)

// Magic precedes each path's metadata ("NIXE" little-endian).
const Magic = 0x4558494e

// maxReferences bounds the reference count read from a stream.
const maxReferences = 1 << 20

// maxPathLen bounds a store path string (and the other strings).
const maxPathLen = wire.MaxPathLen

// Entry is one path's metadata in the stream.
type Entry struct {
	Path       storepath.Path
	References []storepath.Path
	Deriver    storepath.Path // zero when the stream names none
}

// Error is an error in a stream: which path (1-based, 0 before the first),
// where (bytes from the stream's start) and what.
type Error struct {
	Index  int
	Offset int64
	Err    error
}

func (e *Error) Error() string {
	return fmt.Sprintf("export stream path %d, offset %d: %v", e.Index, e.Offset, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Reader reads an export stream.
type Reader struct {
	br    *bufio.Reader
	wr    *wire.Reader // numbers and strings, on br
	dir   storepath.Dir
	off   int64 // NAR bytes read so far, which wr does not count
	start int64 // stream offset of the current path's NAR
	index int
	nar   *nar.Reader
	done  bool
	err   error
}

// NewReader reads a stream of paths in store dir dir.
func NewReader(r io.Reader, dir storepath.Dir) *Reader {
	br := bufio.NewReaderSize(r, 1<<20)
	return &Reader{br: br, wr: wire.NewReader(br), dir: dir}
}

func (r *Reader) fail(err error) error {
	if r.err == nil {
		off := r.offset()
		var ne *nar.Error
		var we *wire.Error
		switch {
		case errors.As(err, &ne):
			// The NAR error names its own offset; the stream's is where
			// the NAR starts plus that.
			off = r.start + ne.Offset
			err = fmt.Errorf("in its NAR: %w", err)
		case errors.As(err, &we):
			// The field's own offset, said once.
			off = we.Offset + r.off
			err = fieldError{we}
		}
		r.err = &Error{Index: r.index, Offset: off, Err: err}
	}
	return r.err
}

// fieldError is a field's error without its offset, which the stream's
// Error says.
type fieldError struct{ e *wire.Error }

func (f fieldError) Error() string { return f.e.Message() }
func (f fieldError) Unwrap() error { return f.e }

// Fail records err, found while reading the current path (restoring its
// NAR, say), as the stream's error, with the path's position in the stream.
func (r *Reader) Fail(err error) error { return r.fail(err) }

func (r *Reader) offset() int64 {
	if r.nar != nil {
		return r.start + r.nar.NarSize()
	}
	return r.wr.Offset() + r.off
}

// Next moves to the next path and returns a reader of its NAR, or io.EOF
// after the last. Read the NAR to its end (until its Next returns io.EOF,
// e.g. by restoring it) and then call Trailer.
func (r *Reader) Next() (*nar.Reader, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.nar != nil {
		return nil, r.fail(errors.New("Next called before the previous path's Trailer"))
	}
	if r.done {
		return nil, io.EOF
	}
	r.index++
	n, err := r.u64("path marker")
	if err != nil {
		return nil, err
	}
	switch n {
	case 0:
		r.index--
		r.done = true
		if _, err := r.br.Peek(1); err == nil {
			return nil, r.fail(errors.New("trailing data after the end of the stream"))
		}
		return nil, io.EOF
	case 1:
	default:
		return nil, r.fail(fmt.Errorf("path marker is %d, want 1 (another path) or 0 (the end): not a nix-store --export stream", n))
	}
	r.start = r.offset()
	r.nar = nar.NewReader(r.br)
	return r.nar, nil
}

// Trailer reads the current path's metadata, after its NAR.
func (r *Reader) Trailer() (*Entry, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.nar == nil {
		return nil, r.fail(errors.New("Trailer called before Next"))
	}
	if err := r.nar.CheckEOF(); err != nil && !errors.Is(err, nar.ErrTrailingData) {
		return nil, r.fail(err)
	}
	r.off += r.nar.NarSize()
	r.nar = nil
	magic, err := r.u64("magic")
	if err != nil {
		return nil, err
	}
	if magic != Magic {
		return nil, r.fail(fmt.Errorf("magic is %#x, want %#x", magic, Magic))
	}
	e := &Entry{}
	if e.Path, err = r.path("store path"); err != nil {
		return nil, err
	}
	count, err := r.u64("reference count")
	if err != nil {
		return nil, err
	}
	if count > maxReferences {
		return nil, r.fail(fmt.Errorf("%s has %d references, more than %d", r.dir.Print(e.Path), count, maxReferences))
	}
	for i := uint64(0); i < count; i++ {
		ref, err := r.path(fmt.Sprintf("reference %d of %s", i+1, r.dir.Print(e.Path)))
		if err != nil {
			return nil, err
		}
		e.References = append(e.References, ref)
	}
	deriver, err := r.str("deriver")
	if err != nil {
		return nil, err
	}
	if deriver != "" {
		if e.Deriver, err = r.dir.Parse(deriver); err != nil {
			return nil, r.fail(fmt.Errorf("deriver of %s: %w", r.dir.Print(e.Path), err))
		}
	}
	// A legacy signature: 1 and a string, which Nix ignores too.
	sig, err := r.u64("signature marker")
	if err != nil {
		return nil, err
	}
	switch sig {
	case 0:
	case 1:
		if _, err := r.str("legacy signature"); err != nil {
			return nil, err
		}
	default:
		return nil, r.fail(fmt.Errorf("signature marker is %d, want 0 or 1", sig))
	}
	return e, nil
}

func (r *Reader) u64(what string) (uint64, error) {
	n, err := r.wr.U64(what)
	if err != nil {
		return 0, r.fail(err)
	}
	return n, nil
}

func (r *Reader) str(what string) (string, error) {
	s, err := r.wr.String(what, maxPathLen)
	if err != nil {
		return "", r.fail(err)
	}
	return s, nil
}

func (r *Reader) path(what string) (storepath.Path, error) {
	s, err := r.str(what)
	if err != nil {
		return storepath.Path{}, err
	}
	p, err := r.dir.Parse(s)
	if err != nil {
		if what == "store path" { // the error says so already
			return storepath.Path{}, r.fail(err)
		}
		return storepath.Path{}, r.fail(fmt.Errorf("%s: %w", what, err))
	}
	return p, nil
}

// Writer writes an export stream.
type Writer struct {
	w   *wire.Writer
	dir storepath.Dir
	err error // an error of writeNAR; the wire.Writer keeps its own
}

// NewWriter writes a stream of paths in store dir dir to w.
func NewWriter(w io.Writer, dir storepath.Dir) *Writer {
	return &Writer{w: wire.NewWriter(bufio.NewWriterSize(w, 1<<20)), dir: dir}
}

// Add writes one path: writeNAR must write exactly the path's NAR.
func (w *Writer) Add(e *Entry, writeNAR func(io.Writer) error) error {
	if err := w.error(); err != nil {
		return err
	}
	w.w.U64(1)
	if w.w.Err() == nil {
		if err := writeNAR(w.w); err != nil {
			w.err = fmt.Errorf("exporting %s: %w", w.dir.Print(e.Path), err)
			return w.err
		}
	}
	w.w.U64(Magic)
	w.w.Path(w.dir, e.Path)
	w.w.Paths(w.dir, e.References)
	w.w.Path(w.dir, e.Deriver)
	w.w.U64(0)
	return w.error()
}

func (w *Writer) error() error {
	if w.err != nil {
		return w.err
	}
	return w.w.Err()
}

// Close writes the end of the stream and flushes it.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	w.w.U64(0)
	return w.w.Flush()
}
