package nar

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"

	"storefs/store/nixhash"
)

const (
	magic = "nix-archive-1"
	// MaxNameLen is the longest entry name a Reader accepts (Linux NAME_MAX).
	MaxNameLen = 255
	// MaxTargetLen is the longest symlink target a Reader accepts (Linux
	// PATH_MAX less its NUL).
	MaxTargetLen = 4095
	// maxTagLen bounds the grammar's fixed tokens ("(", "type", ...) read
	// before they are compared, so a wrong one is shown in the error.
	maxTagLen = 64
	// readerBufSize is the buffer wrapped around sources that are not a
	// *bufio.Reader: few read syscalls per entry, large reads for contents.
	readerBufSize = 256 << 10
)

// Type is the type of a NAR node.
type Type uint8

// The node types, named as in the archive.
const (
	TypeRegular Type = iota + 1
	TypeSymlink
	TypeDirectory
)

func (t Type) String() string {
	switch t {
	case TypeRegular:
		return "regular"
	case TypeSymlink:
		return "symlink"
	case TypeDirectory:
		return "directory"
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// Header describes one node of the archive.
type Header struct {
	Path       string // "" for the root, else "a/b" (see the package comment)
	Type       Type
	Executable bool   // regular files only
	Size       int64  // regular files only: the length of the contents
	LinkTarget string // symlinks only
	// Offset is where a regular file's contents start in the NAR: the
	// narOffset of a `.ls` listing. 0 for other types.
	Offset int64
}

// state is where the parser stands between calls of Next.
type state uint8

const (
	stMagic    state = iota // nothing read yet
	stContents              // in the current regular file's contents
	stNodeDone              // a node's closing ")" has been read
	stEntries               // in a directory, before "entry" or its ")"
	stEOF                   // the archive's last ")" has been read
)

// frame is an open directory.
type frame struct {
	path string // its Header.Path
	last string // the last entry name read, "" before the first
}

// Reader reads a NAR node by node. It is not safe for concurrent use.
type Reader struct {
	br     *bufio.Reader
	h      hash.Hash // sha256 of the bytes read so far; nil if not hashing
	off    int64     // bytes of the archive read so far
	state  state
	stack  []frame
	path   string // the entry being parsed, for errors
	remain int64  // contents of the current file not yet read
	pad    int    // padding after the current file's contents
	err    error  // sticky: once set, every call returns it
	sum    nixhash.Hash
	buf    [8 + MaxTargetLen + 1 + 8]byte // one token, padded

	maxPath int // longest Header.Path accepted; 0: no bound (LimitPath)
}

// LimitPath makes the Reader refuse an entry whose Header.Path is longer
// than n bytes, naming its depth: an archive whose tree could not be
// reached by path once unpacked (beyond PATH_MAX) is refused while it is
// read. n <= 0 refuses every entry below the root.
func (r *Reader) LimitPath(n int) {
	if n <= 0 {
		n = -1
	}
	r.maxPath = n
}

// NewReader returns a Reader of the NAR in r. A *bufio.Reader is used as it
// is, and the Reader never takes a byte past the archive's end from it;
// any other source is wrapped in a buffer, which may read ahead.
func NewReader(r io.Reader) *Reader {
	return newReader(r, true)
}

func newReader(r io.Reader, hashing bool) *Reader {
	return newReaderSize(r, hashing, readerBufSize)
}

func newReaderSize(r io.Reader, hashing bool, size int) *Reader {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, size)
	}
	nr := &Reader{br: br}
	if hashing {
		nr.h = sha256.New()
	}
	return nr
}

// NarSize is the number of archive bytes read so far; after Next returned
// io.EOF, the archive's length.
func (r *Reader) NarSize() int64 { return r.off }

// NarHash is the sha256 of the archive's bytes, valid once Next returned
// io.EOF (the zero Hash before, or when not hashing).
func (r *Reader) NarHash() nixhash.Hash { return r.sum }

// fail records the Reader's sticky error: what went wrong at offset off.
func (r *Reader) fail(off int64, err error) error {
	if r.err == nil {
		r.err = &Error{Offset: off, Path: r.path, Err: err}
	}
	return r.err
}

