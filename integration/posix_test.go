package integration

import (
	"bytes"
	"errors"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A read-only POSIX suite for the mount, in the manner of go-fuse's
// posixtest: every case runs against one mounted store holding a tree
// with files, an executable, directories, symlinks and a large file, and
// compares what the mount shows with the backing directory.
//
// Extended attributes: the mount has none. getxattr and listxattr fail with
// ENOTSUP (EOPNOTSUPP: "this filesystem has no xattrs", which ls, cp and tar
// treat as such), not ENODATA ("this file has none of that name"); the
// kernel gives ENOTSUP without asking the server after the first call. The
// one exception is the VFS's own: user.* on a symlink is ENODATA before any
// filesystem is asked.

// posixMount is the mounted store the cases share.
type posixMount struct {
	*mountStore
	tree    string // the added tree's store path, through the mount
	backing string // its copy in the backing directory
	file    string // a plain file added as a store path of its own
	src     string // the tree as it was added
}

func TestPOSIX(t *testing.T) {
	m := newMountStore(t, freshStoreDir(t))
	src := posixTree(t, m.BB)
	p := &posixMount{mountStore: m, src: src}
	p.tree = strings.TrimSpace(string(m.sfs(t, "add", src)))
	p.file = strings.TrimSpace(string(m.sfs(t, "add", writeFile(t, t.TempDir(), "plain.txt", "a plain store file\n"))))
	p.backing = filepath.Join(m.StateDir, "store", filepath.Base(p.tree))
	m.mount(t)
	for _, c := range []struct {
		name string
		fn   func(*testing.T, *posixMount)
	}{
		{"RootListing", posixRootListing},
		{"Stat", posixStat},
		{"Readdir", posixReaddir},
		{"Readlink", posixReadlink},
		{"Read", posixRead},
		{"SeekPread", posixSeekPread},
		{"Mmap", posixMmap},
		{"Exec", posixExec},
		{"Xattr", posixXattr},
		{"ReadOnly", posixReadOnly},
		{"Access", posixAccess},
		{"Statfs", posixStatfs},
	} {
		t.Run(c.name, func(t *testing.T) { c.fn(t, p) })
	}
}

// posixTree makes the tree the suite reads; bb is the busybox store path
// (the interpreter of its script).
func posixTree(t *testing.T, bb string) string {
	dir := filepath.Join(t.TempDir(), "posix")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "dir/sub"), 0o755))
	writeFile(t, dir, "hello.txt", "hello, world\n")
	writeFile(t, dir, "empty", "")
	writeFile(t, dir, "name with spaces", "spaces\n")
	writeFile(t, dir, "dir/sub/deep.txt", "deep\n")
	for i := 0; i < 100; i++ {
		writeFile(t, dir, "dir/f"+string(rune('a'+i/26))+string(rune('a'+i%26)), strings.Repeat("x", i))
	}
	big := make([]byte, 3<<20+123)
	rand.New(rand.NewSource(1)).Read(big)
	must(os.WriteFile(filepath.Join(dir, "big.bin"), big, 0o644))
	must(os.WriteFile(filepath.Join(dir, "run.sh"), []byte("#!"+bb+"/bin/sh\necho exec-ok \"$@\"\n"), 0o755))
	must(os.Symlink("hello.txt", filepath.Join(dir, "link")))
	must(os.Symlink("/nonexistent/target", filepath.Join(dir, "dangling")))
	must(os.Symlink("dir/sub", filepath.Join(dir, "dirlink")))
	return dir
}

