package goals

import (
	"context"
	"fmt"
	"math/rand"
	"runtime"
	"testing"
	"time"

	"storefs/store/storepath"
)

// BenchmarkGoalMemory measures what a goal costs while a 5,000-node graph
// is in flight: every goal started, the leaves' builds blocked, the rest
// waiting on their inputs. It reports heap and stack bytes per goal.
func BenchmarkGoalMemory(b *testing.B) {
	const n = 5000
	t := &testing.T{}
	e := newEnv(t)
	e.b.gate = make(chan struct{})
	e.b.started = make(chan storepath.Path, n)
	rng := rand.New(rand.NewSource(1))
	var nodes []storepath.Path
	leaves := 0
	for i := 0; i < n; i++ {
		var ins []storepath.Path
		for j := 0; j < 3 && len(nodes) > 0; j++ {
			if rng.Intn(3) != 0 {
				ins = append(ins, nodes[rng.Intn(len(nodes))])
			}
		}
		ins = dedup(ins)
		if len(ins) == 0 {
			leaves++
		}
		nodes = append(nodes, e.drv(t, fmt.Sprintf("n%d", i), ins, map[string]string{"wait": "1"}))
	}
	// One top that wants every node.
	top := e.drv(t, "top", nodes, nil)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	w := e.worker(Options{MaxJobs: n})
	errc := make(chan error, 1)
	go func() { _, err := w.BuildDerivation(context.Background(), top); errc <- err }()
	for i := 0; i < leaves; i++ {
		select {
		case <-e.b.started:
		case <-time.After(60 * time.Second):
			b.Fatalf("only %d of %d leaves started", i, leaves)
		}
	}
	runtime.GC()
	var during runtime.MemStats
	runtime.ReadMemStats(&during)
	goals := len(w.Running())
	close(e.b.gate)
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	w.Wait()
	heap := float64(during.HeapInuse-before.HeapInuse) / float64(goals)
	stack := float64(during.StackInuse-before.StackInuse) / float64(goals)
	b.ReportMetric(heap, "heap-B/goal")
	b.ReportMetric(stack, "stack-B/goal")
	b.ReportMetric(float64(goals), "goals")
	b.Logf("%d goals for %d derivations: %.0f B heap + %.0f B stack per goal, %d goroutines", goals, n+1, heap, stack, runtime.NumGoroutine())
}