func (r *Reader) failf(off int64, format string, args ...any) error {
	return r.fail(off, fmt.Errorf(format, args...))
}

// consumed hashes and counts bytes taken from the source.
func (r *Reader) consumed(p []byte) {
	if r.h != nil {
		r.h.Write(p)
	}
	r.off += int64(len(p))
}

// desc names what is being read, for errors; built without allocating.
type desc struct {
	s   string
	tag bool // s is a fixed token, shown quoted
}

func (d desc) String() string {
	if d.tag {
		return fmt.Sprintf("%q", d.s)
	}
	return d.s
}

// fill reads exactly len(p) bytes of the archive; what names them in errors.
func (r *Reader) fill(p []byte, what desc) error {
	n, err := io.ReadFull(r.br, p)
	r.consumed(p[:n])
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return r.failf(r.off, "%w in %s", ErrTruncated, what)
	}
	if err != nil {
		return r.failf(r.off, "reading %s: %w", what, err)
	}
	return nil
}

// token reads one string of at most max bytes; the result is valid until the
// next read. A longer string is reported by tooLong, given its length.
func (r *Reader) token(max int, what desc, tooLong func(n uint64) error) ([]byte, error) {
	start := r.off
	if err := r.fill(r.buf[:8], what); err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint64(r.buf[:8])
	if n > uint64(max) {
		return nil, r.fail(start, tooLong(n))
	}
	padded := (n + 7) &^ 7
	b := r.buf[8 : 8+padded]
	if err := r.fill(b, what); err != nil {
		return nil, err
	}
	for i := n; i < padded; i++ {
		if b[i] != 0 {
			return nil, r.failf(start+8+int64(n), "non-zero padding after %s", what)
		}
	}
	return b[:n], nil
}

// tag reads one of the grammar's fixed tokens.
func (r *Reader) tag(want string) ([]byte, error) {
	return r.token(maxTagLen, desc{want, true}, func(n uint64) error {
		return fmt.Errorf("expected %q, got a string of %d bytes", want, n)
	})
}

// expect reads the fixed token want.
func (r *Reader) expect(want string) error {
	start := r.off
	got, err := r.tag(want)
	if err != nil {
		return err
	}
	if string(got) != want {
		return r.failf(start, "expected %q, got %q", want, got)
	}
	return nil
}

// Next advances to the next node, skipping what is left of the current
// file's contents, and returns its header: the root first, then each
// directory's entries in order, depth first. At the archive's closing ")"
// it returns io.EOF; NarSize and NarHash are then final.
func (r *Reader) Next() (*Header, error) {
	if r.err != nil {
		return nil, r.err
	}
	switch r.state {
	case stMagic:
		start := r.off
		got, err := r.token(len(magic), desc{s: "the magic"}, func(n uint64) error {
			return fmt.Errorf("not a NAR: bad magic (a string of %d bytes, want %q)", n, magic)
		})
		if err != nil {
			return nil, err
		}
		if string(got) != magic {
			return nil, r.failf(start, "not a NAR: bad magic %q, want %q", got, magic)
		}
		return r.node("")
	case stContents:
		if err := r.skipContents(); err != nil {
			return nil, err
		}
	case stEOF:
		return nil, io.EOF
	}
	for {
		switch r.state {
		case stNodeDone:
			if len(r.stack) == 0 {
				r.state = stEOF
				if r.h != nil {
					r.sum = nixhash.FromHasher(nixhash.SHA256, r.h)
				}
				return nil, io.EOF
			}
			if err := r.expect(")"); err != nil { // closes the entry
				return nil, err
			}
			r.state = stEntries
		case stEntries:
			top := &r.stack[len(r.stack)-1]
			r.path = top.path
			start := r.off
			got, err := r.tag("entry")
			if err != nil {
				return nil, err
			}
			switch string(got) {
			case ")":
				r.stack = r.stack[:len(r.stack)-1]
				r.state = stNodeDone
				continue
			case "entry":
			default:
				return nil, r.failf(start, `expected "entry" or ")", got %q`, got)
			}
			if err := r.expect("("); err != nil {
				return nil, err
			}
			if err := r.expect("name"); err != nil {
				return nil, err
			}
			nameOff := r.off
			b, err := r.token(MaxNameLen, desc{s: "an entry name"}, func(n uint64) error {
				return fmt.Errorf("entry name of %d bytes is longer than %d", n, MaxNameLen)
			})
			if err != nil {
				return nil, err
			}
			if err := checkName(b); err != nil {
				return nil, r.fail(nameOff, err)
			}
			name := string(b)
			path := name
			if top.path != "" {
				path = top.path + "/" + name
			}
			if top.last != "" && name <= top.last {
				r.path = path
				if name == top.last {
					return nil, r.failf(nameOff, "duplicate entry name %q", name)
				}
				return nil, r.failf(nameOff, "entry names not sorted: %q after %q", name, top.last)
			}
			top.last = name
			if r.maxPath != 0 && len(path) > r.maxPath {
				r.path = path
				if len(path) > 200 {
					r.path = path[:200] + "..."
				}
				return nil, r.failf(nameOff, "entry at depth %d has a path of %d bytes, more than the %d the store can hold (PATH_MAX)",
					len(r.stack), len(path), max(r.maxPath, 0))
			}
			if err := r.expect("node"); err != nil {
				return nil, err
			}
			return r.node(path)
		default:
			return nil, r.failf(r.off, "internal error: parser in state %d", r.state)
		}
	}
}

