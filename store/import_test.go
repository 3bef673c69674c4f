package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"storefs/store/export"
	"storefs/store/nar"
	"storefs/store/nixhash"
	"storefs/store/storepath"
)

// narStr is one NAR string: length, bytes, zero padding.
func narStr(b *bytes.Buffer, s string) {
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
	b.Write(n[:])
	b.WriteString(s)
	b.Write(make([]byte, -len(s)&7))
}

// deepNAR is a NAR of directories nested depth levels deep, each holding
// one entry named name, around an empty file.
func deepNAR(depth int, name string) []byte {
	var b bytes.Buffer
	for _, s := range []string{"nix-archive-1", "(", "type", "directory"} {
		narStr(&b, s)
	}
	for i := 1; i < depth; i++ {
		for _, s := range []string{"entry", "(", "name", name, "node", "(", "type", "directory"} {
			narStr(&b, s)
		}
	}
	for _, s := range []string{"entry", "(", "name", name, "node", "(", "type", "regular", "contents", "", ")", ")"} {
		narStr(&b, s)
	}
	for i := 1; i < depth; i++ {
		narStr(&b, ")")
		narStr(&b, ")")
	}
	narStr(&b, ")")
	return b.Bytes()
}

// exportOf is an export stream of one path with the given NAR.
func exportOf(t *testing.T, p storepath.Path, narData []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	w := export.NewWriter(&out, "/store")
	must(t, w.Add(&export.Entry{Path: p}, func(w io.Writer) error { _, err := w.Write(narData); return err }))
	must(t, w.Close())
	return out.Bytes()
}

// Import refuses a tree deeper than PATH_MAX allows, naming the depth; a
// tree just within the bound is imported.
func TestImportRefusesTooDeep(t *testing.T) {
	s := testStore(t)
	limit := s.MaxNARPath()
	for _, c := range []struct {
		depth int
		ok    bool
	}{{3000, false}, {(limit + 1) / 2, true}, {(limit+1)/2 + 1, false}} {
		// depth entries named "a": a path of 2*depth-1 bytes.
		data := deepNAR(c.depth, "a")
		h := nixhash.Sum(nixhash.SHA256, data)
		q, err := s.Dir.MakeCA("deep", storepath.ContentAddress{Recursive: true, Hash: h}, nil, false)
		must(t, err)
		_, err = s.Import(context.Background(), bytes.NewReader(exportOf(t, q, data)))
		t.Logf("depth %d (limit %d bytes): %v", c.depth, limit, err)
		if c.ok != (err == nil) {
			t.Errorf("depth %d: error %v, want ok=%v", c.depth, err, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "at depth") {
			t.Errorf("error %q does not say how deep", err)
		}
		if c.ok {
			if probs, err := s.Check(CheckOptions{Contents: true}); err != nil || len(probs) > 0 {
				t.Errorf("after importing depth %d: %v %v", c.depth, err, probs)
			}
		}
	}
}

// A text path's NAR must be a plain file: Import refuses a .drv marked
// executable, and Export refuses contents whose mode drifted from their
// record.
func TestImportExportCheckModes(t *testing.T) {
	ctx := context.Background()
	src := testStore(t)
	info, err := src.AddDerivation(ctx, testDerivation())
	must(t, err)
	exe := filepath.Join(t.TempDir(), "drv")
	data, err := os.ReadFile(src.RealPath(info.Path))
	must(t, err)
	must(t, os.WriteFile(exe, data, 0o755))
	var narData bytes.Buffer
	must(t, nar.Dump(&narData, exe))
	dst := testStore(t)
	_, err = dst.Import(ctx, bytes.NewReader(exportOf(t, info.Path, narData.Bytes())))
	t.Logf("import of an executable .drv: %v", err)
	if err == nil || !strings.Contains(err.Error(), "executable") || !strings.Contains(err.Error(), info.Path.Base()) {
		t.Errorf("import of an executable .drv: %v", err)
	}
	if ok, _ := dst.IsValid(info.Path); ok {
		t.Errorf("%s imported", info.Path)
	}

	// A drifted mode that changes the NAR: export refuses the path.
	real := src.RealPath(info.Path)
	must(t, os.Chmod(real, 0o555))
	err = src.Export(io.Discard, []storepath.Path{info.Path})
	t.Logf("export of a drifted path: %v", err)
	if err == nil || !strings.Contains(err.Error(), info.Path.Base()) || !strings.Contains(err.Error(), "the record says") {
		t.Errorf("export of a drifted path: %v", err)
	}
	must(t, os.Chmod(real, 0o444))
}
