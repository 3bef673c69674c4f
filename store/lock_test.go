package store

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"storefs/store/nixbase32"
	"storefs/store/nixhash"
	"storefs/store/storepath"
)

// manyPaths is n distinct store paths, as a derivation's outputs would be.
func manyPaths(n int) []storepath.Path {
	ps := make([]storepath.Path, n)
	for i := range ps {
		h := nixhash.Sum(nixhash.SHA256, []byte(fmt.Sprint("out", i)))
		p, err := storepath.ParseBase(nixbase32.EncodeToString(h.Digest()[:20]) + "-o" + fmt.Sprint(i))
		if err != nil {
			panic(err)
		}
		ps[i] = p
	}
	return ps
}

// openFDs counts this process's open descriptors.
func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// The child modes of the lock tests: the test binary re-executed with
// lockChildEnv set to a mode, the state dir in lockStateEnv and the paths
// (base names, comma separated) in lockPathsEnv.
const (
	lockChildEnv = "STOREFS_LOCK_CHILD"
	lockStateEnv = "STOREFS_LOCK_STATE"
	lockPathsEnv = "STOREFS_LOCK_PATHS"
)

// TestLockChild is not a test on its own: it is what a child process of
// the lock tests runs. "try" prints "free" or "busy" for TryLock of each
// path; "hold" takes LockAll of the paths, prints "held" and sleeps until
// killed; "nofile" lowers RLIMIT_NOFILE to 256 and takes LockAll of 20,000
// paths, printing "ok".
func TestLockChild(t *testing.T) {
	mode := os.Getenv(lockChildEnv)
	if mode == "" {
		return
	}
	fail := func(err error) {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	if mode == "nofile" {
		lim := unix.Rlimit{Cur: 256, Max: 256}
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			fail(err)
		}
	}
	s, err := Open("/store", os.Getenv(lockStateEnv), Options{})
	if err != nil {
		fail(err)
	}
	var ps []storepath.Path
	for _, b := range strings.Split(os.Getenv(lockPathsEnv), ",") {
		if b == "" {
			continue
		}
		p, err := storepath.ParseBase(b)
		if err != nil {
			fail(err)
		}
		ps = append(ps, p)
	}
	ctx := context.Background()
	switch mode {
	case "try":
		for _, p := range ps {
			l, err := s.TryLock(p)
			if err != nil {
				fail(err)
			}
			if l == nil {
				fmt.Println("busy")
			} else {
				fmt.Println("free")
				l.Unlock()
			}
		}
	case "hold":
		if _, err := s.LockAll(ctx, ps); err != nil {
			fail(err)
		}
		fmt.Println("held")
		time.Sleep(time.Hour)
	case "nofile":
		unlock, err := s.LockAll(ctx, manyPaths(20000))
		if err != nil {
			fail(err)
		}
		unlock()
		fmt.Println("ok")
	}
	os.Exit(0)
}

// lockChild starts the test binary as a lock child.
func lockChild(t *testing.T, mode, state string, ps ...storepath.Path) *exec.Cmd {
	t.Helper()
	var bases []string
	for _, p := range ps {
		bases = append(bases, p.Base())
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), lockChildEnv+"="+mode, lockStateEnv+"="+state, lockPathsEnv+"="+strings.Join(bases, ","))
	return cmd
}

// childTry is what TryLock of each of ps answers in another process.
func childTry(t *testing.T, s *Store, ps ...storepath.Path) string {
	t.Helper()
	out, err := lockChild(t, "try", s.State, ps...).CombinedOutput()
	if err != nil {
		t.Fatalf("lock child: %v: %s", err, out)
	}
	return strings.Join(strings.Fields(string(out)), " ")
}

// A derivation with 20,000 outputs takes their locks under a file limit
// far below 20,000.
func TestLockAllManyPathsLowFileLimit(t *testing.T) {
	s := testStore(t)
	out, err := lockChild(t, "nofile", s.State).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok") {
		t.Fatalf("LockAll of 20,000 paths with RLIMIT_NOFILE 256: %v: %s", err, out)
	}
}

// LockAll holds a constant number of descriptors, however many paths.
func TestLockAllDescriptors(t *testing.T) {
	s := testStore(t)
	before := openFDs(t)
	unlock, err := s.LockAll(context.Background(), manyPaths(2000))
	must(t, err)
	held := openFDs(t) - before
	unlock()
	if held > lockShards {
		t.Errorf("LockAll of 2,000 paths holds %d descriptors, more than the %d lock files", held, lockShards)
	}
	if n := openFDs(t) - before; n > 0 {
		t.Errorf("%d descriptors left open after unlock", n)
	}
	unlock, err = s.LockAll(context.Background(), manyPaths(1))
	must(t, err)
	if held := openFDs(t) - before; held != 1 {
		t.Errorf("LockAll of one path holds %d descriptors", held)
	}
	unlock()
}

