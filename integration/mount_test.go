package integration

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The lazy mount through real FUSE: `storefs mount` serving a store dir,
// driven by shells and by this process. Each test mounts its own store dir
// under /var/tmp (the sandbox reserves /tmp for builders, so a store dir
// may not lie there); tests that compare with Nix mount /store, one at a
// time, in the tests' own mount namespace (mountns_test.go), so that a
// storefs the machine serves at /store is left alone. The harness is in
// mount_harness_test.go.

// TestMountCat: against Nix, at /store. A shell's cat of an unbuilt output
// builds it (the same path and contents as nix-store --realise), the second
// cat starts no goal, and the busybox shell runs from the mount.
func TestMountCat(t *testing.T) {
	e := newBuildEnv(t) // Nix's store and a storefs store with the busybox tree at /store
	drv := e.instantiate(t, `{ trivial = mk { name = "trivial"; args = ["-c" "${bbp}/bin/mkdir $out; ${bbp}/bin/echo hello > $out/greeting"]; }; }`, "trivial")[0]
	e.addDrvs(t, drv)
	out := e.n.line(t, "nix-store", "-q", "--outputs", drv)
	m := &mountStore{StoreDir: storeDir, StateDir: e.state, BB: e.bb}
	m.mount(t)

	r := runCmd(t, os.Environ(), nil, "sh", "-c", "cat "+out+"/greeting")
	if r.code != 0 || string(r.stdout) != "hello\n" {
		t.Fatalf("first cat: exit %d, %q, %s\n%s", r.code, r.stdout, r.stderr, m.log)
	}
	before := m.status(t)
	if before.Started != 1 || before.Finished != 1 {
		t.Errorf("after the first cat: %d goals started, %d finished; want 1, 1", before.Started, before.Finished)
	}
	t0 := time.Now()
	r = runCmd(t, os.Environ(), nil, "sh", "-c", "cat "+out+"/greeting")
	second := time.Since(t0)
	if r.code != 0 || string(r.stdout) != "hello\n" {
		t.Fatalf("second cat: exit %d, %q, %s", r.code, r.stdout, r.stderr)
	}
	after := m.status(t)
	if after.Started != before.Started || after.Mount.Realisations != before.Mount.Realisations {
		t.Errorf("the second cat asked for a realisation: status before %+v, after %+v", before, after)
	}
	t.Logf("second cat (a shell and cat) took %v", second)

	nixOut := e.n.line(t, "nix-store", "--realise", drv)
	if nixOut != out {
		t.Fatalf("nix-store --realise printed %s, want %s", nixOut, out)
	}
	want := e.n.line(t, "nix-store", "-q", "--hash", out)
	if got := strings.TrimSpace(string(e.sfs(t, "query", "--hash", out))); got != want {
		t.Errorf("NAR hash of the built output: storefs %s, Nix %s", got, want)
	}

	r = runCmd(t, os.Environ(), nil, e.bb+"/bin/sh", "-c", "echo from the store; "+e.bb+"/bin/cat "+out+"/greeting")
	if r.code != 0 || string(r.stdout) != "from the store\nhello\n" {
		t.Errorf("running %s/bin/sh through the mount: exit %d, %q, %s", e.bb, r.code, r.stdout, r.stderr)
	}
}

// TestMountConcurrentLookups: 50 concurrent lookups of one unbuilt path
// make one build and 50 correct reads.
func TestMountConcurrentLookups(t *testing.T) {
	m := newMountStore(t, freshStoreDir(t))
	_, out := m.derivation(t, "slow", "sleep 1; mkdir $out; echo concurrent > $out/greeting")
	m.mount(t)
	var wg sync.WaitGroup
	errs := make([]error, 50)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := catFile(t, out+"/greeting")
			if err == nil && got != "concurrent\n" {
				err = fmt.Errorf("read %q", got)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("reader %d: %v", i, err)
		}
	}
	st := m.status(t)
	if st.Started != 1 {
		t.Errorf("%d goals started, want 1", st.Started)
	}
	t.Logf("50 readers: %d lookups reached the mount, %d asked for a realisation", st.Mount.Lookups, st.Mount.Realisations)
}

