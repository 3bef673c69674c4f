package nar

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// readAll reads the whole archive, returning the headers and each file's
// contents by path.
func readAll(r *Reader) ([]Header, map[string]string, error) {
	var hs []Header
	files := map[string]string{}
	for {
		h, err := r.Next()
		if err == io.EOF {
			return hs, files, nil
		}
		if err != nil {
			return hs, files, err
		}
		hs = append(hs, *h)
		if h.Type == TypeRegular {
			b, err := io.ReadAll(r)
			if err != nil {
				return hs, files, err
			}
			files[h.Path] = string(b)
		}
	}
}

func TestReaderNixTree(t *testing.T) {
	data := readTestdata(t, "tree.nar")
	r := NewReader(bytes.NewReader(data))
	hs, files, err := readAll(r)
	if err != nil {
		t.Fatal(err)
	}
	// Offsets as Nix's own listing (testdata/tree.ls) gives them.
	want := []Header{
		{Path: "", Type: TypeDirectory},
		{Path: "abs", Type: TypeSymlink, LinkTarget: "/absolute/target"},
		{Path: "dir", Type: TypeDirectory},
		{Path: "dir/dangle", Type: TypeSymlink, LinkTarget: "../dangling"},
		{Path: "dir/eight", Type: TypeRegular, Size: 8, Offset: 768},
		{Path: "dir/sub", Type: TypeDirectory},
		{Path: "dir/sub/n", Type: TypeRegular, Size: 6, Offset: 1096},
		{Path: "empty", Type: TypeDirectory},
		{Path: "emptyfile", Type: TypeRegular, Size: 0, Offset: 1528},
		{Path: "exec", Type: TypeRegular, Executable: true, Size: 18, Offset: 1744},
		{Path: "file", Type: TypeRegular, Size: 6, Offset: 1952},
		{Path: "rel", Type: TypeSymlink, LinkTarget: "file"},
	}
	if len(hs) != len(want) {
		t.Fatalf("got %d headers, want %d: %+v", len(hs), len(want), hs)
	}
	for i := range want {
		if hs[i] != want[i] {
			t.Errorf("header %d: got %+v, want %+v", i, hs[i], want[i])
		}
	}
	wantFiles := map[string]string{"dir/eight": "12345678", "dir/sub/n": "nested", "emptyfile": "",
		"exec": "#!/bin/sh\necho hi\n", "file": "hello\n"}
	if fmt.Sprint(files) != fmt.Sprint(wantFiles) {
		t.Errorf("contents %q, want %q", files, wantFiles)
	}
	for p, c := range wantFiles {
		for _, h := range hs {
			if h.Path == p && string(data[h.Offset:h.Offset+h.Size]) != c {
				t.Errorf("%s: Offset %d does not point at its contents", p, h.Offset)
			}
		}
	}
	if r.NarSize() != int64(len(data)) {
		t.Errorf("NarSize %d, want %d", r.NarSize(), len(data))
	}
	if sum := sha256.Sum256(data); !bytes.Equal(r.NarHash().Digest(), sum[:]) {
		t.Errorf("NarHash %s, want sha256 %x", r.NarHash(), sum)
	}
	if err := r.CheckEOF(); err != nil {
		t.Errorf("CheckEOF: %v", err)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Errorf("Next after the end: %v, want io.EOF", err)
	}
}

// Skipping contents (Next without Read) and partial reads give the same
// structure, size and hash as reading everything.
func TestReaderSkipAndPartial(t *testing.T) {
	data := readTestdata(t, "tree.nar")
	for _, mode := range []string{"skip", "one byte"} {
		r := NewReader(bytes.NewReader(data))
		n := 0
		for {
			h, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", mode, err)
			}
			n++
			if mode == "one byte" && h.Type == TypeRegular && h.Size > 0 {
				var b [1]byte
				if k, err := r.Read(b[:]); k != 1 || err != nil {
					t.Fatalf("%s: Read: %d %v", mode, k, err)
				}
			}
		}
		sum := sha256.Sum256(data)
		if n != 12 || r.NarSize() != int64(len(data)) || !bytes.Equal(r.NarHash().Digest(), sum[:]) {
			t.Errorf("%s: %d nodes, size %d, hash %s", mode, n, r.NarSize(), r.NarHash())
		}
	}
}

