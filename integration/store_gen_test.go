package integration

// Makers of `nix-store --export` streams for the store's tests and
// benchmarks, written without a Nix store: genStream makes many
// content-addressed paths of mixed sizes, each referring to a few earlier
// ones; streamBuilder makes small hand-made streams. Nix and storefs both
// import what they write (TestStoreConcurrentImport checks storefs against
// the paths genStream says it wrote).

import (
	"bufio"
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"storefs/store/nixhash"
	"storefs/store/storepath"
)

// streamSpec says what stream genStream makes.
type streamSpec struct {
	Paths int   // how many store paths
	Bytes int64 // their file contents in total, about
	Seed  uint64
	Flat  bool // every path a single file
	Files int  // at most this many data files in a directory path (40 if 0)
}

// genStream writes the stream of spec into dir and returns its file name
// and the paths it holds, in stream order (references first).
func genStream(t testing.TB, dir string, spec streamSpec) (string, []string) {
	t.Helper()
	name := filepath.Join(dir, fmt.Sprintf("stream-%d-%d-%d-%v-%d", spec.Paths, spec.Bytes, spec.Seed, spec.Flat, spec.Files))
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	paths, err := writeStream(bw, spec)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	return name, paths
}

// writeStream writes the stream of spec to w. Sizes are log-uniform over
// three decades: many small paths and a few big ones.
func writeStream(w io.Writer, spec streamSpec) ([]string, error) {
	rng := rand.New(rand.NewPCG(spec.Seed, 0x5eed))
	fill := rand.NewChaCha8([32]byte{byte(spec.Seed), byte(spec.Seed >> 8), 1})
	weights := make([]float64, spec.Paths)
	var sum float64
	for i := range weights {
		weights[i] = math.Exp(rng.Float64() * math.Log(1000))
		sum += weights[i]
	}
	b := newStreamBuilder(w)
	for i := range spec.Paths {
		size := int64(float64(spec.Bytes) * weights[i] / sum)
		var refs []storepath.Path
		for range min(len(b.Paths), rng.IntN(4)) {
			r := b.Paths[rng.IntN(len(b.Paths))]
			if !containsPath(refs, r) {
				refs = append(refs, r)
			}
		}
		deriver := ""
		if i%2 == 1 { // a deriver that is not in the store, as Nix allows
			deriver = fmt.Sprintf("%s/%032d-gen-%d.drv", storeDir, i, i)
		}
		b.Add(fmt.Sprintf("gen-%d", i), refs, deriver, func(nw *narWriter) {
			if spec.Flat {
				nw.file(fill, size, false)
				return
			}
			genTree(nw, fill, size, storepath.Dir(storeDir).PrintAll(refs), i, cmp.Or(spec.Files, 40))
		})
	}
	b.Close()
	return printPaths(b.Paths), b.w.err
}

// printPaths prints full paths, keeping their order.
func printPaths(ps []storepath.Path) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = storepath.Dir(storeDir).Print(p)
	}
	return out
}

func containsPath(ps []storepath.Path, p storepath.Path) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// genTree writes one NAR: a single file for small paths without references
// and every third path, else a directory with an executable, data files, a
// symlink and a file naming the references.
func genTree(nw *narWriter, fill io.Reader, size int64, refs []string, i, maxFiles int) {
	if size < 64<<10 && len(refs) == 0 || i%3 == 0 {
		nw.file(fill, size, i%6 == 3)
		return
	}
	nw.open("directory")
	nw.entry("bin") // entries in sorted order: bin, data-*, link, refs
	nw.open("directory")
	nw.entry("run")
	nw.fileBytes([]byte(fmt.Sprintf("#!/bin/sh\necho %d\n", i)), true)
	nw.close()
	nw.close()
	nw.close()
	files := int(min(max(size/(32<<10), 1), int64(maxFiles)))
	for k := range files {
		nw.entry(fmt.Sprintf("data-%02d", k))
		nw.file(fill, size/int64(files), false)
		nw.close()
	}
	nw.entry("link")
	nw.open("symlink")
	nw.str("target")
	nw.str("data-00")
	nw.close()
	nw.close()
	nw.entry("refs")
	var b []byte
	for _, r := range refs {
		b = append(b, r+"\n"...)
	}
	nw.fileBytes(b, false)
	nw.close()
	nw.close()
}

// streamBuilder writes a stream path by path.
type streamBuilder struct {
	w     *rawWriter
	Paths []storepath.Path // written so far, in order
}

func newStreamBuilder(w io.Writer) *streamBuilder { return &streamBuilder{w: &rawWriter{w: w}} }

