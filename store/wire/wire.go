// Package wire is Nix's framing, shared by the export stream, the worker
// (daemon) protocol and the serve protocol (docs/protocols.md, "Framing"):
// numbers are u64 little-endian; strings and byte strings are a u64 length,
// the bytes and zero padding to a multiple of 8; lists and sets are a u64
// count and their elements; a store path is its printed form as a string.
// A framed stream (framed.go) is a run of chunks, each a u64 length and
// that many bytes unpadded, ended by a chunk of length 0.
//
// # Invariants
//
//   - Every read names its field: an error is a *Error carrying the
//     reader's context (say `worker op 7 (AddToStore)`), the field, and the
//     byte offset where it began, and wraps one of the sentinels below.
//   - A length or count is checked against the caller's limit before
//     anything is allocated, so a hostile length costs nothing.
//   - Padding must be zero, as Nix requires; an integer read as Nix's
//     readInt must fit 32 bits.
//   - Writers are sticky: the first error is kept and returned by Flush.
//
// Neither Reader nor Writer is safe for concurrent use; there are no locks.
package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"storefs/store/storepath"
)

// The sentinels every *Error wraps one of (or an I/O error).
var (
	ErrTruncated = errors.New("stream truncated")
	ErrTooLong   = errors.New("exceeds limit")
	ErrPadding   = errors.New("non-zero padding")
	ErrTooLarge  = errors.New("integer too large")
	ErrBadValue  = errors.New("bad value")
)

// Limits callers use for common fields.
const (
	// MaxPathLen bounds a printed store path: a store dir of up to 4095
	// bytes, a slash and a base name.
	MaxPathLen = 4096 + 1 + storepath.HashLen + 1 + storepath.MaxNameLen
	// MaxPaths bounds the elements of a list of store paths.
	MaxPaths = 1 << 20
	// MaxSmall bounds short strings: names, hashes, settings, signatures.
	MaxSmall = 1 << 16
)

// Error is a malformed or truncated field.
type Error struct {
	Context string // what the stream is, e.g. "worker op 7 (AddToStore)"; may be empty
	Field   string // the field, e.g. "name"
	Offset  int64  // bytes of the stream before the field
	Detail  string // what is wrong, e.g. "is 9 bytes long, more than 8"
	Err     error  // one of the sentinels, or an I/O error
}

func (e *Error) where() string {
	if e.Context == "" {
		return "the " + e.Field
	}
	return fmt.Sprintf("%s field %q", e.Context, e.Field)
}

func (e *Error) Error() string { return e.text(true) }

// Message is the error without the byte offset, for callers that report
// the offset their own way.
func (e *Error) Message() string { return e.text(false) }

func (e *Error) text(offset bool) string {
	at := ""
	if offset {
		at = fmt.Sprintf(" (byte %d)", e.Offset)
	}
	switch {
	case errors.Is(e.Err, ErrTruncated):
		return fmt.Sprintf("stream truncated in %s%s", e.where(), at)
	case errors.Is(e.Err, ErrPadding):
		return fmt.Sprintf("non-zero padding after %s%s", e.where(), at)
	case errors.Is(e.Err, ErrBadValue):
		return fmt.Sprintf("%s%s: %s", e.where(), at, e.Detail)
	case e.Detail != "":
		return fmt.Sprintf("%s %s%s", e.where(), e.Detail, at)
	default:
		return fmt.Sprintf("%s%s: %v", e.where(), at, e.Err)
	}
}

func (e *Error) Unwrap() error { return e.Err }

// Reader reads Nix's framing from a buffered stream.
type Reader struct {
	br      *bufio.Reader
	off     int64
	context string
	scratch [8]byte
}

// NewReader reads from r, using it as it is if it is a *bufio.Reader (so
// that others may read the same buffer between fields: a NAR, say).
func NewReader(r io.Reader) *Reader {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	return &Reader{br: br}
}

// Buffer is the buffered stream under the Reader. Bytes read from it
// directly are not counted in Offset; Advance counts them.
func (r *Reader) Buffer() *bufio.Reader { return r.br }

