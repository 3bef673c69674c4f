package store

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"storefs/store/derivation"
	"storefs/store/nar"
	"storefs/store/nixhash"
	"storefs/store/storepath"
)

// testStore opens a store in a temporary state dir; at the end of the test
// it runs the checker (with contents) and fails the test on any problem.
func testStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open("/store", t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		checkClean(t, s)
		s.Close()
	})
	return s
}

func checkClean(t *testing.T, s *Store) {
	t.Helper()
	probs, err := s.Check(CheckOptions{Contents: true})
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	for _, p := range probs {
		t.Errorf("check: %s", p)
	}
}

// tree makes a small tree with a file, an executable, a symlink and a
// subdirectory, with non-canonical modes.
func tree(t *testing.T, name, content string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	must(t, os.MkdirAll(filepath.Join(dir, "sub"), 0o777))
	must(t, os.WriteFile(filepath.Join(dir, "file"), []byte(content), 0o664))
	must(t, os.WriteFile(filepath.Join(dir, "sub", "exe"), []byte("#!/bin/sh\n"), 0o4755))
	must(t, os.Symlink("file", filepath.Join(dir, "link")))
	return dir
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestAddPathIsValidAndCanonical(t *testing.T) {
	s := testStore(t)
	ctx := context.Background()
	info, err := s.AddPath(ctx, tree(t, "t", "hello"), true, nixhash.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.IsValid(info.Path); !ok {
		t.Fatalf("%s not valid after AddPath", info.Path)
	}
	st, err := os.Stat(filepath.Join(s.RealPath(info.Path), "sub", "exe"))
	if err != nil || st.Mode() != 0o555 || st.ModTime().Unix() != 1 {
		t.Errorf("exe: mode %v mtime %v, %v", st.Mode(), st.ModTime(), err)
	}
	again, err := s.AddPath(ctx, tree(t, "t", "hello"), true, nixhash.SHA256)
	if err != nil || again.Path != info.Path || !again.RegistrationTime.Equal(info.RegistrationTime) {
		t.Errorf("second add: %v %v", again, err)
	}
}

// A path that cannot be archived is refused naming it and the cause, not
// as a broken NAR stream (the copy goes through one).
func TestAddPathErrorsNameThePath(t *testing.T) {
	s := testStore(t)
	ctx := context.Background()
	missing := filepath.Join(t.TempDir(), "missing")
	withFifo := tree(t, "f", "x")
	must(t, syscall.Mkfifo(filepath.Join(withFifo, "pipe"), 0o644))
	for _, c := range []struct {
		src       string
		recursive bool
		want      string
	}{
		{missing, true, "adding " + missing + ": lstat " + missing + ": no such file or directory"},
		{missing, false, "adding " + missing + ": open " + missing + ": no such file or directory"},
		{withFifo, true, "adding " + withFifo + ": " + filepath.Join(withFifo, "pipe") + ": cannot archive a named pipe"},
	} {
		_, err := s.AddPath(ctx, c.src, c.recursive, nixhash.SHA256)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) || strings.Contains(err.Error(), "nar offset") {
			t.Errorf("AddPath(%s, recursive %v): %v; want %q...", c.src, c.recursive, err, c.want)
		}
		if c.src == missing && !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("AddPath(%s): %v is not fs.ErrNotExist", c.src, err)
		}
	}
}