// checkName refuses entry names that could leave their directory or are not
// file names at all.
func checkName(b []byte) error {
	switch {
	case len(b) == 0:
		return errors.New("empty entry name")
	case string(b) == "." || string(b) == "..":
		return fmt.Errorf("invalid entry name %q", b)
	case bytes.IndexByte(b, '/') >= 0:
		return fmt.Errorf(`invalid entry name %q: contains "/"`, b)
	case bytes.IndexByte(b, 0) >= 0:
		return fmt.Errorf("invalid entry name %q: contains NUL", b)
	}
	return nil
}

// node parses a node up to its contents (regular), its end (symlink) or its
// first entry (directory).
func (r *Reader) node(path string) (*Header, error) {
	r.path = path
	if err := r.expect("("); err != nil {
		return nil, err
	}
	if err := r.expect("type"); err != nil {
		return nil, err
	}
	typeOff := r.off
	got, err := r.tag("type")
	if err != nil {
		return nil, err
	}
	switch string(got) {
	case "regular":
		return r.regular(path)
	case "symlink":
		if err := r.expect("target"); err != nil {
			return nil, err
		}
		targetOff := r.off
		b, err := r.token(MaxTargetLen, desc{s: "a symlink target"}, func(n uint64) error {
			return fmt.Errorf("symlink target of %d bytes is longer than %d", n, MaxTargetLen)
		})
		if err != nil {
			return nil, err
		}
		if len(b) == 0 {
			return nil, r.failf(targetOff, "empty symlink target")
		}
		if bytes.IndexByte(b, 0) >= 0 {
			return nil, r.failf(targetOff, "symlink target %q contains NUL", b)
		}
		hdr := &Header{Path: path, Type: TypeSymlink, LinkTarget: string(b)}
		if err := r.expect(")"); err != nil {
			return nil, err
		}
		r.state = stNodeDone
		return hdr, nil
	case "directory":
		r.stack = append(r.stack, frame{path: path})
		r.state = stEntries
		return &Header{Path: path, Type: TypeDirectory}, nil
	}
	return nil, r.failf(typeOff, `unknown node type %q (want "regular", "symlink" or "directory")`, got)
}

