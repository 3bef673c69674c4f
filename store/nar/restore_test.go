package nar

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Restoring Nix's NAR and dumping the result gives Nix's bytes back, with
// the modes a store path has.
func TestRestoreNixTree(t *testing.T) {
	for _, name := range []string{"tree.nar", "file.nar", "exec.nar", "symlink.nar", "emptydir.nar"} {
		data := readTestdata(t, name)
		target := filepath.Join(t.TempDir(), "out")
		if err := Restore(bytes.NewReader(data), target); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var out bytes.Buffer
		if err := Dump(&out, target); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), data) {
			t.Errorf("%s: dump of the restored tree differs", name)
		}
	}
	target := filepath.Join(t.TempDir(), "out")
	if err := Restore(bytes.NewReader(readTestdata(t, "tree.nar")), target); err != nil {
		t.Fatal(err)
	}
	for rel, want := range map[string]os.FileMode{
		"": os.ModeDir | 0o555, "dir": os.ModeDir | 0o555, "dir/sub": os.ModeDir | 0o555, "empty": os.ModeDir | 0o555,
		"file": 0o444, "emptyfile": 0o444, "exec": 0o555, "dir/sub/n": 0o444, "abs": os.ModeSymlink | 0o777,
	} {
		st, err := os.Lstat(filepath.Join(target, rel))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != want {
			t.Errorf("%q: mode %v, want %v", rel, st.Mode(), want)
		}
	}
	if l, _ := os.Readlink(filepath.Join(target, "dir/dangle")); l != "../dangling" {
		t.Errorf("dir/dangle -> %q", l)
	}
}

// RestoreFrom stops at the archive's end and leaves what follows.
func TestRestoreFromStopsAtEnd(t *testing.T) {
	src := append(readTestdata(t, "tree.nar"), "NEXT"...)
	br := bufio.NewReaderSize(bytes.NewReader(src), 16)
	r := NewReader(br)
	if err := RestoreFrom(r, filepath.Join(t.TempDir(), "out")); err != nil {
		t.Fatal(err)
	}
	if rest, _ := io.ReadAll(br); string(rest) != "NEXT" {
		t.Errorf("after the archive: %q", rest)
	}
	if r.NarSize() != int64(len(src)-4) || r.NarHash().IsZero() {
		t.Errorf("NarSize %d, NarHash %v after RestoreFrom", r.NarSize(), r.NarHash())
	}
}

func TestRestoreTargetExists(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"tree.nar", "file.nar", "symlink.nar"} {
		target := filepath.Join(dir, "exists")
		os.WriteFile(target, []byte("mine"), 0o644)
		err := Restore(bytes.NewReader(readTestdata(t, name)), target)
		if err == nil || !strings.Contains(err.Error(), "already exists") {
			t.Errorf("%s into an existing file: %v", name, err)
		}
		if b, _ := os.ReadFile(target); string(b) != "mine" {
			t.Errorf("%s: the existing target was changed: %q", name, b)
		}
		os.Remove(target)
	}
}

// hostileCases are archives Restore must refuse, leaving nothing behind.
// victim is a directory outside the target that an escape would write to.
func hostileCases(victim string) map[string][]byte {
	cs := map[string][]byte{}
	for _, c := range malformedCases() {
		cs[c.name] = c.nar
	}
	b := new(builder)
	b.magic().dir().entry("a").symlink(victim).end().entry("a").dir().fileEntry("x", "pwned").end().end().end()
	cs["directory over an archive-made symlink"] = b.Bytes()
	b = new(builder)
	b.magic().dir().entry("a").symlink("..").end().entry("a").file("pwned", false).end().end()
	cs["file over an archive-made symlink to .."] = b.Bytes()
	b = new(builder)
	b.magic().dir().entry("b").symlink("..").end().str("entry", "(", "name", "b/x", "node").file("pwned", false).end().end()
	cs["entry through a symlink by its path"] = b.Bytes()
	b = new(builder)
	b.magic().dir().entry("..").file("pwned", false).end().end()
	cs["dot-dot entry"] = b.Bytes()
	b = new(builder)
	b.magic().dir().entry("a").dir().fileEntry("f", "x").end().end().fileEntry("z", "ok").end().WriteString("trailing")
	cs["trailing data after a full tree"] = b.Bytes()
	b = new(builder)
	b.magic().dir()
	for range 300 {
		b.entry("d").dir()
	}
	b.fileEntry("f", "deep")
	cs["truncated deep tree"] = b.Bytes()
	b = new(builder)
	b.magic().dir().entry("a").dir().fileEntry("f", "x").end().end().entry("b").dir().
		str("entry", "(", "name", "big", "node", "(", "type", "regular", "executable", "", "contents").num(1 << 63)
	cs["size 2^63 after some entries"] = b.Bytes()
	return cs
}

