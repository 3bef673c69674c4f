package integration

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// wantedExpr: a derivation with two outputs, one whose cache copy is
// corrupted, and a build that outlives a garbage collection.
const wantedExpr = `rec {
  two = mk { name = "two"; outputs = ["out" "dev"]; args = ["-c" "mkdir $out $dev; echo out > $out/f; echo dev > $dev/f"]; };
  corrupt = mk { name = "corrupt"; args = ["-c" "echo substitute me > $out"]; };
  gcIn = mk { name = "gc-in"; args = ["-c" "echo input > $out"]; };
  gcTop = mk { name = "gc-top"; args = ["-c" "sleep 3; echo ${gcIn} > $out; cat ${gcIn} >> $out"]; };
}`

// signedCache copies paths from Nix's store into a file:// cache without
// compression, signed; it returns the cache dir and the public key.
func (e *buildEnv) signedCache(t *testing.T, paths ...string) (string, string) {
	t.Helper()
	sk, pk := substNixKey(t, e.n, "wanted-1")
	cache := filepath.Join(t.TempDir(), "cache")
	e.n.run(t, nil, "nix", append([]string{"copy", "--to", "file://" + cache + "?compression=none&secret-key=" + sk}, paths...)...)
	return cache, pk
}

// A cache that has out but not dev: drv!out and a lookup of out's path
// substitute out and build nothing; dev stays invalid.
func TestWantedOutputsSubstituted(t *testing.T) {
	e := newBuildEnv(t)
	drv := e.instantiate(t, wantedExpr, "two")[0]
	var out, dev string
	for _, p := range strings.Fields(e.n.line(t, "nix-store", "-r", drv)) {
		if strings.HasSuffix(p, "-dev") {
			dev = p
		} else {
			out = p
		}
	}
	cache, pk := e.signedCache(t, out)
	subst := []string{"--substituters", "file://" + cache, "--trusted-public-keys", pk}

	for _, how := range []struct{ name, arg string }{{"drv!out", drv + "!out"}, {"output path", out}} {
		t.Run(how.name, func(t *testing.T) {
			e.state = t.TempDir()
			e.sfs(t, "add", busyboxTree(t))
			e.addDrvs(t, drv)
			r := e.sfsResult(t, append([]string{"realise"}, append(subst, how.arg)...)...)
			if r.code != 0 || strings.TrimSpace(string(r.stdout)) != out {
				t.Fatalf("realise %s: exit %d, stdout %q\n%s", how.arg, r.code, r.stdout, r.stderr)
			}
			if strings.Contains(string(r.stderr), "building") || !strings.Contains(string(r.stderr), "substituted "+out) {
				t.Errorf("realise %s did not substitute out alone:\n%s", how.arg, r.stderr)
			}
			e.checkInvalid(t, dev)
			if got, want := e.sfsInfos(t, []string{out})[out], e.nixInfos(t, []string{out})[out]; got.NarHash != want.NarHash || got.NarSize != want.NarSize {
				t.Errorf("out: storefs %+v, Nix %+v", got, want)
			}
			e.checkVerify(t)
		})
	}
}

// A cache whose NAR is corrupt: without --fallback the realisation fails
// naming the corruption and builds nothing; with it, storefs builds the
// output Nix builds.
func TestFallbackOnCorruptNAR(t *testing.T) {
	e := newBuildEnv(t)
	drv := e.instantiate(t, wantedExpr, "corrupt")[0]
	out := e.n.line(t, "nix-store", "-r", drv)
	cache, pk := e.signedCache(t, out)
	nars, err := filepath.Glob(filepath.Join(cache, "nar", "*.nar"))
	if err != nil || len(nars) != 1 {
		t.Fatalf("NARs in the cache: %v %v", nars, err)
	}
	data := mustRead(t, nars[0])
	i := strings.Index(string(data), "substitute me")
	data[i] = 'S' // same size, other contents
	if err := os.WriteFile(nars[0], data, 0o644); err != nil {
		t.Fatal(err)
	}
	e.addDrvs(t, drv)
	subst := []string{"realise", "--substituters", "file://" + cache, "--trusted-public-keys", pk}

	r := e.sfsResult(t, append(subst, drv)...)
	if r.code == 0 || !strings.Contains(string(r.stderr), "mismatch") || !strings.Contains(string(r.stderr), "--fallback") {
		t.Fatalf("without --fallback: exit %d, want a failure naming the mismatch and --fallback:\n%s", r.code, r.stderr)
	}
	if strings.Contains(string(r.stderr), "building") {
		t.Errorf("built without --fallback:\n%s", r.stderr)
	}
	e.checkInvalid(t, out)

	r = e.sfsResult(t, append(subst, "--fallback", drv)...)
	if r.code != 0 || strings.TrimSpace(string(r.stdout)) != out || !strings.Contains(string(r.stderr), "building") {
		t.Fatalf("with --fallback: exit %d, stdout %q\n%s", r.code, r.stdout, r.stderr)
	}
	e.compareWithNix(t, drv)
}

// storefs gc while a build runs deletes none of its inputs: the build
// succeeds with the output Nix builds, and only afterwards are the inputs
// garbage.
func TestGCDuringBuild(t *testing.T) {
	e := newBuildEnv(t)
	drvs := e.instantiate(t, wantedExpr, "gcIn", "gcTop")
	top := drvs[1]
	e.n.line(t, "nix-store", "-r", top)
	e.addDrvs(t, top)
	cmd := exec.Command(storefsBin, "--store-dir", storeDir, "--state-dir", e.state, "realise", top)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout strings.Builder
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		if strings.HasPrefix(sc.Text(), "building "+top) {
			break
		}
	}
	t0 := time.Now()
	gcOut := e.sfs(t, "gc")
	t.Logf("gc during the build took %v", time.Since(t0))
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("realise %s with a gc during its build: %v\n%s", top, err, log.String())
	}
	// Everything in the store is in the build's closure.
	if len(gcOut) != 0 {
		t.Errorf("gc deleted during the build of %s:\n%s", top, gcOut)
	}
	e.compareWithNix(t, top)
	e.checkVerify(t)
	// Afterwards the input is garbage like anything else unrooted.
	if gcOut := string(e.sfs(t, "gc")); !strings.Contains(gcOut, "gc-in") {
		t.Errorf("gc after the build kept the input:\n%s", gcOut)
	}
}
