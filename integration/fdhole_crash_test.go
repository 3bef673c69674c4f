package integration

import (
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestFixedOutputCopyKilled kills storefs realise at random moments of a
// fixed-output build with a large output (building, copying it into fresh
// files, hashing, registering); after every kill verify --check-contents
// must be clean, and at the end the build succeeds.
func TestFixedOutputCopyKilled(t *testing.T) {
	e := newBuildEnv(t)
	const size = 40 << 20
	drvs := e.instantiate(t, fmt.Sprintf(`{
  big = mk { name = "big-fixed-%s"; args = ["-c" "head -c %d /dev/zero > $out"];
    outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = "%s"; };
}`, randomTag(t), size, sha256Hex(strings.Repeat("\x00", size))), "big")
	e.addDrvs(t, drvs...)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	// How long one build takes here, to spread the kills over it.
	start := time.Now()
	e.sfs(t, "realise", drvs[0])
	took := time.Since(start)
	t.Logf("one build took %v", took)
	out := e.outputsOf(t, drvs[0])[0]
	killed := 0
	for trial := range 8 {
		if r := e.sfsResult(t, "delete", out); r.code != 0 && !strings.Contains(string(r.stderr), "not a valid path") {
			t.Fatalf("delete: exit %d\n%s", r.code, r.stderr)
		}
		cmd := exec.Command(storefsBin, "--store-dir", storeDir, "--state-dir", e.state, "realise", drvs[0])
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		at := time.Duration(rng.Int64N(int64(took)))
		time.Sleep(at)
		cmd.Process.Kill()
		if err := cmd.Wait(); err != nil {
			killed++
		}
		if r := e.sfsResult(t, "verify", "--check-contents"); r.code != 0 {
			t.Fatalf("trial %d, killed after %v: storefs verify --check-contents: exit %d\n%s", trial, at, r.code, r.stderr)
		}
	}
	t.Logf("%d of 8 realises killed before they ended", killed)
	e.sfs(t, "realise", drvs[0])
	if got := e.backingContent(t, out); len(got) != size || strings.Trim(got, "\x00") != "" {
		t.Errorf("the output holds %d bytes, want %d zeros", len(got), size)
	}
	e.checkVerify(t)
}