// walkTree calls fn with the relative path of every entry of the tree.
func (p *posixMount) walkTree(t *testing.T, fn func(rel string)) {
	t.Helper()
	err := filepath.Walk(p.backing, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(p.backing, path)
		fn(rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func posixRootListing(t *testing.T, p *posixMount) {
	ents, err := os.ReadDir(p.StoreDir)
	if err != nil {
		t.Fatal(err)
	}
	want := sortedNames(filepath.Base(p.BB), filepath.Base(p.tree), filepath.Base(p.file))
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
		st, err := os.Lstat(filepath.Join(p.StoreDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Type() != st.Mode().Type() {
			t.Errorf("root entry %s: readdir type %v, lstat type %v", e.Name(), e.Type(), st.Mode().Type())
		}
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("the store dir lists %v, want exactly the valid paths %v", got, want)
	}
	var st unix.Stat_t
	if err := unix.Stat(p.StoreDir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode != unix.S_IFDIR|0o555 || st.Uid != 0 || st.Gid != 0 {
		t.Errorf("the store dir: mode %o, owner %d:%d; want dir 0555 owned by root", st.Mode, st.Uid, st.Gid)
	}
}

// posixStat: every entry has the backing entry's attributes, and those are
// canonical: owned by root, 0444 or 0555, symlinks 0777, mtime 1.
func posixStat(t *testing.T, p *posixMount) {
	p.walkTree(t, func(rel string) {
		var got, want unix.Stat_t
		if err := unix.Lstat(filepath.Join(p.tree, rel), &got); err != nil {
			t.Errorf("lstat %s: %v", rel, err)
			return
		}
		if err := unix.Lstat(filepath.Join(p.backing, rel), &want); err != nil {
			t.Fatal(err)
		}
		if got.Mode != want.Mode || got.Uid != want.Uid || got.Gid != want.Gid || got.Size != want.Size ||
			got.Nlink != want.Nlink || got.Ino != want.Ino || got.Mtim != want.Mtim {
			t.Errorf("lstat %s: mode %o uid %d gid %d size %d nlink %d ino %d mtime %v; backing mode %o uid %d gid %d size %d nlink %d ino %d mtime %v",
				rel, got.Mode, got.Uid, got.Gid, got.Size, got.Nlink, got.Ino, got.Mtim,
				want.Mode, want.Uid, want.Gid, want.Size, want.Nlink, want.Ino, want.Mtim)
		}
		perm := got.Mode & 0o7777
		switch got.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			if perm != 0o777 {
				t.Errorf("%s: symlink mode %o", rel, perm)
			}
		case unix.S_IFDIR:
			if perm != 0o555 {
				t.Errorf("%s: directory mode %o, want 0555", rel, perm)
			}
		default:
			if want := map[string]uint32{"run.sh": 0o555}[rel]; (want != 0 && perm != want) || (want == 0 && perm != 0o444) {
				t.Errorf("%s: file mode %o", rel, perm)
			}
		}
		if got.Uid != 0 || got.Gid != 0 || got.Mtim.Sec != 1 {
			t.Errorf("%s: owner %d:%d, mtime %d; want root and 1", rel, got.Uid, got.Gid, got.Mtim.Sec)
		}
	})
	f, err := os.Open(filepath.Join(p.tree, "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var fst, lst unix.Stat_t
	unix.Fstat(int(f.Fd()), &fst)
	unix.Lstat(filepath.Join(p.tree, "big.bin"), &lst)
	if fst != lst {
		t.Errorf("fstat of an open file differs from lstat:\n%+v\n%+v", fst, lst)
	}
}

// direntInos reads a directory with getdents: name -> (inode, type).
func direntInos(t *testing.T, dir string) map[string][2]uint64 {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	out := map[string][2]uint64{}
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return out
		}
		for b := buf[:n]; len(b) > 0; {
			reclen := int(b[16]) | int(b[17])<<8
			ino := uint64(0)
			for i := 7; i >= 0; i-- {
				ino = ino<<8 | uint64(b[i])
			}
			name := string(bytes.TrimRight(b[19:reclen], "\x00"))
			if name != "." && name != ".." {
				out[name] = [2]uint64{ino, uint64(b[18])}
			}
			b = b[reclen:]
		}
	}
}

// posixReaddir: every directory lists the backing directory's entries with
// the same types and inode numbers, twice (the second from the cache).
func posixReaddir(t *testing.T, p *posixMount) {
	p.walkTree(t, func(rel string) {
		fi, err := os.Lstat(filepath.Join(p.backing, rel))
		if err != nil || !fi.IsDir() {
			return
		}
		want := direntInos(t, filepath.Join(p.backing, rel))
		for i := 0; i < 2; i++ {
			got := direntInos(t, filepath.Join(p.tree, rel))
			if len(got) != len(want) {
				t.Errorf("readdir %s: %d entries, backing %d", rel, len(got), len(want))
			}
			for name, w := range want {
				if got[name] != w {
					t.Errorf("readdir %s: %q has (ino, type) %v, backing %v", rel, name, got[name], w)
				}
			}
		}
	})
	ents, err := os.ReadDir(filepath.Join(p.tree, "dir"))
	if err != nil || len(ents) != 101 || ents[0].Name() != "faa" || ents[100].Name() != "sub" {
		t.Errorf("ReadDir of dir: %d entries, %v", len(ents), err)
	}
}

func posixReadlink(t *testing.T, p *posixMount) {
	for link, want := range map[string]string{"link": "hello.txt", "dangling": "/nonexistent/target", "dirlink": "dir/sub"} {
		got, err := os.Readlink(filepath.Join(p.tree, link))
		if err != nil || got != want {
			t.Errorf("readlink %s: %q, %v; want %q", link, got, err, want)
		}
	}
	if got, err := catFile(t, filepath.Join(p.tree, "link")); err != nil || got != "hello, world\n" {
		t.Errorf("reading through link: %q, %v", got, err)
	}
	if got, err := catFile(t, filepath.Join(p.tree, "dirlink/deep.txt")); err != nil || got != "deep\n" {
		t.Errorf("reading through dirlink: %q, %v", got, err)
	}
	if _, err := os.Stat(filepath.Join(p.tree, "dangling")); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("stat through the dangling link: %v, want ENOENT", err)
	}
	if _, err := os.Readlink(filepath.Join(p.tree, "hello.txt")); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("readlink of a file: %v, want EINVAL", err)
	}
}

// posixRead: every file reads as it was added; missing names are ENOENT,
// names under a file ENOTDIR.
func posixRead(t *testing.T, p *posixMount) {
	p.walkTree(t, func(rel string) {
		fi, err := os.Lstat(filepath.Join(p.src, rel))
		if err != nil || !fi.Mode().IsRegular() {
			return
		}
		want, _ := os.ReadFile(filepath.Join(p.src, rel))
		got, err := os.ReadFile(filepath.Join(p.tree, rel))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("read %s: %d bytes, %v; want %d bytes as added", rel, len(got), err, len(want))
		}
	})
	for i := 0; i < 2; i++ { // the second answer comes from the kernel's cache
		if _, err := os.Lstat(filepath.Join(p.tree, "missing")); !errors.Is(err, syscall.ENOENT) {
			t.Errorf("lstat of a missing name: %v, want ENOENT", err)
		}
	}
	if _, err := os.Lstat(filepath.Join(p.tree, "hello.txt/x")); !errors.Is(err, syscall.ENOTDIR) {
		t.Errorf("lstat under a file: %v, want ENOTDIR", err)
	}
	if got, err := catFile(t, p.file); err != nil || got != "a plain store file\n" {
		t.Errorf("reading a store path that is a file: %q, %v", got, err)
	}
}

func posixSeekPread(t *testing.T, p *posixMount) {
	want, _ := os.ReadFile(filepath.Join(p.src, "big.bin"))
	f, err := os.Open(filepath.Join(p.tree, "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 100)
	for _, c := range []struct {
		off    int64
		whence int
		at     int64
	}{{1000, io.SeekStart, 1000}, {5000, io.SeekCurrent, 6100}, {-10, io.SeekEnd, int64(len(want)) - 10}, {1 << 20, io.SeekStart, 1 << 20}} {
		pos, err := f.Seek(c.off, c.whence)
		if err != nil || pos != c.at {
			t.Fatalf("seek %d/%d: %d, %v; want %d", c.off, c.whence, pos, err, c.at)
		}
		n, err := io.ReadFull(f, buf)
		end := min(int(c.at)+len(buf), len(want))
		if !bytes.Equal(buf[:n], want[c.at:end]) || (err != nil && end-int(c.at) == len(buf)) {
			t.Errorf("read after seek to %d: %d bytes, %v", c.at, n, err)
		}
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		t.Fatal(err)
	}
	if n, err := f.Read(buf); n != 0 || err != io.EOF {
		t.Errorf("read at EOF: %d, %v; want 0, EOF", n, err)
	}
	r := rand.New(rand.NewSource(2))
	for i := 0; i < 200; i++ {
		off := r.Int63n(int64(len(want)) + 10)
		got := make([]byte, r.Intn(300<<10))
		n, err := unix.Pread(int(f.Fd()), got, off)
		wantN := max(0, min(len(got), len(want)-int(off)))
		if err != nil || n != wantN || !bytes.Equal(got[:n], want[min(off, int64(len(want))):min(off+int64(n), int64(len(want)))]) {
			t.Fatalf("pread of %d at %d: %d, %v; want %d bytes as added", len(got), off, n, err, wantN)
		}
	}
}

func posixMmap(t *testing.T, p *posixMount) {
	for _, name := range []string{"big.bin", "hello.txt"} {
		want, _ := os.ReadFile(filepath.Join(p.src, name))
		f, err := os.Open(filepath.Join(p.tree, name))
		if err != nil {
			t.Fatal(err)
		}
		for _, flags := range []int{unix.MAP_SHARED, unix.MAP_PRIVATE} {
			data, err := unix.Mmap(int(f.Fd()), 0, len(want), unix.PROT_READ, flags)
			if err != nil {
				t.Fatalf("mmap %s: %v", name, err)
			}
			if !bytes.Equal(data, want) {
				t.Errorf("mmap %s (flags %#x): contents differ", name, flags)
			}
			unix.Munmap(data)
		}
		if _, err := unix.Mmap(int(f.Fd()), 0, len(want), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); !errors.Is(err, syscall.EACCES) {
			t.Errorf("writable shared mmap of %s: %v, want EACCES", name, err)
		}
		f.Close()
	}
}

func posixExec(t *testing.T, p *posixMount) {
	r := runCmd(t, os.Environ(), nil, filepath.Join(p.tree, "run.sh"), "a b")
	if r.code != 0 || string(r.stdout) != "exec-ok a b\n" {
		t.Errorf("run.sh (its interpreter in the store too): exit %d, %q, %s", r.code, r.stdout, r.stderr)
	}
	r = runCmd(t, os.Environ(), nil, p.BB+"/bin/sh", "-c", "echo $((6*7))")
	if r.code != 0 || string(r.stdout) != "42\n" {
		t.Errorf("busybox sh from the store: exit %d, %q, %s", r.code, r.stdout, r.stderr)
	}
	if err := exec.Command(filepath.Join(p.tree, "hello.txt")).Run(); !errors.Is(err, syscall.EACCES) {
		t.Errorf("exec of a 0444 file: %v, want EACCES", err)
	}
}

func posixXattr(t *testing.T, p *posixMount) {
	buf := make([]byte, 256)
	for _, rel := range []string{"hello.txt", "dir", "link", ""} {
		path := filepath.Join(p.tree, rel)
		for _, name := range []string{"user.test", "security.capability", "trusted.x"} {
			want := unix.ENOTSUP
			if rel == "link" && name == "user.test" {
				want = unix.ENODATA // the VFS's own answer: no user.* on symlinks
			}
			if _, err := unix.Lgetxattr(path, name, buf); !errors.Is(err, want) {
				t.Errorf("lgetxattr %q %s: %v, want %v", rel, name, err, want)
			}
		}
		if _, err := unix.Llistxattr(path, buf); !errors.Is(err, unix.ENOTSUP) {
			t.Errorf("llistxattr %q: %v, want ENOTSUP", rel, err)
		}
	}
	if _, err := unix.Getxattr(p.StoreDir, "security.selinux", buf); !errors.Is(err, unix.ENOTSUP) {
		t.Errorf("getxattr of the store dir: %v, want ENOTSUP", err)
	}
}

// posixReadOnly: every call that would change something fails with EROFS.
func posixReadOnly(t *testing.T, p *posixMount) {
	file, dir := filepath.Join(p.tree, "hello.txt"), filepath.Join(p.tree, "dir")
	newRoot := filepath.Join(p.StoreDir, "22222222222222222222222222222222-new")
	open := func(path string, flags int) error {
		fd, err := unix.Open(path, flags|unix.O_CLOEXEC, 0o644)
		if err == nil {
			unix.Close(fd)
		}
		return err
	}
	now := time.Now()
	for _, c := range []struct {
		what string
		err  error
	}{
		{"open O_WRONLY", open(file, unix.O_WRONLY)},
		{"open O_RDWR", open(file, unix.O_RDWR)},
		{"open O_RDONLY|O_TRUNC", open(file, unix.O_RDONLY|unix.O_TRUNC)},
		{"open O_APPEND", open(file, unix.O_WRONLY|unix.O_APPEND)},
		{"create in a path", open(filepath.Join(dir, "new"), unix.O_WRONLY|unix.O_CREAT)},
		{"create in the store dir", open(newRoot, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL)},
		{"truncate", unix.Truncate(file, 0)},
		{"unlink", unix.Unlink(file)},
		{"unlink a store path", unix.Unlink(p.file)},
		{"rmdir", unix.Rmdir(filepath.Join(dir, "sub"))},
		{"rmdir a store path", unix.Rmdir(p.tree)},
		{"mkdir in a path", unix.Mkdir(filepath.Join(dir, "newdir"), 0o755)},
		{"mkdir in the store dir", unix.Mkdir(newRoot, 0o755)},
		{"mknod", unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644)},
		{"rename", unix.Rename(file, filepath.Join(p.tree, "renamed"))},
		{"rename a store path", unix.Rename(p.tree, newRoot)},
		{"symlink", unix.Symlink("x", filepath.Join(dir, "newlink"))},
		{"link", unix.Link(file, filepath.Join(dir, "hardlink"))},
		{"chmod", unix.Chmod(file, 0o644)},
		{"chmod the store dir", unix.Chmod(p.StoreDir, 0o755)},
		{"chown", unix.Lchown(file, 1, 1)},
		{"utimes", os.Chtimes(file, now, now)},
		{"setxattr", unix.Setxattr(file, "user.test", []byte("x"), 0)},
		{"removexattr", unix.Removexattr(file, "user.test")},
	} {
		if !errors.Is(c.err, syscall.EROFS) {
			t.Errorf("%s: %v, want EROFS", c.what, c.err)
		}
	}
	if got, err := catFile(t, file); err != nil || got != "hello, world\n" {
		t.Errorf("after the write attempts: %q, %v", got, err)
	}
}

func posixAccess(t *testing.T, p *posixMount) {
	file, script := filepath.Join(p.tree, "hello.txt"), filepath.Join(p.tree, "run.sh")
	for _, c := range []struct {
		path string
		mode uint32
		want error
	}{
		{file, unix.R_OK, nil}, {file, unix.W_OK, syscall.EROFS}, {file, unix.X_OK, syscall.EACCES},
		{script, unix.X_OK, nil}, {p.tree, unix.X_OK | unix.R_OK, nil}, {p.tree, unix.W_OK, syscall.EROFS},
	} {
		if err := unix.Access(c.path, c.mode); !errors.Is(err, c.want) && !(err == nil && c.want == nil) {
			t.Errorf("access(%s, %d): %v, want %v", c.path, c.mode, err, c.want)
		}
	}
}

func posixStatfs(t *testing.T, p *posixMount) {
	for _, path := range []string{p.StoreDir, p.tree} {
		var st unix.Statfs_t
		if err := unix.Statfs(path, &st); err != nil {
			t.Fatalf("statfs %s: %v", path, err)
		}
		const fuseSuperMagic = 0x65735546
		if st.Type != fuseSuperMagic || st.Flags&unix.ST_RDONLY == 0 || st.Blocks == 0 {
			t.Errorf("statfs %s: type %#x flags %#x blocks %d; want FUSE, read-only, the backing filesystem's size", path, st.Type, st.Flags, st.Blocks)
		}
	}
}