// Given a *bufio.Reader, the Reader takes exactly the archive's bytes: what
// follows is still there for the caller, however the source delivers bytes.
func TestReaderStopsAtArchiveEnd(t *testing.T) {
	for _, name := range []string{"tree.nar", "file.nar", "exec.nar", "symlink.nar", "emptydir.nar"} {
		data := readTestdata(t, name)
		src := append(append([]byte{}, data...), "TRAILER"...)
		for _, size := range []int{16, 64, 4096, 1 << 20} {
			for _, slow := range []bool{false, true} {
				var in io.Reader = bytes.NewReader(src)
				if slow {
					in = iotest.OneByteReader(in)
				}
				br := bufio.NewReaderSize(in, size)
				r := NewReader(br)
				if _, _, err := readAll(r); err != nil {
					t.Fatalf("%s (buffer %d, slow %v): %v", name, size, slow, err)
				}
				rest, err := io.ReadAll(br)
				if err != nil || string(rest) != "TRAILER" {
					t.Errorf("%s (buffer %d, slow %v): after the archive %q, %v; want TRAILER", name, size, slow, rest, err)
				}
				if r.NarSize() != int64(len(data)) {
					t.Errorf("%s: NarSize %d, want %d", name, r.NarSize(), len(data))
				}
			}
		}
	}
}

// One read syscall's worth per many entries: the source sees few reads.
func TestReaderFewReads(t *testing.T) {
	b := new(builder)
	b.magic().dir()
	for i := range 1000 {
		b.fileEntry(fmt.Sprintf("f%04d", i), "x")
	}
	b.end()
	cr := &countReader{r: bytes.NewReader(b.Bytes())}
	if _, _, err := readAll(NewReader(cr)); err != nil {
		t.Fatal(err)
	}
	if cr.n > 10 {
		t.Errorf("%d reads of the source for a %d-byte NAR of 1000 files", cr.n, b.Len())
	}
}

type countReader struct {
	r io.Reader
	n int
}

func (c *countReader) Read(p []byte) (int, error) { c.n++; return c.r.Read(p) }

func TestReaderTruncatedEverywhere(t *testing.T) {
	data := readTestdata(t, "tree.nar")
	for n := 0; n < len(data); n++ {
		r := NewReader(bytes.NewReader(data[:n]))
		_, _, err := readAll(r)
		var ne *Error
		if !errors.Is(err, ErrTruncated) || !errors.As(err, &ne) {
			t.Fatalf("cut at %d: error %v, want an *Error wrapping ErrTruncated", n, err)
		}
		if ne.Offset != int64(n) || !strings.Contains(err.Error(), fmt.Sprintf("nar offset %d ", n)) {
			t.Errorf("cut at %d: error %q does not name offset %d", n, err, n)
		}
	}
}

// malformed is a NAR the Reader must refuse: the error text must contain
// want and name the offset off.
type malformed struct {
	name string
	nar  []byte
	off  int64
	want string
}

