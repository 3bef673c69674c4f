package nar

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// addSeeds seeds a fuzz target with Nix's NARs (testdata) and hostile ones.
func addSeeds(f *testing.F) {
	for _, name := range []string{"tree.nar", "file.nar", "exec.nar", "symlink.nar", "emptydir.nar"} {
		data := readTestdata(f, name)
		f.Add(data)
		f.Add(data[:len(data)/2])
		f.Add(append(append([]byte{}, data...), 0))
	}
	for _, c := range malformedCases() {
		f.Add(c.nar)
	}
	for _, data := range hostileCases("/tmp/victim") {
		if len(data) < 4096 { // deep trees make each run, and minimising, slow
			f.Add(data)
		}
	}
}

// FuzzReader: any input is read or refused with an *Error, without panic
// or allocation beyond the input; a whole archive restores, and dumping the
// restored tree gives the same bytes.
func FuzzReader(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data))
		_, _, err := readAll(r)
		if err != nil {
			var ne *Error
			if !errors.As(err, &ne) || ne.Offset < 0 || ne.Offset > int64(len(data)) {
				t.Fatalf("error %v (%T) is not an *Error within the input", err, err)
			}
			return
		}
		if r.NarSize() > int64(len(data)) {
			t.Fatalf("NarSize %d beyond the %d-byte input", r.NarSize(), len(data))
		}
		if r.CheckEOF() != nil {
			return
		}
		target := filepath.Join(t.TempDir(), "t")
		if err := Restore(bytes.NewReader(data), target); err != nil {
			t.Fatalf("a valid archive did not restore: %v", err)
		}
		var out bytes.Buffer
		if err := Dump(&out, target); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), data) {
			t.Fatalf("dump of the restored tree differs:\n got %q\nwant %q", out.Bytes(), data)
		}
		removeAt(unix.AT_FDCWD, target)
	})
}

// FuzzRestore: Restore either succeeds, and the tree dumps to the same
// bytes, or fails and leaves nothing in the target's parent.
func FuzzRestore(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		target := filepath.Join(parent, "t")
		if err := Restore(bytes.NewReader(data), target); err != nil {
			if left, _ := os.ReadDir(parent); len(left) != 0 {
				t.Fatalf("Restore failed (%v) and left %v", err, left)
			}
			return
		}
		var out bytes.Buffer
		if err := Dump(&out, target); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), data) {
			t.Fatalf("dump of the restored tree differs:\n got %q\nwant %q", out.Bytes(), data)
		}
		removeAt(unix.AT_FDCWD, target)
	})
}
