package nar

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Dump writes what nix-store --dump wrote for the same trees (testdata).
func TestDumpMatchesNix(t *testing.T) {
	dir := t.TempDir()
	root := makeTestTree(t, dir)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "file"), []byte("x"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "exec"), []byte("#!/bin/sh\necho hi\n"), 0o700))
	must(os.Symlink("/nix/store/target", filepath.Join(dir, "link")))
	must(os.Mkdir(filepath.Join(dir, "emptydir"), 0o755))
	for path, golden := range map[string]string{
		root: "tree.nar", filepath.Join(dir, "file"): "file.nar", filepath.Join(dir, "exec"): "exec.nar",
		filepath.Join(dir, "link"): "symlink.nar", filepath.Join(dir, "emptydir"): "emptydir.nar",
	} {
		var out bytes.Buffer
		if err := Dump(&out, path); err != nil {
			t.Fatalf("Dump %s: %v", path, err)
		}
		if want := readTestdata(t, golden); !bytes.Equal(out.Bytes(), want) {
			t.Errorf("Dump %s differs from Nix's %s:\n got %q\nwant %q", path, golden, out.Bytes(), want)
		}
	}
}

// Only the owner's x bit makes a file executable, as in Nix (S_IXUSR).
func TestDumpExecutableBit(t *testing.T) {
	dir := t.TempDir()
	for mode, exec := range map[os.FileMode]bool{0o744: true, 0o100: true, 0o655: false, 0o611: false, 0o400: false} {
		p := filepath.Join(dir, fmt.Sprintf("f%o", mode))
		if err := os.WriteFile(p, []byte("a"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := Dump(&out, p); err != nil {
			t.Fatal(err)
		}
		h, err := NewReader(&out).Next()
		if err != nil || h.Executable != exec {
			t.Errorf("mode %o: header %+v, %v; want executable %v", mode, h, err, exec)
		}
	}
}

// A tree with many files of every size, some beyond the read-ahead and more
// than a batch holds, comes back whole and in order.
func TestDumpManyFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "many")
	rng := rand.New(rand.NewSource(1))
	want := map[string][]byte{}
	sizes := []int{0, 1, 7, 8, 9, 4095, 4096, aheadMaxFile - 1, aheadMaxFile, aheadMaxFile + 1, 1 << 20, 3<<20 + 5}
	for i := range 3000 {
		sub := filepath.Join(dir, fmt.Sprintf("d%02d", i%37), fmt.Sprintf("e%d", i%5))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		n := rng.Intn(3000)
		if i%50 == 0 {
			n = sizes[(i/50)%len(sizes)]
		}
		if i%97 == 0 {
			n = 200 << 10 // many large-ish files in a row: the batch's inline budget runs out
		}
		b := make([]byte, n)
		rng.Read(b)
		p := filepath.Join(sub, fmt.Sprintf("f%04d", i))
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(dir, p)
		want[rel] = b
	}
	var out bytes.Buffer
	if err := Dump(&out, dir); err != nil {
		t.Fatal(err)
	}
	r := NewReader(bytes.NewReader(out.Bytes()))
	got := 0
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Type != TypeRegular {
			continue
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, want[h.Path]) {
			t.Fatalf("%s: %d bytes differ from the %d written", h.Path, len(b), len(want[h.Path]))
		}
		got++
	}
	if got != len(want) {
		t.Errorf("%d files in the NAR, want %d", got, len(want))
	}
}

// A large file is streamed: the NAR of a 64 MiB file is right, and Dump
// does not allocate anything like the file's size.
func TestDumpLargeFileStreams(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big")
	const size = 64 << 20
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	content := sha256.New()
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	for i := 0; i < size/len(chunk); i++ {
		f.Write(chunk)
		content.Write(chunk)
	}
	f.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	h := sha256.New()
	cw := &countWriter{w: h}
	if err := Dump(cw, p); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 { // buffers of a fixed size: the output and piecesAhead pieces
		t.Errorf("Dump of a %d-byte file allocated %d bytes", size, alloc)
	}
	// The same NAR, built by hand.
	want := sha256.New()
	b := new(builder)
	b.magic().str("(", "type", "regular", "contents").num(size)
	want.Write(b.Bytes())
	for i := 0; i < size/len(chunk); i++ {
		want.Write(chunk)
	}
	head := int64(b.Len())
	b.Reset()
	b.str(")")
	want.Write(b.Bytes())
	if !bytes.Equal(h.Sum(nil), want.Sum(nil)) || cw.n != head+size+int64(b.Len()) {
		t.Errorf("NAR of the big file: %d bytes, hash %x; want hash %x", cw.n, h.Sum(nil), want.Sum(nil))
	}
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return c.w.Write(p) }

// Files a NAR cannot hold are errors naming their path, wherever they are,
// and a failed dump leaks neither descriptors nor goroutines.
func TestDumpUnsupported(t *testing.T) {
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	for i := range 2000 {
		d := filepath.Join(tree, fmt.Sprintf("d%d", i/100))
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, fmt.Sprintf("f%d", i)), []byte("data"), 0o644)
	}
	fifo := filepath.Join(tree, "d15", "zz-fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	fdsBefore := countFDs(t)
	goroutinesBefore := runtime.NumGoroutine()
	for _, p := range []string{fifo, tree} {
		err := Dump(io.Discard, p)
		if err == nil || !strings.Contains(err.Error(), fifo+": cannot archive a named pipe") {
			t.Errorf("Dump %s: %v, want an error naming %s", p, err, fifo)
		}
	}
	// Dump closes every descriptor before it returns.
	if n := countFDs(t); n != fdsBefore {
		t.Errorf("%d descriptors open after failed dumps, %d before", n, fdsBefore)
	}
	// Its goroutines have all said they are done, but may still be on
	// their way out.
	t0 := time.Now()
	for runtime.NumGoroutine() > goroutinesBefore && time.Since(t0) < 10*time.Second {
		time.Sleep(time.Millisecond)
	}
	t.Logf("%d goroutines (%d before) after waiting %v for them to end", runtime.NumGoroutine(), goroutinesBefore, time.Since(t0))
	if n := runtime.NumGoroutine(); n > goroutinesBefore {
		t.Errorf("%d goroutines 10 s after failed dumps, %d before", n, goroutinesBefore)
	}
	if err := Dump(io.Discard, filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("Dump of a missing path: %v", err)
	}
}

// A writer that fails stops the dump with its error.
func TestDumpWriteError(t *testing.T) {
	dir := t.TempDir()
	for i := range 3000 {
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d", i)), bytes.Repeat([]byte("x"), 1000), 0o644)
	}
	fdsBefore := countFDs(t)
	err := Dump(&failWriter{left: 100000}, dir)
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("Dump to a failing writer: %v", err)
	}
	if n := countFDs(t); n != fdsBefore {
		t.Errorf("%d descriptors open after a failed dump, %d before", n, fdsBefore)
	}
}

type failWriter struct{ left int }

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.left {
		return 0, fmt.Errorf("disk full")
	}
	w.left -= len(p)
	return len(p), nil
}

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
