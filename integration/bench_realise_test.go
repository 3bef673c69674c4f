package integration

import (
	"fmt"
	"os"
	"os/exec"
	"sort"
	"testing"
	"time"
)

// storefs realise against nix-store --realise on the same derivations,
// freshly instantiated, in the same run; each prints storefs/nix.

// timeRun runs a command and returns how long it took; it must succeed.
func timeRun(b *testing.B, env []string, name string, args ...string) time.Duration {
	b.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = env
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(t0)
	if err != nil {
		b.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return d
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// BenchmarkRealiseTrivial is the latency of one trivial build: the median
// of 9 builds each, alternating (goal: storefs at most half of Nix).
func BenchmarkRealiseTrivial(b *testing.B) {
	e := newBuildEnv(b)
	const n = 9
	for b.Loop() {
		body := "{\n"
		var attrs []string
		nonce := time.Now().UnixNano()
		for i := range n {
			for _, who := range []string{"nix", "sfs"} {
				a := fmt.Sprintf("%s%d", who, i)
				body += fmt.Sprintf("  %s = mk { name = \"trivial-%s-%d\"; args = [\"-c\" \"echo hello > $out\"]; };\n", a, a, nonce)
				attrs = append(attrs, a)
			}
		}
		drvs := e.instantiate(b, body+"}", attrs...)
		e.addDrvs(b, drvs...)
		var nixT, sfsT []time.Duration
		for i := range n {
			nixT = append(nixT, timeRun(b, e.n.env, "nix-store", "--realise", drvs[2*i]))
			sfsT = append(sfsT, timeRun(b, os.Environ(), storefsBin, "--store-dir", storeDir, "--state-dir", e.state, "realise", drvs[2*i+1]))
		}
		nm, sm := median(nixT), median(sfsT)
		b.ReportMetric(sm.Seconds()/nm.Seconds(), "storefs/nix")
		b.Logf("one trivial build, median of %d: nix-store --realise %v, storefs realise %v, ratio storefs/nix %.2f (goal <= 0.5)",
			n, nm.Round(time.Millisecond), sm.Round(time.Millisecond), sm.Seconds()/nm.Seconds())
	}
}

// BenchmarkRealiseDAG builds a 200-node DAG with 2 jobs (goal: storefs
// faster than Nix).
func BenchmarkRealiseDAG(b *testing.B) {
	e := newBuildEnv(b)
	for b.Loop() {
		nonce := time.Now().UnixNano()
		nixDrv := e.instantiate(b, dagExpr(200, fmt.Sprintf("nix%d", nonce), 0), "root")
		sfsDrv := e.instantiate(b, dagExpr(200, fmt.Sprintf("sfs%d", nonce), 0), "root")
		e.addDrvs(b, sfsDrv...)
		nixT := timeRun(b, e.n.env, "nix-store", "--realise", "--max-jobs", "2", nixDrv[0])
		sfsT := timeRun(b, os.Environ(), storefsBin, "--store-dir", storeDir, "--state-dir", e.state, "realise", "--max-jobs", "2", sfsDrv[0])
		b.ReportMetric(sfsT.Seconds()/nixT.Seconds(), "storefs/nix")
		b.Logf("200-node DAG, 2 jobs: nix-store --realise %v, storefs realise %v, ratio storefs/nix %.2f (goal < 1)",
			nixT.Round(time.Millisecond), sfsT.Round(time.Millisecond), sfsT.Seconds()/nixT.Seconds())
	}
}