// Add writes one path: the NAR that writeNAR writes after the magic, named
// by its source address (as nix-store --add names it) with refs.
func (b *streamBuilder) Add(name string, refs []storepath.Path, deriver string, writeNAR func(*narWriter)) storepath.Path {
	h := b.NAR(writeNAR)
	p, err := storepath.Dir(storeDir).MakeCA(name, storepath.ContentAddress{Recursive: true, Hash: h}, refs, false)
	if err != nil && b.w.err == nil {
		b.w.err = err
	}
	b.Trailer(storeDir+"/"+p.Base(), refs, deriver)
	b.Paths = append(b.Paths, p)
	return p
}

// NAR writes the start of a path and its NAR, and returns the NAR's hash;
// Trailer must follow.
func (b *streamBuilder) NAR(writeNAR func(*narWriter)) nixhash.Hash {
	b.w.u64(1)
	nw := &narWriter{w: b.w, h: sha256.New()}
	nw.str("nix-archive-1")
	writeNAR(nw)
	h, err := nixhash.New(nixhash.SHA256, nw.h.Sum(nil))
	if err != nil && b.w.err == nil {
		b.w.err = err
	}
	return h
}

// Trailer writes a path's metadata as given, right or wrong.
func (b *streamBuilder) Trailer(path string, refs []storepath.Path, deriver string) {
	b.w.u64(0x4558494e)
	b.w.str(path)
	b.w.u64(uint64(len(refs)))
	for _, r := range storepath.Dir(storeDir).PrintAll(refs) {
		b.w.str(r)
	}
	b.w.str(deriver)
	b.w.u64(0)
}

// Close writes the end of the stream.
func (b *streamBuilder) Close() { b.w.u64(0) }

// fileStream is a stream of single-file paths, each referring to the ones
// listed in refs by index; it returns the stream and the paths in order.
func fileStream(files []string, refs map[int][]int) ([]byte, []string) {
	var buf bytes.Buffer
	b := newStreamBuilder(&buf)
	for i, content := range files {
		var rs []storepath.Path
		for _, j := range refs[i] {
			rs = append(rs, b.Paths[j])
		}
		b.Add(fmt.Sprintf("file-%d", i), rs, "", func(nw *narWriter) {
			nw.fileBytes([]byte(content), false)
		})
	}
	b.Close()
	return buf.Bytes(), printPaths(b.Paths)
}

// rawWriter writes the stream's framing, keeping the first error.
type rawWriter struct {
	w   io.Writer
	err error
}

func (s *rawWriter) write(b []byte) {
	if s.err == nil {
		_, s.err = s.w.Write(b)
	}
}

func (s *rawWriter) u64(n uint64) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], n)
	s.write(b[:])
}

func (s *rawWriter) str(str string) {
	s.u64(uint64(len(str)))
	s.write([]byte(str))
	s.write(make([]byte, -len(str)&7))
}

// narWriter writes NAR tokens into the stream and hashes them.
type narWriter struct {
	w *rawWriter
	h hash.Hash
}

func (nw *narWriter) write(b []byte) {
	nw.w.write(b)
	nw.h.Write(b)
}

func (nw *narWriter) u64(n uint64) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], n)
	nw.write(b[:])
}

func (nw *narWriter) str(s string) {
	nw.u64(uint64(len(s)))
	nw.write([]byte(s))
	nw.write(make([]byte, -len(s)&7))
}

// open starts a node of type typ; close ends a node or an entry.
func (nw *narWriter) open(typ string) {
	nw.str("(")
	nw.str("type")
	nw.str(typ)
}

func (nw *narWriter) close() { nw.str(")") }

// entry starts a directory entry; its node follows, then close.
func (nw *narWriter) entry(name string) {
	nw.str("entry")
	nw.str("(")
	nw.str("name")
	nw.str(name)
	nw.str("node")
}

func (nw *narWriter) header(exec bool, size int64) {
	nw.open("regular")
	if exec {
		nw.str("executable")
		nw.str("")
	}
	nw.str("contents")
	nw.u64(uint64(size))
}

// file writes a regular file node of size random bytes.
func (nw *narWriter) file(fill io.Reader, size int64, exec bool) {
	nw.header(exec, size)
	buf := make([]byte, min(size, 256<<10))
	for left := size; left > 0; {
		n := min(left, int64(len(buf)))
		fill.Read(buf[:n])
		nw.write(buf[:n])
		left -= n
	}
	nw.write(make([]byte, -size&7))
	nw.close()
}

func (nw *narWriter) fileBytes(b []byte, exec bool) {
	nw.header(exec, int64(len(b)))
	nw.write(b)
	nw.write(make([]byte, -len(b)&7))
	nw.close()
}
