package nar

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// readTestdata returns a file of testdata/ (made by real Nix, see README).
func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// makeTestTree builds in dir/tree the tree testdata/make.sh archives.
func makeTestTree(t testing.TB, dir string) string {
	t.Helper()
	root := filepath.Join(dir, "tree")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "dir/sub"), 0o755))
	must(os.MkdirAll(filepath.Join(root, "empty"), 0o755))
	must(os.WriteFile(filepath.Join(root, "file"), []byte("hello\n"), 0o644))
	must(os.WriteFile(filepath.Join(root, "emptyfile"), nil, 0o644))
	must(os.WriteFile(filepath.Join(root, "exec"), []byte("#!/bin/sh\necho hi\n"), 0o755))
	must(os.Symlink("/absolute/target", filepath.Join(root, "abs")))
	must(os.Symlink("file", filepath.Join(root, "rel")))
	must(os.WriteFile(filepath.Join(root, "dir/sub/n"), []byte("nested"), 0o644))
	must(os.WriteFile(filepath.Join(root, "dir/eight"), []byte("12345678"), 0o644))
	must(os.Symlink("../dangling", filepath.Join(root, "dir/dangle")))
	return root
}

// builder writes NARs token by token, valid or not, for tests.
type builder struct{ bytes.Buffer }

func (b *builder) num(n uint64) *builder {
	binary.Write(&b.Buffer, binary.LittleEndian, n)
	return b
}

// str writes strings, each a token.
func (b *builder) str(ss ...string) *builder {
	for _, s := range ss {
		b.num(uint64(len(s)))
		b.WriteString(s)
		b.Write(make([]byte, -len(s)&7))
	}
	return b
}

// at is the offset the next byte will have.
func (b *builder) at() int64 { return int64(b.Len()) }

// file writes a regular node.
func (b *builder) file(contents string, exec bool) *builder {
	b.str("(", "type", "regular")
	if exec {
		b.str("executable", "")
	}
	return b.str("contents", contents, ")")
}

func (b *builder) symlink(target string) *builder {
	return b.str("(", "type", "symlink", "target", target, ")")
}

// entry writes `entry ( name <name> node` ... the caller writes the node and
// then calls end.
func (b *builder) entry(name string) *builder { return b.str("entry", "(", "name", name, "node") }
func (b *builder) end() *builder              { return b.str(")") }
func (b *builder) dir() *builder              { return b.str("(", "type", "directory") }
func (b *builder) magic() *builder            { return b.str("nix-archive-1") }

// fileEntry writes a whole directory entry holding a regular file.
func (b *builder) fileEntry(name, contents string) *builder {
	return b.entry(name).file(contents, false).end()
}