func (r *Reader) regular(path string) (*Header, error) {
	hdr := &Header{Path: path, Type: TypeRegular}
	start := r.off
	got, err := r.tag("contents")
	if err != nil {
		return nil, err
	}
	if string(got) == "executable" {
		hdr.Executable = true
		if err := r.expect(""); err != nil {
			return nil, err
		}
		start = r.off
		if got, err = r.tag("contents"); err != nil {
			return nil, err
		}
	}
	if string(got) != "contents" {
		return nil, r.failf(start, `expected "contents" or "executable", got %q`, got)
	}
	sizeOff := r.off
	if err := r.fill(r.buf[:8], desc{s: "a file size"}); err != nil {
		return nil, err
	}
	size := binary.LittleEndian.Uint64(r.buf[:8])
	if size > uint64(math.MaxInt64-16-r.off) {
		return nil, r.failf(sizeOff, "file size %d is too large", size)
	}
	hdr.Size = int64(size)
	hdr.Offset = r.off
	r.remain = hdr.Size
	r.pad = int(-hdr.Size & 7)
	r.state = stContents
	return hdr, nil
}

// Read reads the current regular file's contents; it returns io.EOF at their
// end, and at once for other node types.
func (r *Reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.state != stContents || r.remain == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.remain {
		p = p[:r.remain]
	}
	n, err := r.br.Read(p)
	r.consumed(p[:n])
	r.remain -= int64(n)
	if err == io.EOF {
		return n, r.failf(r.off, "%w in file contents (%d bytes missing)", ErrTruncated, r.remain)
	}
	if err != nil {
		return n, r.failf(r.off, "reading file contents: %w", err)
	}
	return n, nil
}

// readContents reads exactly len(p) bytes of the current file's contents;
// large reads go from the source straight into p.
func (r *Reader) readContents(p []byte) error {
	if int64(len(p)) > r.remain {
		return r.failf(r.off, "internal error: reading %d bytes of a file with %d left", len(p), r.remain)
	}
	for len(p) > 0 {
		n, err := r.Read(p)
		p = p[n:]
		if err != nil {
			return err
		}
	}
	return nil
}

// eachChunk hands the rest of the current file's contents to fn in pieces
// of the source's buffer, without copying them.
func (r *Reader) eachChunk(fn func([]byte) error) error {
	for r.remain > 0 {
		n := r.br.Size()
		if int64(n) > r.remain {
			n = int(r.remain)
		}
		if b := r.br.Buffered(); b > 0 && b < n {
			n = b // what is there now; Peek would wait for more
		}
		b, err := r.br.Peek(n)
		if len(b) > 0 {
			if ferr := fn(b); ferr != nil {
				return ferr
			}
			r.consumed(b)
			r.remain -= int64(len(b))
			r.br.Discard(len(b))
		}
		if err == io.EOF {
			return r.failf(r.off, "%w in file contents (%d bytes missing)", ErrTruncated, r.remain)
		}
		if err != nil && len(b) == 0 {
			return r.failf(r.off, "reading file contents: %w", err)
		}
	}
	return nil
}

// skipContents reads what is left of the current file, its padding and the
// node's closing ")".
func (r *Reader) skipContents() error {
	if err := r.eachChunk(func([]byte) error { return nil }); err != nil {
		return err
	}
	return r.endContents()
}

// endContents reads the padding after a file's contents and the node's ")".
func (r *Reader) endContents() error {
	start := r.off
	pad := r.buf[:r.pad]
	if err := r.fill(pad, desc{s: "the padding of file contents"}); err != nil {
		return err
	}
	for _, c := range pad {
		if c != 0 {
			return r.failf(start, "non-zero padding after file contents")
		}
	}
	if err := r.expect(")"); err != nil {
		return err
	}
	r.state = stNodeDone
	return nil
}

// CheckEOF reports an error unless the archive has been read to its end
// (Next returned io.EOF) and the source has nothing after it. Use it where
// a NAR is a whole stream or file: trailing bytes are ErrTrailingData.
func (r *Reader) CheckEOF() error {
	if r.err != nil {
		return r.err
	}
	if r.state != stEOF {
		return &Error{Offset: r.off, Path: r.path, Err: errors.New("archive not read to its end")}
	}
	if _, err := r.br.Peek(1); err == nil {
		return &Error{Offset: r.off, Err: ErrTrailingData}
	} else if err != io.EOF {
		return &Error{Offset: r.off, Err: fmt.Errorf("reading after the archive: %w", err)}
	}
	return nil
}
