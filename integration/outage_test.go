package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"storefs/internal/loopback"
	"storefs/internal/nginxtest"
)

const outageExpr = `{
  cached = mk { name = "cached"; args = ["-c" "echo from the cache > $out"]; };
  buildable = mk { name = "buildable"; args = ["-c" "echo built here > $out"]; };
}`

// Caches that are down or never answer cost a realisation seconds, with
// the default settings: a buildable output is built, a path only a cache
// has is unknown; a cache that comes back (real nginx serving a cache
// nix copy made) is used by the next process.
func TestRealiseWithCachesDown(t *testing.T) {
	e := newBuildEnv(t)
	drvs := e.instantiate(t, outageExpr, "cached", "buildable")
	cachedOut := e.n.line(t, "nix-store", "-r", drvs[0])
	cache, pk := e.signedCache(t, cachedOut)
	down := loopback.FreeAddr(t)
	silent, _ := loopback.Silent(t)

	timedRealise := func(t *testing.T, what string, args ...string) (result, time.Duration) {
		t.Helper()
		start := time.Now()
		r := e.sfsResult(t, append([]string{"realise", "--trusted-public-keys", pk}, args...)...)
		el := time.Since(start)
		t.Logf("%s: exit %d in %v\n%s", what, r.code, el.Round(time.Millisecond), r.stderr)
		return r, el
	}
	const bound = 30 * time.Second // loose: the machine is shared; the default query timeout is 5 s

	for _, c := range []struct{ name, url string }{{"refused", "http://" + down}, {"never-answers", silent}} {
		t.Run("build/"+c.name, func(t *testing.T) {
			e.state = t.TempDir()
			e.sfs(t, "add", busyboxTree(t))
			e.addDrvs(t, drvs[1])
			r, el := timedRealise(t, "buildable output, cache "+c.name, "--substituters", c.url, drvs[1])
			if r.code != 0 || !strings.Contains(string(r.stderr), "building") {
				t.Errorf("exit %d, want a build", r.code)
			}
			if !strings.Contains(string(r.stderr), "is not used") {
				t.Errorf("no warning that the cache is not used")
			}
			if el > bound {
				t.Errorf("took %v", el)
			}
		})
	}

	t.Run("down-then-back", func(t *testing.T) {
		r, el := timedRealise(t, "cached path, cache down", "--substituters", "http://"+down, cachedOut)
		if r.code == 0 || el > bound {
			t.Errorf("exit %d after %v, want a failure within seconds", r.code, el)
		}
		e.checkInvalid(t, cachedOut)
		url := nginxtest.ServeAt(t, cache, down)
		r, _ = timedRealise(t, "cached path, cache back (nginx)", "--substituters", url, cachedOut)
		if r.code != 0 || strings.TrimSpace(string(r.stdout)) != cachedOut {
			t.Errorf("exit %d, stdout %q", r.code, r.stdout)
		}
		e.checkVerify(t)
	})
}

// A narinfo signed by a trusted key with a CA line added after signing
// (the signature does not cover it): the path is substituted and recorded
// without that content address, and verify finds nothing wrong.
func TestUnsignedCAIgnored(t *testing.T) {
	e := newBuildEnv(t)
	drv := e.instantiate(t, outageExpr, "cached")[0]
	out := e.n.line(t, "nix-store", "-r", drv)
	cache, pk := e.signedCache(t, out)
	file := filepath.Join(cache, strings.TrimPrefix(out, storeDir+"/")[:32]+".narinfo")
	data := mustRead(t, file)
	if err := os.WriteFile(file, append(data, "CA: fixed:r:sha256:"+strings.Repeat("1", 52)+"\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	r := e.sfsResult(t, "realise", "--substituters", "file://"+cache, "--trusted-public-keys", pk, out)
	t.Logf("exit %d\n%s", r.code, r.stderr)
	if r.code != 0 || !strings.Contains(string(r.stderr), "ignoring its CA field") {
		t.Fatalf("exit %d, want success and a warning about the CA field", r.code)
	}
	if got := e.sfsInfos(t, []string{out})[out]; got.CA != "" {
		t.Errorf("recorded with CA %q", got.CA)
	}
	e.checkVerify(t)
}
