package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// benchBuild runs b.N trivial builds (`echo hi > $out`), each with a fresh
// output path, and reports the time of one build end to end.
func benchBuild(b *testing.B, network bool, extraInputs int, maxProcs int) {
	bd := newBuild(b, "echo hi > $out")
	bd.Network = network
	bd.MaxProcesses = maxProcs
	for i := range extraInputs {
		host := filepath.Join(bd.dir, "inputs", fmt.Sprint(i))
		if err := os.Mkdir(host, 0o755); err != nil {
			b.Fatal(err)
		}
		bd.Inputs = append(bd.Inputs, Mount{Host: host, Path: fmt.Sprintf("%s/%032d-in", storeDir, i)})
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bd.Outputs[0].Host = filepath.Join(bd.dir, fmt.Sprint("out", i))
		res, err := Run(context.Background(), bd.Spec)
		if err != nil || !res.Success() {
			b.Fatalf("build %d: %v, %+v\n%s", i, err, res, bd.log)
		}
	}
}

func BenchmarkTrivialBuild(b *testing.B)           { benchBuild(b, false, 0, 0) }
func BenchmarkTrivialBuildNetwork(b *testing.B)    { benchBuild(b, true, 0, 0) }
func BenchmarkTrivialBuild1000Inputs(b *testing.B) { benchBuild(b, false, 1000, 0) }

// With a process limit: a cgroup made and removed per build where the
// host allows one.
func BenchmarkTrivialBuildPidsMax(b *testing.B) { benchBuild(b, false, 0, 4096) }

// TestLatency reports how long a trivial build takes end to end (Run's
// whole call: scratch dir, namespaces, mounts, exec, wait, cleanup). It
// fails only if a build takes absurdly long: the machine may be loaded.
func TestLatency(t *testing.T) {
	bd := newBuild(t, "echo hi > $out")
	const n = 20
	var took []time.Duration
	for i := range n {
		bd.Outputs[0].Host = filepath.Join(bd.dir, fmt.Sprint("out", i))
		start := time.Now()
		res, err := Run(context.Background(), bd.Spec)
		took = append(took, time.Since(start))
		if err != nil || !res.Success() {
			t.Fatalf("build %d: %v, %+v\n%s", i, err, res, bd.log)
		}
	}
	slices.Sort(took)
	t.Logf("%d trivial builds: min %v, median %v, max %v", n, took[0], took[n/2], took[n-1])
	if took[n/2] > 2*time.Second {
		t.Errorf("median build took %v", took[n/2])
	}
}