func TestRestoreHostile(t *testing.T) {
	base := t.TempDir()
	victim := filepath.Join(base, "victim")
	if err := os.Mkdir(victim, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range hostileCases(victim) {
		t.Run(name, func(t *testing.T) {
			parent := filepath.Join(base, "p")
			if err := os.Mkdir(parent, 0o755); err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(parent)
			err := Restore(bytes.NewReader(data), filepath.Join(parent, "target"))
			var ne *Error
			if !errors.As(err, &ne) || !strings.Contains(err.Error(), "nar offset ") {
				t.Errorf("Restore: %v, want an error naming the offset", err)
			}
			if left, _ := os.ReadDir(parent); len(left) != 0 {
				t.Errorf("left behind: %v", left)
			}
			if left, _ := os.ReadDir(victim); len(left) != 0 {
				t.Errorf("written outside the target: %v", left)
			}
			if left, _ := os.ReadDir(base); len(left) != 2 {
				t.Errorf("written next to the target: %v", left)
			}
		})
	}
}

// A symlink the archive makes is never followed: its siblings are created
// next to it, and nothing reaches the directory it points to.
func TestRestoreSymlinkContained(t *testing.T) {
	base := t.TempDir()
	victim := filepath.Join(base, "victim")
	os.Mkdir(victim, 0o755)
	b := new(builder)
	b.magic().dir().entry("a").symlink(victim).end().entry("b").symlink("..").end().
		entry("c").dir().fileEntry("x", "inside").end().end().end()
	target := filepath.Join(base, "target")
	if err := Restore(bytes.NewReader(b.Bytes()), target); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(victim); len(left) != 0 {
		t.Errorf("written through a symlink: %v", left)
	}
	if got, _ := os.ReadFile(filepath.Join(target, "c/x")); string(got) != "inside" {
		t.Errorf("c/x = %q", got)
	}
}

// A tree deeper than PATH_MAX allows in one path is restored and, when the
// archive then turns out bad, removed again.
func TestRestoreDeep(t *testing.T) {
	name := strings.Repeat("n", 200)
	b := new(builder)
	b.magic().dir()
	for range 100 {
		b.entry(name).dir()
	}
	b.fileEntry("f", "deep")
	for range 101 {
		b.end()
		b.end()
	}
	good := b.Bytes()[:b.Len()-16] // the root has one ")" less than the entries
	parent := t.TempDir()
	target := filepath.Join(parent, "t")
	if err := Restore(bytes.NewReader(good), target); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Dump(&out, target); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), good) {
		t.Error("dump of the deep tree differs from its NAR")
	}
	if err := removeAt(unix.AT_FDCWD, target); err != nil {
		t.Fatalf("removing the deep tree: %v", err)
	}
	err := Restore(bytes.NewReader(append(good, 'x')), target)
	if !errors.Is(err, ErrTrailingData) {
		t.Errorf("Restore with a trailing byte: %v", err)
	}
	if left, _ := os.ReadDir(parent); len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
}

// Restore's errors from the file system name the offset and the entry.
func TestRestoreErrorNamesEntry(t *testing.T) {
	parent := filepath.Join(t.TempDir(), "missing")
	err := Restore(bytes.NewReader(readTestdata(t, "tree.nar")), filepath.Join(parent, "t"))
	if err == nil || !strings.Contains(err.Error(), "nar offset ") || !strings.Contains(err.Error(), "mkdir "+parent) {
		t.Errorf("Restore under a missing directory: %v", err)
	}
}