// Locks exclude other processes, and another process's locks exclude us.
func TestLockExcludesProcesses(t *testing.T) {
	s := testStore(t)
	ps := manyPaths(3)
	l, err := s.Lock(context.Background(), ps[0])
	must(t, err)
	if got := childTry(t, s, ps...); got != "busy free free" {
		t.Errorf("with %s locked here, another process's TryLock gives %q", ps[0], got)
	}
	l.Unlock()
	if got := childTry(t, s, ps...); got != "free free free" {
		t.Errorf("after Unlock, another process's TryLock gives %q", got)
	}
	unlock, err := s.LockAll(context.Background(), ps[1:])
	must(t, err)
	if got := childTry(t, s, ps...); got != "free busy busy" {
		t.Errorf("with %s and %s locked here, another process's TryLock gives %q", ps[1], ps[2], got)
	}
	unlock()

	// A holder killed with SIGKILL lets go.
	child := lockChild(t, "hold", s.State, ps...)
	stdout, err := child.StdoutPipe()
	must(t, err)
	must(t, child.Start())
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "held\n" {
		child.Process.Kill()
		child.Wait()
		t.Fatalf("holding child said %q: %v", line, err)
	}
	for _, p := range ps {
		if l, err := s.TryLock(p); err != nil || l != nil {
			t.Errorf("TryLock of %s held by another process: %v, %v", p, l, err)
			l.Unlock()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	if _, err := s.LockAll(ctx, ps); err == nil {
		t.Errorf("LockAll of paths held by another process did not wait")
	}
	cancel()
	must(t, child.Process.Kill())
	child.Wait()
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	unlock, err = s.LockAll(ctx, ps)
	if err != nil {
		t.Fatalf("after the holder was killed: %v", err)
	}
	unlock()
}

// Two Stores of one process exclude each other, as do Lock and LockAll.
func TestLockExcludesStoresOfOneProcess(t *testing.T) {
	s := testStore(t)
	s2, err := Open(s.Dir, s.State, Options{})
	must(t, err)
	ps := manyPaths(4)
	unlock, err := s.LockAll(context.Background(), ps[:2])
	must(t, err)
	for i, p := range ps {
		l, err := s2.TryLock(p)
		must(t, err)
		if (l == nil) != (i < 2) {
			t.Errorf("TryLock of %s (%d) from a second Store gives %v", p, i, l)
		}
		l.Unlock()
		// The same Store excludes itself too: a lock belongs to its holder,
		// not to the Store or the process.
		l, err = s.TryLock(p)
		must(t, err)
		if (l == nil) != (i < 2) {
			t.Errorf("TryLock of %s (%d) from the same Store gives %v", p, i, l)
		}
		l.Unlock()
	}
	released := make(chan struct{})
	go func() {
		l, err := s2.Lock(context.Background(), ps[1])
		if err != nil {
			t.Error(err)
		}
		close(released)
		l.Unlock()
	}()
	select {
	case <-released:
		t.Fatalf("Lock of a path in a held LockAll returned")
	case <-time.After(50 * time.Millisecond):
	}
	unlock()
	<-released
}

// gc keeps a path whose lock another process holds, and deletes it once
// the holder is gone.
func TestGCKeepsLockedPath(t *testing.T) {
	s := testStore(t)
	ctx := context.Background()
	a, err := s.AddText(ctx, "a", []byte("a"), nil)
	must(t, err)
	child := lockChild(t, "hold", s.State, a.Path)
	stdout, err := child.StdoutPipe()
	must(t, err)
	must(t, child.Start())
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "held\n" {
		child.Process.Kill()
		child.Wait()
		t.Fatalf("holding child said %q: %v", line, err)
	}
	res, err := s.GC(ctx, GCOptions{})
	child.Process.Kill()
	child.Wait()
	must(t, err)
	if len(res.Deleted) != 0 {
		t.Errorf("GC deleted %v while another process held its lock", res.Deleted)
	}
	if ok, _ := s.IsValid(a.Path); !ok {
		t.Errorf("%s deleted while locked", a.Path)
	}
	res, err = s.GC(ctx, GCOptions{})
	must(t, err)
	if len(res.Deleted) != 1 {
		t.Errorf("GC after the holder died deleted %v", res.Deleted)
	}
}

// Hash parts made by hand, differing in their last characters only, get
// bytes of their own: locking one leaves the others free.
func TestLockOffsetsSpreadHandMadeHashes(t *testing.T) {
	seen := map[int64]string{}
	for i := 0; i < 1000; i++ {
		p, err := storepath.ParseBase(fmt.Sprintf("%032d-p", i))
		must(t, err)
		off := lockOffset(p)
		if q, ok := seen[off]; ok {
			t.Fatalf("%s and %s share lock byte %d", q, p, off)
		}
		seen[off] = p.Base()
	}
	s := testStore(t)
	a, _ := storepath.ParseBase(fmt.Sprintf("%032d-a", 1))
	b, _ := storepath.ParseBase(fmt.Sprintf("%032d-b", 2))
	l, err := s.Lock(context.Background(), a)
	must(t, err)
	defer l.Unlock()
	m, err := s.TryLock(b)
	must(t, err)
	if m == nil {
		t.Errorf("with %s locked, %s looks locked", a, b)
	}
	m.Unlock()
}
