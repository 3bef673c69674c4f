package derivation

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"storefs/store/storepath"
)

// newDrv makes an input-addressed derivation without output paths.
func newDrv(name string, inputs map[storepath.Path][]string, outputs ...string) *Derivation {
	d := &Derivation{
		Outputs:   map[string]Output{},
		InputDrvs: inputs,
		System:    "x86_64-linux",
		Builder:   "/bin/sh",
		Args:      []string{"-c", "echo " + name},
		Env:       map[string]string{"name": name},
	}
	if d.InputDrvs == nil {
		d.InputDrvs = map[storepath.Path][]string{}
	}
	for _, o := range outputs {
		d.Outputs[o] = Output{}
	}
	return d
}

// lattice makes levels of two derivations each, every one using both of the
// level below: 2^levels routes lead from the top to the bottom.
func lattice(t testing.TB, levels int) (top *Derivation, byPath map[storepath.Path]*Derivation) {
	byPath = map[storepath.Path]*Derivation{}
	h := NewHasher(testDir, func(p storepath.Path) (*Derivation, error) {
		if d, ok := byPath[p]; ok {
			return d, nil
		}
		return nil, fmt.Errorf("no derivation %s", p)
	})
	var below []storepath.Path
	for l := 0; l < levels; l++ {
		var here []storepath.Path
		for i := 0; i < 2; i++ {
			inputs := map[storepath.Path][]string{}
			for _, p := range below {
				inputs[p] = []string{"out"}
			}
			d := newDrv(fmt.Sprintf("l%d-%d", l, i), inputs, "out")
			if err := h.Fill(d); err != nil {
				t.Fatal(err)
			}
			p, err := d.Path(testDir)
			if err != nil {
				t.Fatal(err)
			}
			byPath[p] = d
			here = append(here, p)
		}
		below = here
	}
	inputs := map[storepath.Path][]string{}
	for _, p := range below {
		inputs[p] = []string{"out"}
	}
	top = newDrv("top", inputs, "out", "dev")
	return top, byPath
}

func TestHasherMemoises(t *testing.T) {
	const levels = 60
	top, byPath := lattice(t, levels)
	var mu sync.Mutex
	loads := map[storepath.Path]int{}
	h := NewHasher(testDir, func(p storepath.Path) (*Derivation, error) {
		mu.Lock()
		loads[p]++
		mu.Unlock()
		return byPath[p], nil
	})
	start := time.Now()
	if err := h.Fill(top); err != nil {
		t.Fatal(err)
	}
	if err := h.Check(top); err != nil {
		t.Fatal(err)
	}
	t.Logf("hashed a %d-node lattice with 2^%d routes in %v", len(byPath), levels, time.Since(start))
	if len(loads) != 2*levels {
		t.Errorf("loaded %d derivations, want %d", len(loads), 2*levels)
	}
	for p, n := range loads {
		if n != 1 {
			t.Errorf("%s loaded %d times, want once", p, n)
		}
	}
	if top.Outputs["out"].Path.Name() != "top" || top.Outputs["dev"].Path.Name() != "top-dev" {
		t.Errorf("output names: %v", top.Outputs)
	}
	// Concurrent callers agree.
	h2 := NewHasher(testDir, func(p storepath.Path) (*Derivation, error) { return byPath[p], nil })
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			paths, err := h2.OutputPaths(top)
			if err == nil && paths["out"] != top.Outputs["out"].Path {
				err = fmt.Errorf("concurrent OutputPaths gave %s, want %s", paths["out"], top.Outputs["out"].Path)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestHasherRefusesCycle(t *testing.T) {
	self, _ := storepath.ParseBase("00000000000000000000000000000000-loop.drv")
	loop := newDrv("loop", map[storepath.Path][]string{self: {"out"}}, "out")
	loop.Env["out"] = ""
	h := NewHasher(testDir, func(storepath.Path) (*Derivation, error) { return loop, nil })
	_, err := h.OutputPaths(loop)
	if err == nil || !strings.Contains(err.Error(), "depends on itself") {
		t.Errorf("cycle: %v", err)
	}
}

func BenchmarkHashLattice(b *testing.B) {
	top, byPath := lattice(b, 100)
	resolve := func(p storepath.Path) (*Derivation, error) { return byPath[p], nil }
	for b.Loop() {
		if _, err := NewHasher(testDir, resolve).OutputPaths(top); err != nil {
			b.Fatal(err)
		}
	}
}