// Advance adds n bytes read past the Reader to its offset.
func (r *Reader) Advance(n int64) { r.off += n }

// Offset is the number of bytes read so far.
func (r *Reader) Offset() int64 { return r.off }

// SetContext names what the following fields belong to, for errors.
func (r *Reader) SetContext(c string) { r.context = c }

// Context is what SetContext set.
func (r *Reader) Context() string { return r.context }

// Errorf makes an *Error about field, found at offset off, for checks made
// by callers (a bad store path, a bad enum).
func (r *Reader) Errorf(field string, off int64, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	return &Error{Context: r.context, Field: field, Offset: off, Detail: msg, Err: fmt.Errorf("%w: %s", ErrBadValue, msg)}
}

func (r *Reader) fail(field string, off int64, detail string, err error) error {
	return &Error{Context: r.context, Field: field, Offset: off, Detail: detail, Err: err}
}

func (r *Reader) fill(field string, start int64, b []byte) error {
	n, err := io.ReadFull(r.br, b)
	r.off += int64(n)
	switch {
	case err == io.EOF && n == 0:
		// Nothing came: the stream ended before the field, which is a
		// clean end where a new message may start.
		return r.fail(field, start, "", errEnd)
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return r.fail(field, start, "", ErrTruncated)
	case err != nil:
		return r.fail(field, start, "", err)
	}
	return nil
}

// errEnd is ErrTruncated at a field's first byte; it is also io.EOF.
var errEnd error = endError{}

type endError struct{}

func (endError) Error() string { return ErrTruncated.Error() }

func (endError) Is(target error) bool { return target == ErrTruncated || target == io.EOF }

// U64 reads a 64-bit number.
func (r *Reader) U64(field string) (uint64, error) {
	if err := r.fill(field, r.off, r.scratch[:]); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(r.scratch[:]), nil
}

// Int reads a number Nix reads with readInt: it must fit 32 bits.
func (r *Reader) Int(field string) (uint64, error) {
	start := r.off
	n, err := r.U64(field)
	if err == nil && n > 0xffffffff {
		return 0, r.fail(field, start, fmt.Sprintf("is %d, more than %d", n, uint64(0xffffffff)), ErrTooLarge)
	}
	return n, err
}

// Bool reads a number as a boolean: any non-zero value is true, as in Nix.
func (r *Reader) Bool(field string) (bool, error) {
	n, err := r.U64(field)
	return n != 0, err
}

// Bytes reads a padded byte string of at most max bytes.
func (r *Reader) Bytes(field string, max int) ([]byte, error) {
	start := r.off
	n, err := r.U64(field + " length")
	if err != nil {
		e := err.(*Error)
		e.Field = field
		return nil, e
	}
	if n > uint64(max) {
		return nil, r.fail(field, start, fmt.Sprintf("is %d bytes long, more than %d", n, max), ErrTooLong)
	}
	padded := (n + 7) &^ 7
	b := make([]byte, padded)
	if err := r.fill(field, start, b); err != nil {
		return nil, err
	}
	for _, c := range b[n:] {
		if c != 0 {
			return nil, r.fail(field, start, "", ErrPadding)
		}
	}
	return b[:n], nil
}

// String reads a padded string of at most max bytes.
func (r *Reader) String(field string, max int) (string, error) {
	b, err := r.Bytes(field, max)
	return string(b), err
}

// Count reads an element count of at most max.
func (r *Reader) Count(field string, max int) (int, error) {
	start := r.off
	n, err := r.U64(field + " count")
	if err != nil {
		return 0, err
	}
	if n > uint64(max) {
		return 0, r.fail(field, start, fmt.Sprintf("has %d elements, more than %d", n, max), ErrTooLong)
	}
	return int(n), nil
}