// TestMountUnknownName: a name nothing can realise is ENOENT, and a second
// lookup is answered by the kernel in under a millisecond.
func TestMountUnknownName(t *testing.T) {
	m := newMountStore(t, freshStoreDir(t))
	m.mount(t)
	for _, name := range []string{"00000000000000000000000000000000-unknown", "not-a-store-path", ".hidden"} {
		p := filepath.Join(m.StoreDir, name)
		t0 := time.Now()
		_, err := os.Lstat(p)
		first := time.Since(t0)
		if !errors.Is(err, syscall.ENOENT) {
			t.Fatalf("first lookup of %s: %v, want ENOENT", name, err)
		}
		t0 = time.Now()
		_, err = os.Lstat(p)
		second := time.Since(t0)
		if !errors.Is(err, syscall.ENOENT) {
			t.Fatalf("second lookup of %s: %v, want ENOENT", name, err)
		}
		if second >= time.Millisecond {
			t.Errorf("second lookup of %s took %v, want under 1 ms", name, second)
		}
		t.Logf("%s: first lookup %v, second %v", name, first, second)
	}
}

// TestMountSubstitutes: a lookup of a path that a file:// cache has (and
// that no known derivation makes) substitutes it, signed and checked.
func TestMountSubstitutes(t *testing.T) {
	storeDir := freshStoreDir(t)
	builder := newMountStore(t, storeDir)
	drv, out := builder.derivation(t, "cached", "mkdir $out; echo from the cache > $out/greeting; ln -s "+builder.BB+"/bin/busybox $out/busybox")
	builder.sfs(t, "realise", drv)
	key := filepath.Join(t.TempDir(), "secret")
	pub := strings.TrimSpace(string(builder.sfs(t, "key", "generate", "test-cache-1", "--out", key)))
	cache := "file://" + t.TempDir()
	builder.sfs(t, "copy", "--to", cache, "--secret-key-file", key, out)

	m := &mountStore{StoreDir: storeDir, StateDir: t.TempDir()} // knows nothing of the derivation
	m.mount(t, "--substituters", cache, "--trusted-public-keys", pub)
	got, err := catFile(t, out+"/greeting")
	if err != nil || got != "from the cache\n" {
		t.Fatalf("cat of a cached path: %q, %v\n%s", got, err, m.log)
	}
	if st := m.status(t); st.Started < 1 {
		t.Errorf("no substitution started: %+v", st)
	}
	// The busybox tree it refers to came along, and runs.
	r := runCmd(t, os.Environ(), nil, out+"/busybox", "echo", "ran")
	if r.code != 0 || string(r.stdout) != "ran\n" {
		t.Errorf("running %s/busybox (its reference %s substituted too): exit %d, %q, %s", out, builder.BB, r.code, r.stdout, r.stderr)
	}
	if r := m.sfsResult(t, "verify", "--check-contents"); r.code != 0 {
		t.Errorf("storefs verify --check-contents: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestMountInterrupt: Ctrl-C on a cat waiting for a build ends the cat at
// once; the build stops when nothing else wants it, and completes when
// something does (storefs realise, or another cat that the kernel made
// wait behind the first).
func TestMountInterrupt(t *testing.T) {
	t.Run("alone", func(t *testing.T) {
		m := newMountStore(t, freshStoreDir(t))
		mark := marker()
		_, out := m.slowDerivation(t, "alone", mark, 60)
		m.mount(t)
		cat, _, done := startCat(t, out+"/greeting")
		waitBuilder(t, mark)
		interruptCat(t, cat, done)
		t0 := time.Now()
		waitNoBuilder(t, mark, 5*time.Second)
		t.Logf("the builder was gone %v after the interrupt (grace 500 ms)", time.Since(t0))
		if r := m.sfsResult(t, "query", "--hash", out); r.code == 0 {
			t.Errorf("%s is valid after its only requester was interrupted", out)
		}
		st := m.status(t)
		for deadline := time.Now().Add(5 * time.Second); len(st.Goals) != 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			st = m.status(t)
		}
		if len(st.Goals) != 0 || st.Mount.Interrupted != 1 {
			t.Errorf("after the interrupt: goals %v, %d lookups interrupted; want none, 1", st.Goals, st.Mount.Interrupted)
		}
	})
	t.Run("with realise", func(t *testing.T) {
		m := newMountStore(t, freshStoreDir(t))
		mark := marker()
		drv, out := m.slowDerivation(t, "with-realise", mark, 3)
		m.mount(t)
		cat, _, done := startCat(t, out+"/greeting")
		m.waitRunning(t)
		realiseDone := make(chan result, 1)
		go func() { realiseDone <- m.sfsResult(t, "realise", drv) }()
		// Once the daemon serves the request it wants the goal (within
		// the interrupted lookup's grace, if not at once).
		_, took := m.waitStatus(t, "the daemon to serve storefs realise", func(st mountStatus) bool { return st.Requests == 1 })
		t.Logf("the daemon served storefs realise %v after it started", took)
		interruptCat(t, cat, done)
		r := <-realiseDone
		if r.code != 0 || strings.TrimSpace(string(r.stdout)) != out {
			t.Fatalf("storefs realise: exit %d, %q, %s", r.code, r.stdout, r.stderr)
		}
		if got, err := catFile(t, out+"/greeting"); err != nil || got != "with-realise\n" {
			t.Errorf("cat after the build: %q, %v", got, err)
		}
		if st := m.status(t); st.Started != 1 {
			t.Errorf("%d builds started, want 1", st.Started)
		}
	})
	t.Run("with another cat", func(t *testing.T) {
		m := newMountStore(t, freshStoreDir(t))
		mark := marker()
		_, out := m.slowDerivation(t, "with-cat", mark, 3)
		m.mount(t)
		first, _, firstDone := startCat(t, out+"/greeting")
		m.waitRunning(t)
		second, secondOut, secondDone := startCat(t, out+"/greeting")
		// The kernel makes the second lookup of the name wait for the first.
		took := waitWchan(t, second.Process.Pid, "d_alloc_parallel")
		t.Logf("the second cat waited in the kernel behind the first %v after it started", took)
		interruptCat(t, first, firstDone)
		if err := waitDone(t, "the second cat", secondDone, 20*time.Second); err != nil || secondOut.String() != "with-cat\n" {
			t.Fatalf("the second cat: %v, %q\n%s", err, secondOut, m.log)
		}
		if st := m.status(t); st.Started != 1 {
			t.Errorf("%d builds started, want 1 (the build restarted after the interrupt)", st.Started)
		}
	})
}

// TestMountFailingBuild: a failing build makes cat fail with EIO, status
// tells why with the log's last lines, and a second cat fails fast.
func TestMountFailingBuild(t *testing.T) {
	m := newMountStore(t, freshStoreDir(t))
	_, out := m.derivation(t, "failing", "echo first log line; echo second log line >&2; sleep 1; exit 3")
	m.mount(t)
	r := runCmd(t, os.Environ(), nil, "sh", "-c", "cat "+out+"/greeting")
	if r.code == 0 || !strings.Contains(string(r.stderr), "Input/output error") {
		t.Fatalf("cat of a failing build: exit %d, stderr %q; want Input/output error", r.code, r.stderr)
	}
	st := m.status(t)
	if len(st.Failures) == 0 || st.Failures[0].Path != out ||
		!strings.Contains(st.Failures[0].Message, "first log line") || !strings.Contains(st.Failures[0].Message, "second log line") {
		t.Errorf("status --json does not tell why %s failed: %+v", out, st.Failures)
	}
	if text := string(m.sfs(t, "status")); !strings.Contains(text, "second log line") {
		t.Errorf("storefs status does not show the log's last lines:\n%s", text)
	}
	t0 := time.Now()
	_, err := os.ReadFile(out + "/greeting")
	took := time.Since(t0)
	if !errors.Is(err, syscall.EIO) {
		t.Errorf("second read: %v, want EIO", err)
	}
	if took > 200*time.Millisecond {
		t.Errorf("second read took %v; the build takes over 1 s and its failure is remembered", took)
	}
	t.Logf("the second read failed after %v", took)
	if st := m.status(t); st.Started != 1 {
		t.Errorf("%d builds started, want 1", st.Started)
	}
}

// TestMountCrash: SIGKILL of the daemon in the middle of a build; a new
// mount clears the stale one (ENOTCONN), shows no invalid path, verifies
// clean, and builds the path at the next lookup.
func TestMountCrash(t *testing.T) {
	m := newMountStore(t, freshStoreDir(t))
	mark := marker()
	drv, out := m.slowDerivation(t, "crash", mark, 2)
	m.mount(t)
	_, _, done := startCat(t, out+"/greeting")
	waitBuilder(t, mark)
	if err := m.proc.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	m.waitExit(t, 5*time.Second)
	if err := waitDone(t, "the cat of the crashed mount", done, 5*time.Second); err == nil {
		t.Errorf("the cat succeeded although the daemon was killed")
	}
	var fsst unix.Statfs_t
	if err := unix.Statfs(m.StoreDir, &fsst); !errors.Is(err, syscall.ENOTCONN) {
		t.Errorf("statfs of the store dir after the crash: %v, want ENOTCONN", err)
	}
	if _, err := os.ReadDir(m.StoreDir); !errors.Is(err, syscall.ENOTCONN) {
		t.Errorf("listing the store dir after the crash: %v, want ENOTCONN", err)
	}
	waitNoBuilder(t, mark, 5*time.Second)

	m.mount(t)
	if !strings.Contains(m.log.String(), "clearing the stale mount") {
		t.Errorf("the new mount did not say it cleared the stale mount:\n%s", m.log)
	}
	ents, err := os.ReadDir(m.StoreDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	want := []string{filepath.Base(m.BB), filepath.Base(drv)}
	if strings.Join(names, " ") != strings.Join(sortedNames(want...), " ") {
		t.Errorf("the store dir lists %v, want exactly the valid paths %v", names, sortedNames(want...))
	}
	if r := m.sfsResult(t, "verify", "--check-contents"); r.code != 0 {
		t.Errorf("storefs verify --check-contents: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if got, err := catFile(t, out+"/greeting"); err != nil || got != "crash\n" {
		t.Errorf("cat after the restart: %q, %v\n%s", got, err, m.log)
	}
}

// TestMountConcurrency: while one lookup waits for a slow build, lookups
// of other paths, unknown names and new builds, and listings, go on.
func TestMountConcurrency(t *testing.T) {
	m := newMountStore(t, freshStoreDir(t))
	mark := marker()
	_, slow := m.slowDerivation(t, "slow", mark, 6)
	_, quick := m.derivation(t, "quick", "mkdir $out; echo quick > $out/greeting")
	viaDaemon, _ := m.derivation(t, "via-daemon", "mkdir $out")
	other := strings.TrimSpace(string(m.sfs(t, "add", writeFile(t, t.TempDir(), "other", "other\n"))))
	m.mount(t)
	_, slowOut, slowDone := startCat(t, slow+"/greeting")
	m.waitRunning(t)
	t0 := time.Now()
	// A realisation through the daemon tells the mount what became valid;
	// that must not make later lookups wait for the slow one.
	m.sfs(t, "realise", viaDaemon)
	t.Logf("storefs realise through the daemon: done %v after the slow build started", time.Since(t0))
	check := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%s while a build runs: %v", what, err)
		}
		t.Logf("%s: done %v after the slow build started", what, time.Since(t0))
	}
	got, err := catFile(t, other)
	if err == nil && got != "other\n" {
		err = fmt.Errorf("read %q", got)
	}
	check("reading another valid path", err)
	_, err = os.Lstat(filepath.Join(m.StoreDir, "11111111111111111111111111111111-nothing"))
	if errors.Is(err, syscall.ENOENT) {
		err = nil
	}
	check("looking up an unknown name", err)
	_, err = os.ReadDir(m.StoreDir)
	check("listing the store dir", err)
	got, err = catFile(t, quick+"/greeting")
	if err == nil && got != "quick\n" {
		err = fmt.Errorf("read %q", got)
	}
	check("building and reading another path", err)
	if took := time.Since(t0); took > 4*time.Second {
		t.Errorf("the other operations took %v, as if they waited for the slow build", took)
	}
	if len(buildersWith(t, mark)) == 0 {
		t.Errorf("the slow build ended before the other operations did")
	}
	if err := waitDone(t, "the slow cat", slowDone, 30*time.Second); err != nil || slowOut.String() != "slow\n" {
		t.Errorf("the slow cat: %v, %q", err, slowOut)
	}
}

// TestMountUnmount: storefs umount and SIGTERM unmount cleanly, idle or
// while a lookup waits for a build (the lookup fails, the build stops).
func TestMountUnmount(t *testing.T) {
	for _, how := range []string{"umount", "SIGTERM"} {
		stop := func(t *testing.T, m *mountStore) {
			if how == "SIGTERM" {
				if err := m.proc.Process.Signal(syscall.SIGTERM); err != nil {
					t.Fatal(err)
				}
				return
			}
			if r := m.sfsResult(t, "umount"); r.code != 0 {
				t.Errorf("storefs umount: exit %d, %s", r.code, r.stderr)
			}
		}
		t.Run(how+" idle", func(t *testing.T) {
			m := newMountStore(t, freshStoreDir(t))
			m.mount(t)
			if _, err := os.Stat(m.BB + "/bin/sh"); err != nil {
				t.Fatal(err)
			}
			stop(t, m)
			if err := m.waitExit(t, 5*time.Second); err != nil {
				t.Errorf("storefs mount: %v\n%s", err, m.log)
			}
			if isMounted(m.StoreDir) {
				t.Errorf("%s is still mounted", m.StoreDir)
			}
		})
		t.Run(how+" during a build", func(t *testing.T) {
			m := newMountStore(t, freshStoreDir(t))
			mark := marker()
			_, out := m.slowDerivation(t, "busy", mark, 60)
			m.mount(t)
			_, _, done := startCat(t, out+"/greeting")
			waitBuilder(t, mark)
			t0 := time.Now()
			stop(t, m)
			if err := m.waitExit(t, 5*time.Second); err != nil {
				t.Errorf("storefs mount: %v\n%s", err, m.log)
			}
			if err := waitDone(t, "the waiting cat", done, 5*time.Second); err == nil {
				t.Errorf("the waiting cat succeeded")
			}
			t.Logf("unmounted %v after the request", time.Since(t0))
			if isMounted(m.StoreDir) {
				t.Errorf("%s is still mounted", m.StoreDir)
			}
			waitNoBuilder(t, mark, 5*time.Second)
			if r := m.sfsResult(t, "verify"); r.code != 0 {
				t.Errorf("storefs verify: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
		})
	}
	t.Run("umount by someone else", func(t *testing.T) {
		m := newMountStore(t, freshStoreDir(t))
		m.mount(t)
		if err := unix.Unmount(m.StoreDir, 0); err != nil {
			t.Fatal(err)
		}
		if err := m.waitExit(t, 5*time.Second); err != nil || !strings.Contains(m.log.String(), "was unmounted") {
			t.Errorf("storefs mount after an outside umount: %v\n%s", err, m.log)
		}
	})
	t.Run("umount of nothing", func(t *testing.T) {
		m := &mountStore{StoreDir: freshStoreDir(t), StateDir: t.TempDir()}
		os.MkdirAll(m.StoreDir, 0o755)
		if r := m.sfsResult(t, "umount"); r.code != 1 || !strings.Contains(string(r.stderr), "not a storefs mount") {
			t.Errorf("storefs umount of an unmounted dir: exit %d, %s", r.code, r.stderr)
		}
	})
}

// TestMountListing: the store dir lists exactly the valid paths, though
// the kernel keeps its listing: a path a lookup built shows at once, one
// realised through the daemon or added by another process within a
// second or two.
func TestMountListing(t *testing.T) {
	m := newMountStore(t, freshStoreDir(t))
	drv, out := m.derivation(t, "listed", "mkdir $out; echo listed > $out/greeting")
	drv2, out2 := m.derivation(t, "realised", "mkdir $out")
	base := func(ps ...string) []string {
		var out []string
		for _, p := range ps {
			out = append(out, filepath.Base(p))
		}
		return out
	}
	m.mount(t)
	m.waitListed(t, 0, base(m.BB, drv, drv2)...)
	m.listing(t) // from the kernel's cache now
	if got, err := catFile(t, out+"/greeting"); err != nil || got != "listed\n" {
		t.Fatalf("cat: %q, %v", got, err)
	}
	took := m.waitListed(t, time.Second, base(m.BB, drv, drv2, out)...)
	t.Logf("a path built by a lookup was listed after %v", took)
	m.sfs(t, "realise", drv2)
	took = m.waitListed(t, 2*time.Second, base(m.BB, drv, drv2, out, out2)...)
	t.Logf("a path realised through the daemon was listed after %v", took)
	added := strings.TrimSpace(string(m.sfs(t, "add", writeFile(t, t.TempDir(), "added", "added\n"))))
	took = m.waitListed(t, 3*time.Second, base(m.BB, drv, drv2, out, out2, added)...)
	t.Logf("a path added by another process was listed after %v", took)
}