func TestAddTextReferences(t *testing.T) {
	s := testStore(t)
	ctx := context.Background()
	u, err := s.AddText(ctx, "u.txt", []byte("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Golden: builtins.toFile under store dir /store, Nix 2.8.
	if got := s.Print(u.Path); got != "/store/sy1pf09am17617zf6qgqfdwjx6axhsb9-u.txt" {
		t.Errorf("u.txt = %s", got)
	}
	v, err := s.AddText(ctx, "t.txt", []byte("hello "+s.Print(u.Path)), []storepath.Path{u.Path})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Print(v.Path); got != "/store/7rrx1afrzyb3vj81nl0vz42sf3vmaxyn-t.txt" {
		t.Errorf("t.txt = %s", got)
	}
	refs, err := s.Referrers(u.Path)
	if err != nil || len(refs) != 1 || refs[0] != v.Path {
		t.Errorf("referrers of u.txt = %v, %v", refs, err)
	}
	req, err := s.Requisites([]storepath.Path{v.Path})
	if err != nil || len(req) != 2 {
		t.Errorf("requisites = %v, %v", req, err)
	}
}

func TestRegisterRefusesInvalidReference(t *testing.T) {
	s := testStore(t)
	missing, _ := storepath.ParseBase("sy1pf09am17617zf6qgqfdwjx6axhsb9-u.txt")
	_, err := s.AddText(context.Background(), "t.txt", []byte("x"), []storepath.Path{missing})
	if err == nil || !strings.Contains(err.Error(), "reference /store/sy1pf09am17617zf6qgqfdwjx6axhsb9-u.txt of path") {
		t.Fatalf("err = %v", err)
	}
	names, _ := readDirNames(s.BackingDir())
	if len(names) != 0 {
		t.Errorf("backing directory holds %v after a refused registration", names)
	}
}

// A crash between the rename into the backing directory and the commit
// leaves an entry named in pending/: the next Open removes it.
func TestOpenCleansPending(t *testing.T) {
	state := t.TempDir()
	s, err := Open("/store", state, Options{})
	must(t, err)
	p, _ := storepath.ParseBase("sy1pf09am17617zf6qgqfdwjx6axhsb9-u.txt")
	must(t, os.WriteFile(s.RealPath(p), []byte("x"), 0o444))
	must(t, os.WriteFile(filepath.Join(state, pendingDir, "batch-1"), []byte(p.Base()+"\n"+p.Base()[:10]), 0o644))
	dead := filepath.Join(state, tmpDir, "999999999-x")
	must(t, os.MkdirAll(filepath.Join(dead, "d"), 0o755))
	must(t, os.Chmod(filepath.Join(dead, "d"), 0o555))
	s.Close()
	s, err = Open("/store", state, Options{})
	must(t, err)
	defer s.Close()
	if _, err := os.Lstat(s.RealPath(p)); !os.IsNotExist(err) {
		t.Errorf("leftover backing entry survived Open: %v", err)
	}
	if names, _ := readDirNames(filepath.Join(state, pendingDir)); len(names) != 0 {
		t.Errorf("pending markers survived Open: %v", names)
	}
	if _, err := os.Lstat(dead); !os.IsNotExist(err) {
		t.Errorf("dead process's scratch survived Open: %v", err)
	}
	checkClean(t, s)
}

func TestCheckFindsProblems(t *testing.T) {
	s, err := Open("/store", t.TempDir(), Options{})
	must(t, err)
	defer s.Close()
	ctx := context.Background()
	info, err := s.AddPath(ctx, tree(t, "t", "hello"), true, nixhash.SHA256)
	must(t, err)
	real := s.RealPath(info.Path)
	must(t, os.Chmod(filepath.Join(real, "file"), 0o644))
	must(t, os.WriteFile(filepath.Join(s.BackingDir(), "stray"), nil, 0o444))
	probs, err := s.Check(CheckOptions{Contents: true})
	must(t, err)
	var text []string
	for _, p := range probs {
		text = append(text, p.String())
	}
	all := strings.Join(text, "\n")
	for _, want := range []string{"stray: backing entry has no database record", "file has mode -rw-r--r--, want -r--r--r--"} {
		if !strings.Contains(all, want) {
			t.Errorf("check output lacks %q:\n%s", want, all)
		}
	}
}

func TestLockExcludes(t *testing.T) {
	s := testStore(t)
	p, _ := storepath.ParseBase("sy1pf09am17617zf6qgqfdwjx6axhsb9-u.txt")
	ctx := context.Background()
	var mu sync.Mutex
	inside, max := 0, 0
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				l, err := s.Lock(ctx, p)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				inside++
				if inside > max {
					max = inside
				}
				mu.Unlock()
				time.Sleep(100 * time.Microsecond)
				mu.Lock()
				inside--
				mu.Unlock()
				l.Unlock()
			}
		}()
	}
	wg.Wait()
	if max != 1 {
		t.Errorf("%d holders at once", max)
	}
}