func malformedCases() []malformed {
	var cs []malformed
	add := func(name, want string, build func(b *builder) int64) {
		b := new(builder)
		off := build(b)
		cs = append(cs, malformed{name, b.Bytes(), off, want})
	}
	badName := func(name, want string) {
		add("name "+fmt.Sprintf("%q", name), want, func(b *builder) int64 {
			b.magic().dir().str("entry", "(", "name")
			off := b.at()
			b.str(name, "node").file("x", false).end().end()
			return off
		})
	}
	add("bad magic", "bad magic", func(b *builder) int64 { b.str("nix-archive-2").file("", false); return 0 })
	add("huge magic", "not a NAR", func(b *builder) int64 { b.num(1 << 40); return 0 })
	add("empty input", "archive truncated", func(b *builder) int64 { return 0 })
	add("non-zero padding in a token", "non-zero padding", func(b *builder) int64 {
		b.magic().num(1).WriteString("(\x00\x00\x00\x00\x00\x00\x01")
		return 24 + 8 + 1
	})
	add("non-zero padding after contents", "non-zero padding after file contents", func(b *builder) int64 {
		b.magic().str("(", "type", "regular", "contents").num(3).WriteString("abc")
		off := b.at()
		b.WriteString("\x00\x00\x00\x00\x07")
		b.str(")")
		return off
	})
	add("unsorted entries", `entry names not sorted: "a" after "b"`, func(b *builder) int64 {
		b.magic().dir().fileEntry("b", "").str("entry", "(", "name")
		off := b.at()
		b.str("a", "node").file("", false).end().end()
		return off
	})
	add("duplicate entries", `duplicate entry name "a"`, func(b *builder) int64 {
		b.magic().dir().fileEntry("a", "").str("entry", "(", "name")
		off := b.at()
		b.str("a", "node").file("", false).end().end()
		return off
	})
	badName("", "empty entry name")
	badName(".", `invalid entry name "."`)
	badName("..", `invalid entry name ".."`)
	badName("a/b", `invalid entry name "a/b": contains "/"`)
	badName("a\x00b", `invalid entry name "a\x00b": contains NUL`)
	add("name too long", "entry name of 256 bytes is longer than 255", func(b *builder) int64 {
		b.magic().dir().str("entry", "(", "name")
		off := b.at()
		b.str(strings.Repeat("n", 256), "node").file("", false).end().end()
		return off
	})
	add("name length 2^63", "entry name of 9223372036854775808 bytes", func(b *builder) int64 {
		b.magic().dir().str("entry", "(", "name")
		off := b.at()
		b.num(1 << 63)
		return off
	})
	add("unknown node type", `unknown node type "fifo"`, func(b *builder) int64 {
		b.magic().str("(", "type")
		off := b.at()
		b.str("fifo", ")")
		return off
	})
	add("missing ) after a file", `expected ")", got "entry"`, func(b *builder) int64 {
		b.magic().dir().entry("a").str("(", "type", "regular", "contents", "x")
		off := b.at()
		b.str("entry")
		return off
	})
	add("missing ) at the end", "archive truncated", func(b *builder) int64 {
		b.magic().dir().fileEntry("a", "x")
		return b.at()
	})
	add("not an entry in a directory", `expected "entry" or ")", got "name"`, func(b *builder) int64 {
		b.magic().dir()
		off := b.at()
		b.str("name", "a")
		return off
	})
	add("file size 2^63", "file size 9223372036854775808 is too large", func(b *builder) int64 {
		b.magic().str("(", "type", "regular", "contents")
		off := b.at()
		b.num(1 << 63)
		return off
	})
	add("file size 2^64-1", "file size 18446744073709551615 is too large", func(b *builder) int64 {
		b.magic().str("(", "type", "regular", "contents")
		off := b.at()
		b.num(^uint64(0))
		return off
	})
	add("file larger than the input", "archive truncated in file contents", func(b *builder) int64 {
		b.magic().str("(", "type", "regular", "contents").num(1 << 40).WriteString("abc")
		return b.at()
	})
	add("empty symlink target", "empty symlink target", func(b *builder) int64 {
		b.magic().str("(", "type", "symlink", "target")
		off := b.at()
		b.str("", ")")
		return off
	})
	add("symlink target with NUL", "contains NUL", func(b *builder) int64 {
		b.magic().str("(", "type", "symlink", "target")
		off := b.at()
		b.str("a\x00b", ")")
		return off
	})
	add("symlink target 2^63", "symlink target of 9223372036854775808 bytes", func(b *builder) int64 {
		b.magic().str("(", "type", "symlink", "target")
		off := b.at()
		b.num(1 << 63)
		return off
	})
	add("executable flag with a value", `expected "", got "yes"`, func(b *builder) int64 {
		b.magic().str("(", "type", "regular", "executable")
		off := b.at()
		b.str("yes", "contents", "", ")")
		return off
	})
	add("no contents", `expected "contents" or "executable", got ")"`, func(b *builder) int64 {
		b.magic().str("(", "type", "regular")
		off := b.at()
		b.str(")")
		return off
	})
	add("type before (", `expected "(", got "type"`, func(b *builder) int64 {
		b.magic()
		off := b.at()
		b.str("type", "regular")
		return off
	})
	add("long tag", `expected "type", got a string of 1000 bytes`, func(b *builder) int64 {
		b.magic().str("(")
		off := b.at()
		b.str(strings.Repeat("t", 1000))
		return off
	})
	return cs
}