// Below the Reader's checks, creation itself never follows or replaces: a
// name that exists (here a symlink to a victim directory) is an error for
// every node type, and the victim stays empty.
func TestCreateNeverFollows(t *testing.T) {
	base := t.TempDir()
	victim := filepath.Join(base, "victim")
	os.Mkdir(victim, 0o755)
	dir := filepath.Join(base, "d")
	os.Mkdir(dir, 0o755)
	if err := os.Symlink(victim, filepath.Join(dir, "a")); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	rs := &restorer{nr: NewReader(bytes.NewReader(nil)), target: dir}
	rs.w = newWriters(rs)
	d := &rdir{fd: fd}
	d.refs.Store(1)
	for _, h := range []*Header{
		{Path: "a", Type: TypeDirectory}, {Path: "a", Type: TypeSymlink, LinkTarget: "x"},
		{Path: "a", Type: TypeRegular, Size: writerMaxFile + 1}, // written by the parser
	} {
		if err := rs.create(d, "a", h); !errors.Is(err, unix.EEXIST) {
			t.Errorf("creating a %v over a symlink: %v, want EEXIST", h.Type, err)
		}
	}
	// A small file goes to the writers, which refuse it too.
	if err := rs.create(d, "a", &Header{Path: "a", Type: TypeRegular}); err != nil {
		t.Fatal(err)
	}
	for _, sub := range rs.dirs {
		unix.Close(sub.fd)
	}
	d.unref(rs.w, false)
	if err := rs.w.finish(true); !errors.Is(err, unix.EEXIST) {
		t.Errorf("writing a file over a symlink: %v, want EEXIST", err)
	}
	if left, _ := os.ReadDir(victim); len(left) != 0 {
		t.Errorf("written through a symlink: %v", left)
	}
}

// Files of every size class (inline in a batch, just above writerMaxFile,
// several writer slabs) restore whole, and under a umask that would strip
// bits every mode is still exact.
func TestRestoreSizesAndUmask(t *testing.T) {
	b := new(builder)
	b.magic().dir()
	sizes := map[string]int{"a-empty": 0, "b-small": 100, "c-max": writerMaxFile, "d-above": writerMaxFile + 1,
		"e-slabs": 2*writerSlab + 12345, "f-small": 7}
	want := map[string][]byte{}
	for _, name := range []string{"a-empty", "b-small", "c-max", "d-above", "e-slabs", "f-small"} {
		data := bytes.Repeat([]byte(name[:1]), sizes[name])
		for i := range data {
			data[i] += byte(i / 4096)
		}
		want[name] = data
		b.entry(name).file(string(data), name == "d-above").end()
	}
	b.end()
	for _, mask := range []int{0o022, 0o277} {
		old := unix.Umask(mask)
		target := filepath.Join(t.TempDir(), "t")
		err := Restore(bytes.NewReader(b.Bytes()), target)
		unix.Umask(old)
		if err != nil {
			t.Fatalf("umask %o: %v", mask, err)
		}
		for name, data := range want {
			p := filepath.Join(target, name)
			got, err := os.ReadFile(p)
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("umask %o: %s: %d bytes, %v; want %d", mask, name, len(got), err, len(data))
			}
			st, _ := os.Stat(p)
			if m := fileMode(name == "d-above"); st.Mode().Perm() != os.FileMode(m) {
				t.Errorf("umask %o: %s has mode %v, want %o", mask, name, st.Mode(), m)
			}
		}
		if st, _ := os.Stat(target); st.Mode().Perm() != 0o555 {
			t.Errorf("umask %o: the directory has mode %v", mask, st.Mode())
		}
		var out bytes.Buffer
		if err := Dump(&out, target); err != nil || !bytes.Equal(out.Bytes(), b.Bytes()) {
			t.Errorf("umask %o: dump of the restored tree differs (%v)", mask, err)
		}
	}
}

// A failure in the middle of a large file's pieces removes everything.
func TestRestoreTruncatedLargeFile(t *testing.T) {
	b := new(builder)
	b.magic().dir().fileEntry("a", "x").entry("big").file(string(make([]byte, 3*writerSlab)), false).end().end()
	parent := t.TempDir()
	err := Restore(bytes.NewReader(b.Bytes()[:b.Len()-writerSlab]), filepath.Join(parent, "t"))
	if !errors.Is(err, ErrTruncated) {
		t.Errorf("Restore of a truncated large file: %v", err)
	}
	if left, _ := os.ReadDir(parent); len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
}