// testDerivation is a derivation with no inputs and two outputs whose
// paths AddDerivation computes.
func testDerivation() *derivation.Derivation {
	return &derivation.Derivation{
		Outputs: map[string]derivation.Output{"out": {}, "dev": {}},
		System:  "x86_64-linux",
		Builder: "/bin/sh",
		Args:    []string{"-c", "echo > $out"},
		Env:     map[string]string{"name": "t", "builder": "/bin/sh", "system": "x86_64-linux", "out": "", "dev": ""},
	}
}

func TestRegisterBatch(t *testing.T) {
	s := testStore(t)
	var regs []Registration
	var prev []storepath.Path
	for i, content := range []string{"a", "b", "c"} {
		tmp, err := s.NewTemp()
		must(t, err)
		f := filepath.Join(tmp, "f")
		must(t, os.WriteFile(f, []byte(content), 0o644))
		p, _ := storepath.ParseBase(strings.Repeat(string("abc"[i]), 32) + "-" + content)
		info := PathInfo{Path: p, References: prev}
		info.NarHash, info.NarSize = narOf(t, f)
		regs = append(regs, Registration{Info: info, Contents: f})
		prev = []storepath.Path{p}
	}
	unlock, err := s.LockAll(context.Background(), prev)
	must(t, err)
	defer unlock()
	must(t, s.Register(regs...))
	for _, r := range regs {
		if ok, _ := s.IsValid(r.Info.Path); !ok {
			t.Errorf("%s not valid", r.Info.Path)
		}
	}
	if names, _ := readDirNames(filepath.Join(s.State, pendingDir)); len(names) != 0 {
		t.Errorf("pending markers left: %v", names)
	}
}

func narOf(t *testing.T, p string) (nixhash.Hash, uint64) {
	t.Helper()
	h := nixhash.SHA256.New()
	cw := &countWriter{w: h}
	must(t, nar.Dump(cw, p))
	return nixhash.FromHasher(nixhash.SHA256, h), cw.n
}

// Commands that only read must not write the database: Open of an
// existing store leaves it as it was.
func TestOpenDoesNotWrite(t *testing.T) {
	state := t.TempDir()
	s, err := Open("/store", state, Options{})
	must(t, err)
	s.Close()
	db := filepath.Join(state, dbFile)
	before, err := os.Stat(db)
	must(t, err)
	time.Sleep(10 * time.Millisecond)
	s, err = Open("/store", state, Options{})
	must(t, err)
	_, _ = s.IsValid(storepath.Path{})
	s.Close()
	after, err := os.Stat(db)
	must(t, err)
	if !after.ModTime().Equal(before.ModTime()) || after.Size() != before.Size() {
		t.Errorf("Open wrote the database: %v %d -> %v %d", before.ModTime(), before.Size(), after.ModTime(), after.Size())
	}
}

func TestGCTempRootsAndDeleteSpecific(t *testing.T) {
	s := testStore(t)
	ctx := context.Background()
	a, err := s.AddText(ctx, "a", []byte("a"), nil)
	must(t, err)
	b, err := s.AddText(ctx, "b", []byte("b "+s.Print(a.Path)), []storepath.Path{a.Path})
	must(t, err)
	tr, err := s.NewTempRoots(ctx)
	must(t, err)
	must(t, tr.Add(ctx, b.Path))
	res, err := s.GC(ctx, GCOptions{})
	must(t, err)
	if len(res.Deleted) != 0 {
		t.Errorf("GC deleted %v, which a temporary root keeps", res.Deleted)
	}
	err = s.DeleteSpecific(ctx, []storepath.Path{b.Path})
	if err == nil || !strings.Contains(err.Error(), "temporary root") {
		t.Errorf("DeleteSpecific of a temporary root: %v", err)
	}
	must(t, tr.Close())
	err = s.DeleteSpecific(ctx, []storepath.Path{a.Path})
	if !errors.Is(err, ErrReferenced) {
		t.Errorf("DeleteSpecific of a referenced path: %v", err)
	}
	must(t, s.DeleteSpecific(ctx, []storepath.Path{a.Path, b.Path}))
	for _, p := range []storepath.Path{a.Path, b.Path} {
		if ok, _ := s.IsValid(p); ok {
			t.Errorf("%s still valid", p)
		}
	}
}