func TestReaderMalformed(t *testing.T) {
	for _, c := range malformedCases() {
		t.Run(c.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(c.nar))
			_, _, err := readAll(r)
			var ne *Error
			if !errors.As(err, &ne) {
				t.Fatalf("error %v (%T), want an *Error", err, err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not say %q", err, c.want)
			}
			if at := fmt.Sprintf("nar offset %d ", c.off); !strings.Contains(err.Error(), at) || ne.Offset != c.off {
				t.Errorf("error %q does not name %q", err, at)
			}
			// The error sticks.
			if _, err2 := r.Next(); err2 != err {
				t.Errorf("Next after the error: %v, want the same error", err2)
			}
		})
	}
}

func TestReaderErrorNamesEntry(t *testing.T) {
	b := new(builder)
	b.magic().dir().entry("a").dir().fileEntry("c", "").str("entry", "(", "name", "b")
	_, _, err := readAll(NewReader(bytes.NewReader(b.Bytes())))
	if err == nil || !strings.Contains(err.Error(), `(entry "a/b"): entry names not sorted: "b" after "c"`) {
		t.Errorf("error %v does not name the entry a/b", err)
	}
}

func TestReaderTrailingData(t *testing.T) {
	data := append(readTestdata(t, "file.nar"), 0)
	r := NewReader(bytes.NewReader(data))
	if _, _, err := readAll(r); err != nil {
		t.Fatal(err)
	}
	err := r.CheckEOF()
	if !errors.Is(err, ErrTrailingData) || !strings.Contains(err.Error(), fmt.Sprintf("nar offset %d (root): trailing data", len(data)-1)) {
		t.Errorf("CheckEOF: %v, want trailing data at %d", err, len(data)-1)
	}
	r = NewReader(bytes.NewReader(data))
	r.Next()
	if err := r.CheckEOF(); err == nil || !strings.Contains(err.Error(), "not read to its end") {
		t.Errorf("CheckEOF before the end: %v", err)
	}
}

// A Read on a directory or symlink, or past a file's end, is io.EOF.
func TestReaderReadOutsideFiles(t *testing.T) {
	r := NewReader(bytes.NewReader(readTestdata(t, "symlink.nar")))
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if n, err := r.Read(make([]byte, 4)); n != 0 || err != io.EOF {
		t.Errorf("Read on a symlink: %d, %v", n, err)
	}
}

// BenchmarkReader reads a NAR of 10,000 small files: its allocations per
// entry (the path string and the header) and read calls stay small.
func BenchmarkReader(b *testing.B) {
	nb := new(builder)
	nb.magic().dir()
	for i := range 100 {
		nb.entry(fmt.Sprintf("d%03d", i)).dir()
		for j := range 100 {
			nb.fileEntry(fmt.Sprintf("f%03d", j), strings.Repeat("x", j))
		}
		nb.end().end()
	}
	nb.end()
	data := nb.Bytes()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		cr := &countReader{r: bytes.NewReader(data)}
		r := NewReader(cr)
		for {
			_, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(cr.n)/10100, "reads/entry")
	}
}

// LimitPath refuses an entry whose path is longer than the limit, naming
// its depth and the offset of its name; entries within it pass.
func TestReaderLimitPath(t *testing.T) {
	// a/bb/ccc: paths of 1, 4 and 8 bytes.
	nar := func() []byte {
		b := new(builder)
		b.magic().dir().entry("a").dir().entry("bb").dir().fileEntry("ccc", "x").end().end().end().end().end()
		return b.Bytes()
	}()
	for _, c := range []struct {
		limit int
		want  string // "" for no error
	}{
		{0, ""},
		{8, ""},
		{7, `(entry "a/bb/ccc"): entry at depth 3 has a path of 8 bytes, more than the 7`},
		{4, `(entry "a/bb/ccc"): entry at depth 3 has a path of 8 bytes, more than the 4`},
		{3, `(entry "a/bb"): entry at depth 2 has a path of 4 bytes, more than the 3`},
		{-1, `(entry "a"): entry at depth 1 has a path of 1 bytes, more than the 0`},
	} {
		r := NewReader(bytes.NewReader(nar))
		if c.limit != 0 {
			r.LimitPath(c.limit)
		}
		_, _, err := readAll(r)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("limit %d: %v", c.limit, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("limit %d: error %v, want %q", c.limit, err, c.want)
		}
	}
}