// Strings reads a list (or set) of at most maxCount strings of at most
// maxLen bytes each.
func (r *Reader) Strings(field string, maxCount, maxLen int) ([]string, error) {
	n, err := r.Count(field, maxCount)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, min(n, 1024))
	for i := 0; i < n; i++ {
		s, err := r.String(fmt.Sprintf("%s[%d]", field, i), maxLen)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// Path reads a store path printed in store dir dir.
func (r *Reader) Path(field string, dir storepath.Dir) (storepath.Path, error) {
	start := r.off
	s, err := r.String(field, MaxPathLen)
	if err != nil {
		return storepath.Path{}, err
	}
	p, err := dir.Parse(s)
	if err != nil {
		return storepath.Path{}, &Error{Context: r.context, Field: field, Offset: start, Detail: err.Error(), Err: fmt.Errorf("%w: %w", ErrBadValue, err)}
	}
	return p, nil
}

// OptPath reads a store path or "" (the zero Path).
func (r *Reader) OptPath(field string, dir storepath.Dir) (storepath.Path, error) {
	start := r.off
	s, err := r.String(field, MaxPathLen)
	if err != nil || s == "" {
		return storepath.Path{}, err
	}
	p, err := dir.Parse(s)
	if err != nil {
		return storepath.Path{}, &Error{Context: r.context, Field: field, Offset: start, Detail: err.Error(), Err: fmt.Errorf("%w: %w", ErrBadValue, err)}
	}
	return p, nil
}

// Paths reads a list (or set) of store paths.
func (r *Reader) Paths(field string, dir storepath.Dir) ([]storepath.Path, error) {
	n, err := r.Count(field, MaxPaths)
	if err != nil {
		return nil, err
	}
	out := make([]storepath.Path, 0, min(n, 1024))
	for i := 0; i < n; i++ {
		p, err := r.Path(fmt.Sprintf("%s[%d]", field, i), dir)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// Writer writes Nix's framing to a buffered stream. The first error is
// kept; later writes do nothing and Flush returns it.
type Writer struct {
	bw  *bufio.Writer
	err error
}

// NewWriter writes to w, using it as it is if it is a *bufio.Writer.
func NewWriter(w io.Writer) *Writer {
	bw, ok := w.(*bufio.Writer)
	if !ok {
		bw = bufio.NewWriterSize(w, 64<<10)
	}
	return &Writer{bw: bw}
}

// Err is the first error, if any.
func (w *Writer) Err() error { return w.err }

// Fail records err as the Writer's error unless one is kept already.
func (w *Writer) Fail(err error) {
	if w.err == nil {
		w.err = err
	}
}

// Write writes raw bytes (a NAR, say), unframed and unpadded.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.bw.Write(p)
	w.err = err
	return n, err
}

// U64 writes a number.
func (w *Writer) U64(n uint64) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], n)
	w.Write(b[:])
}

// Bool writes 1 or 0.
func (w *Writer) Bool(b bool) {
	if b {
		w.U64(1)
	} else {
		w.U64(0)
	}
}

var zeros [8]byte

// Bytes writes a padded byte string.
func (w *Writer) Bytes(b []byte) {
	w.U64(uint64(len(b)))
	w.Write(b)
	w.Write(zeros[:(8-len(b)%8)%8])
}

// String writes a padded string.
func (w *Writer) String(s string) {
	w.U64(uint64(len(s)))
	if w.err == nil {
		_, w.err = w.bw.WriteString(s)
	}
	w.Write(zeros[:(8-len(s)%8)%8])
}

// Strings writes a list of strings, in the order given.
func (w *Writer) Strings(ss []string) {
	w.U64(uint64(len(ss)))
	for _, s := range ss {
		w.String(s)
	}
}

// Path writes a store path printed in dir; the zero Path is "".
func (w *Writer) Path(dir storepath.Dir, p storepath.Path) {
	if p.IsZero() {
		w.String("")
		return
	}
	w.String(dir.Print(p))
}

// Paths writes a list of store paths, in the order given (Nix sends sets
// sorted; sort first where that matters).
func (w *Writer) Paths(dir storepath.Dir, ps []storepath.Path) {
	w.U64(uint64(len(ps)))
	for _, p := range ps {
		w.Path(dir, p)
	}
}

// Flush writes what is buffered and returns the first error.
func (w *Writer) Flush() error {
	if w.err == nil {
		w.err = w.bw.Flush()
	}
	return w.err
}