func TestCheckFindsIndexAndAddressProblems(t *testing.T) {
	s, err := Open("/store", t.TempDir(), Options{})
	must(t, err)
	defer s.Close()
	ctx := context.Background()
	drv, err := s.AddDerivation(ctx, testDerivation())
	must(t, err)
	outs, err := s.DerivationOutputs(drv.Path)
	must(t, err)
	if len(outs) != 2 {
		t.Fatalf("outputs recorded: %v", outs)
	}
	checkClean(t, s)
	txt, err := s.AddText(ctx, "t.txt", []byte("x"), nil)
	must(t, err)
	must(t, s.update(func(tx *bolt.Tx) error {
		if err := deleteOutputIndexes(tx, drv.Path); err != nil {
			return err
		}
		info, err := getInfo(tx, txt.Path)
		if err != nil {
			return err
		}
		info.CA.Hash = nixhash.Sum(nixhash.SHA256, []byte("y"))
		rec, err := encodeRecord(info)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketPaths).Put([]byte(txt.Path.Base()), rec)
	}))
	probs, err := s.Check(CheckOptions{Contents: true})
	must(t, err)
	var all []string
	for _, p := range probs {
		all = append(all, p.String())
	}
	text := strings.Join(all, "\n")
	for _, want := range []string{
		s.Print(drv.Path) + ": derivation has no outputs recorded",
		s.Print(drv.Path) + `: output "dev" is`,
		s.Print(txt.Path) + ": content address text:sha256:",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("check output lacks %q:\n%s", want, text)
		}
	}
	// Repair rebuilds the indexes; a wrong content address it leaves to
	// the checker.
	must(t, s.Repair())
	probs, err = s.Check(CheckOptions{Contents: true})
	must(t, err)
	if len(probs) != 1 || probs[0].Path != s.Print(txt.Path) {
		t.Errorf("after Repair: %v", probs)
	}
}

// AddDerivation streams a derivation's ATerm into its hash and its file
// and records its outputs from the checked derivation: a 16 MiB env var
// costs no copy of it (neither printing the .drv nor reading it back).
func TestAddDerivationBigEnvDoesNotCopy(t *testing.T) {
	s := testStore(t)
	const size = 16 << 20
	d := testDerivation()
	d.Env["big"] = strings.Repeat("a line\n", size/7)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	info, err := s.AddDerivation(context.Background(), d)
	runtime.ReadMemStats(&after)
	must(t, err)
	// nar.Dump's buffers (1 MiB out, three 4 MiB pieces) are a constant.
	const narBuffers = 13 << 20
	if n := after.TotalAlloc - before.TotalAlloc; n > size/4+narBuffers {
		t.Errorf("AddDerivation with a %d MiB env var allocates %d MiB", size>>20, n>>20)
	}
	data, err := os.ReadFile(s.RealPath(info.Path))
	must(t, err)
	if !bytes.Equal(data, d.ATerm(s.Dir)) {
		t.Errorf("%s does not hold the derivation's ATerm", info.Path)
	}
	outs, err := s.DerivationOutputs(info.Path)
	must(t, err)
	if len(outs) != 2 || outs["out"] != d.Outputs["out"].Path {
		t.Errorf("outputs recorded: %v", outs)
	}
}
