package goals

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"storefs/store"
	"storefs/store/derivation"
	"storefs/store/nar"
	"storefs/store/nixhash"
	"storefs/store/storepath"
)

// fakeBuilder writes each output as a file holding the derivation's name
// and registers it; it fails derivations whose env has fail=1 and blocks
// those with block=1 until their context ends. It records how many builds
// ran at once and how often each derivation was built.
type fakeBuilder struct {
	s *store.Store

	mu       sync.Mutex
	running  int
	maxRun   int
	builds   map[storepath.Path]int
	delay    time.Duration
	stopGate chan struct{}       // if non-nil, a blocked build stops only once it is closed
	gate     chan struct{}       // if non-nil, every build waits for it before it ends
	started  chan storepath.Path // if non-nil, told of each build start
}

// CanBuild refuses derivations whose env has system=elsewhere.
func (b *fakeBuilder) CanBuild(drv storepath.Path, d *derivation.Derivation) error {
	if d.Env["system"] == "elsewhere" {
		return fmt.Errorf("%s: not for this machine", b.s.Print(drv))
	}
	return nil
}

func (b *fakeBuilder) Build(ctx context.Context, drv storepath.Path, d *derivation.Derivation, opts BuildOptions) error {
	b.mu.Lock()
	b.running++
	b.maxRun = max(b.maxRun, b.running)
	b.mu.Unlock()
	// running counts "builder processes": they end before registration,
	// when the slot is given back, as with a real builder.
	exited := sync.OnceFunc(func() {
		b.mu.Lock()
		b.running--
		b.mu.Unlock()
		if opts.BuilderDone != nil {
			opts.BuilderDone()
		}
	})
	// builds counts builds that ran to an end, not cancelled ones.
	defer func() {
		exited()
		b.mu.Lock()
		if ctx.Err() == nil {
			b.builds[drv]++
		}
		b.mu.Unlock()
	}()
	if b.started != nil {
		b.started <- drv
	}
	if d.Env["block"] == "1" {
		<-ctx.Done()
		if b.stopGate != nil {
			<-b.stopGate // as a real builder takes time to die
		}
		return ctx.Err()
	}
	if d.Env["wait"] == "1" {
		select {
		case <-b.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	select {
	case <-time.After(b.delay):
	case <-ctx.Done():
		return ctx.Err()
	}
	exited()
	if d.Env["fail"] == "1" {
		return &BuildError{Drv: b.s.Print(drv), Status: StatusBuildFailed, Message: "builder exited with code 1", LogTail: []string{"boom"}}
	}
	var regs []store.Registration
	for id, o := range d.Outputs {
		reg, cleanup, err := fileRegistration(b.s, o.Path, d.Name()+" "+id)
		if err != nil {
			return err
		}
		defer cleanup()
		reg.Info.Deriver = drv
		regs = append(regs, reg)
	}
	return b.s.Register(regs...)
}

// count is how often drv was built to an end.
func (b *fakeBuilder) count(drv storepath.Path) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.builds[drv]
}

// maxRunning is the most builders that ran at once.
func (b *fakeBuilder) maxRunning() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.maxRun
}

// fileRegistration makes the contents of p a file holding text, in the
// store's scratch space, and its Registration (no references, no
// deriver); cleanup removes the scratch.
func fileRegistration(s *store.Store, p storepath.Path, text string) (reg store.Registration, cleanup func(), err error) {
	tmp, err := s.NewTemp()
	if err != nil {
		return reg, nil, err
	}
	cleanup = func() { os.RemoveAll(tmp) }
	f := filepath.Join(tmp, "out")
	if err := os.WriteFile(f, []byte(text), 0o444); err != nil {
		cleanup()
		return reg, nil, err
	}
	h := nixhash.SHA256.New()
	cw := &counter{w: h}
	if err := nar.Dump(cw, f); err != nil {
		cleanup()
		return reg, nil, err
	}
	info := store.PathInfo{Path: p, NarHash: nixhash.FromHasher(nixhash.SHA256, h), NarSize: cw.n}
	return store.Registration{Info: info, Contents: f}, cleanup, nil
}

type counter struct {
	w interface{ Write([]byte) (int, error) }
	n uint64
}

func (c *counter) Write(p []byte) (int, error) { c.n += uint64(len(p)); return c.w.Write(p) }

type testEnv struct {
	s *store.Store
	b *fakeBuilder

	mu      sync.Mutex
	workers []*Worker // waited for before the store is checked
}

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	s, err := store.Open("/store", t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{s: s, b: &fakeBuilder{s: s, builds: map[storepath.Path]int{}}}
	t.Cleanup(func() {
		// Goals a test gave up on may still be registering.
		e.mu.Lock()
		for _, w := range e.workers {
			w.Wait()
		}
		e.mu.Unlock()
		probs, err := s.Check(store.CheckOptions{Contents: true})
		if err != nil {
			t.Error(err)
		}
		for _, p := range probs {
			t.Errorf("check: %s", p)
		}
		s.Close()
	})
	return e
}

// drv adds a derivation named name with the given inputs and extra env.
func (e *testEnv) drv(t *testing.T, name string, inputs []storepath.Path, env map[string]string) storepath.Path {
	t.Helper()
	return e.drvWith(t, name, []string{"out"}, inputs, env)
}

// drvWith adds a derivation with the given outputs.
func (e *testEnv) drvWith(t *testing.T, name string, outputs []string, inputs []storepath.Path, env map[string]string) storepath.Path {
	t.Helper()
	d := &derivation.Derivation{
		Outputs:   map[string]derivation.Output{},
		InputDrvs: map[storepath.Path][]string{},
		System:    "x86_64-linux",
		Builder:   "/fake",
		Env:       map[string]string{"name": name},
	}
	for _, id := range outputs {
		d.Outputs[id] = derivation.Output{}
		d.Env[id] = ""
	}
	for _, in := range inputs {
		d.InputDrvs[in] = []string{"out"}
	}
	for k, v := range env {
		d.Env[k] = v
	}
	info, err := e.s.AddDerivation(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	return info.Path
}

func (e *testEnv) worker(opts Options) *Worker {
	w := New(e.s, e.b, nil, opts)
	e.mu.Lock()
	e.workers = append(e.workers, w)
	e.mu.Unlock()
	return w
}

func (e *testEnv) output(t *testing.T, drv storepath.Path) storepath.Path {
	t.Helper()
	outs, err := e.s.DerivationOutputs(drv)
	if err != nil {
		t.Fatal(err)
	}
	return outs["out"]
}

// TestOneGoalPerPath: concurrent requesters of one derivation, some by
// an output's path and some by the .drv, share its goals: one derivation
// goal per set of wanted outputs, one build goal, one build. The build
// cannot end before every requester is in.
func TestOneGoalPerPath(t *testing.T) {
	const n = 10
	e := newEnv(t)
	e.b.gate = make(chan struct{})
	openGate := opener(t, e.b.gate)
	a := e.drv(t, "a", nil, map[string]string{"wait": "1"})
	out := e.output(t, a)
	w := e.worker(Options{MaxJobs: 4})
	var mu sync.Mutex
	starts, requests := map[string]int{}, 0
	w.onWant = func(key string, started bool) {
		mu.Lock()
		defer mu.Unlock()
		if started {
			starts[key]++
		}
		if strings.HasPrefix(key, "drv:") {
			if requests++; requests == n {
				openGate()
			}
		}
	}
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if i%2 == 0 {
				err = w.Realise(context.Background(), out)
			} else {
				_, err = w.BuildDerivation(context.Background(), a)
			}
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	want := map[string]int{wantedKey(a, nil): 1, wantedKey(a, []string{"out"}): 1, "build:" + a.Base(): 1}
	if fmt.Sprint(starts) != fmt.Sprint(want) {
		t.Errorf("goals started: %v, want %v", starts, want)
	}
	if n := e.b.count(a); n != 1 {
		t.Errorf("built %d times, want 1", n)
	}
}

// TestGCDuringBuild: a collection while a build runs keeps the build's
// .drv, its inputs (the input derivation's output and its .drv) and what
// they refer to; once the build is over they are garbage again.
func TestGCDuringBuild(t *testing.T) {
	e := newEnv(t)
	e.b.gate = make(chan struct{})
	openGate := opener(t, e.b.gate)
	e.b.started = make(chan storepath.Path, 2)
	in := e.drv(t, "in", nil, nil)
	top := e.drv(t, "top", []storepath.Path{in}, map[string]string{"wait": "1"})
	w := e.worker(Options{MaxJobs: 1})
	errc := make(chan error)
	go func() { _, err := w.BuildDerivation(context.Background(), top); errc <- err }()
	for p := range e.b.started {
		if p == top {
			break
		}
	}
	res, err := e.s.GC(context.Background(), store.GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []storepath.Path{top, in, e.output(t, in)} {
		if ok, _ := e.s.IsValid(p); !ok {
			t.Errorf("%s deleted by a collection during the build (deleted %v)", p, res.Deleted)
		}
	}
	openGate()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	w.Wait()
	res, err = e.s.GC(context.Background(), store.GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Deleted) != 4 {
		t.Errorf("after the build, a collection deleted %v; want both .drv files and both outputs", res.Deleted)
	}
}

func TestFailurePolicy(t *testing.T) {
	e := newEnv(t)
	bad := e.drv(t, "bad", nil, map[string]string{"fail": "1"})
	good := e.drv(t, "good", nil, nil)
	top := e.drv(t, "top", []storepath.Path{bad, good}, nil)
	w := e.worker(Options{MaxJobs: 2, FailureTTL: time.Hour})
	_, err := w.BuildDerivation(context.Background(), top)
	var de *DependencyError
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "dependency "+e.s.Print(bad)+" failed") || !strings.Contains(err.Error(), "> boom") {
		t.Fatalf("err = %v, want a dependency error naming %s with the log", err, bad)
	}
	if code := ExitStatus(err); code != 100 {
		t.Errorf("exit status %d, want 100", code)
	}
	// Remembered: the second request fails fast without building.
	_, err = w.BuildDerivation(context.Background(), bad)
	var be *BuildError
	if !errors.As(err, &be) || !be.Cached || e.b.count(bad) != 1 {
		t.Fatalf("second request: %v (built %d times)", err, e.b.count(bad))
	}
	if err := e.s.ClearFailures(); err != nil {
		t.Fatal(err)
	}
	w.BuildDerivation(context.Background(), bad)
	if e.b.count(bad) != 2 {
		t.Errorf("after ClearFailures built %d times, want 2", e.b.count(bad))
	}
	// An expired failure is retried.
	w2 := e.worker(Options{MaxJobs: 1, FailureTTL: time.Nanosecond})
	w2.BuildDerivation(context.Background(), bad)
	if e.b.count(bad) != 3 {
		t.Errorf("after expiry built %d times, want 3", e.b.count(bad))
	}
}

func TestKeepGoing(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(strconv.FormatBool(keep), func(t *testing.T) {
			e := newEnv(t)
			e.b.delay = 20 * time.Millisecond
			bad := e.drv(t, "bad", nil, map[string]string{"fail": "1"})
			// slow comes after bad in a chain, so without keep-going it is
			// cancelled before it builds.
			var chain []storepath.Path
			prev := e.drv(t, "c0", nil, nil)
			for i := 1; i < 5; i++ {
				prev = e.drv(t, fmt.Sprintf("c%d", i), []storepath.Path{prev}, nil)
			}
			chain = append(chain, prev)
			top := e.drv(t, "top", append(chain, bad), nil)
			w := e.worker(Options{MaxJobs: 1, Request: Request{KeepGoing: keep}})
			_, err := w.BuildDerivation(context.Background(), top)
			if err == nil {
				t.Fatal("top built despite a failed input")
			}
			ok, _ := e.s.IsValid(e.output(t, prev))
			if ok != keep {
				t.Errorf("keep-going=%v: the independent chain valid=%v", keep, ok)
			}
		})
	}
}

func TestCancellation(t *testing.T) {
	e := newEnv(t)
	e.b.started = make(chan storepath.Path, 10)
	slow := e.drv(t, "slow", nil, map[string]string{"block": "1"})
	w := e.worker(Options{MaxJobs: 1})
	joined := make(chan struct{}, 10)
	w.onWant = func(key string, started bool) {
		if !started {
			joined <- struct{}{}
		}
	}

	// Two requesters: the first leaving does not stop the goal.
	ctx1, cancel1 := context.WithCancel(context.Background())
	ctx2, cancel2 := context.WithCancel(context.Background())
	t.Cleanup(cancel1)
	t.Cleanup(cancel2)
	errs := make(chan error, 2)
	go func() { _, err := w.BuildDerivation(ctx1, slow); errs <- err }()
	recv(t, e.b.started, "the build to start")
	go func() { _, err := w.BuildDerivation(ctx2, slow); errs <- err }()
	recv(t, joined, "the second requester to join")
	cancel1()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Fatalf("first requester: %v", err)
	}
	// The derivation goal and its build goal.
	if r := w.Running(); len(r) != 2 {
		t.Fatalf("goals running after one of two requesters left: %v, want the derivation goal and its build goal", r)
	}
	cancel2()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Fatalf("second requester: %v", err)
	}
	waitWithin(t, w, 10*time.Second)
	if r := w.Running(); len(r) != 0 {
		t.Errorf("goals still running after every requester left: %v", r)
	}
	e.b.mu.Lock()
	running := e.b.running
	e.b.mu.Unlock()
	if running != 0 {
		t.Errorf("%d builders still running after every requester left", running)
	}
}

// waitWithin fails the test if w.Wait does not return within d.
func waitWithin(t *testing.T, w *Worker, d time.Duration) {
	t.Helper()
	done := make(chan struct{})
	t0 := time.Now()
	go func() { w.Wait(); close(done) }()
	select {
	case <-done:
		t.Logf("goals wound down in %v", time.Since(t0))
	case <-time.After(d):
		t.Fatalf("goals still running %v after every requester left: %v", d, w.Running())
	}
}

// TestCanBuild: a derivation this machine cannot build fails before its
// inputs are built and before a build starts, and is not remembered.
func TestCanBuild(t *testing.T) {
	e := newEnv(t)
	in := e.drv(t, "in", nil, nil)
	top := e.drv(t, "top", []storepath.Path{in}, map[string]string{"system": "elsewhere"})
	obs := &recorder{}
	w := e.worker(Options{MaxJobs: 1, FailureTTL: time.Hour, Observer: obs})
	_, err := w.BuildDerivation(context.Background(), top)
	if err == nil || !strings.Contains(err.Error(), "not for this machine") {
		t.Fatalf("err = %v, want CanBuild's error", err)
	}
	var be *BuildError
	if errors.As(err, &be) || ExitStatus(err) != 1 {
		t.Errorf("err = %#v (exit status %d): not a build failure, exit status 1", err, ExitStatus(err))
	}
	if e.b.count(in) != 0 || len(obs.events()) != 0 {
		t.Errorf("input built %d times, events %v; want nothing started", e.b.count(in), obs.events())
	}
	if f, err := e.s.LookupFailure(top); err != nil || f != nil {
		t.Errorf("failure remembered: %v %v", f, err)
	}
}

// recorder is an Observer that keeps every event.
type recorder struct {
	mu sync.Mutex
	ev []Event
}

func (r *recorder) Event(e Event) {
	r.mu.Lock()
	r.ev = append(r.ev, e)
	r.mu.Unlock()
}

func (r *recorder) events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.ev...)
}

// TestWait: a requester that gives up returns at once; Wait returns only
// once the goal it left has stopped its builder.
func TestWait(t *testing.T) {
	e := newEnv(t)
	e.b.started = make(chan storepath.Path, 1)
	e.b.stopGate = make(chan struct{})
	letStop := opener(t, e.b.stopGate)
	slow := e.drv(t, "slow", nil, map[string]string{"block": "1"})
	w := e.worker(Options{MaxJobs: 1})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() { _, err := w.BuildDerivation(ctx, slow); errc <- err }()
	<-e.b.started
	cancel()
	// The builder cannot stop before stopGate is closed, so the requester
	// returning proves it did not wait for the builder.
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("requester: %v", err)
	}
	waited := make(chan struct{})
	go func() { w.Wait(); close(waited) }()
	select {
	case <-waited:
		t.Fatal("Wait returned while the builder was still stopping")
	case <-time.After(50 * time.Millisecond):
	}
	letStop()
	<-waited
	e.b.mu.Lock()
	running := e.b.running
	e.b.mu.Unlock()
	if running != 0 {
		t.Errorf("Wait returned with %d builders running", running)
	}
	// A request with an ended context starts nothing.
	if _, err := w.BuildDerivation(ctx, slow); !errors.Is(err, context.Canceled) || len(w.Running()) != 0 {
		t.Errorf("request with a cancelled context: %v, running %v", err, w.Running())
	}
}

// TestModel builds random DAGs with random failures and random
// cancellations and checks the engine's invariants after each run.
func TestModel(t *testing.T) {
	seed := time.Now().UnixNano()
	if s := os.Getenv("STOREFS_MODEL_SEED"); s != "" {
		seed, _ = strconv.ParseInt(s, 10, 64)
	}
	t.Logf("seed %d (STOREFS_MODEL_SEED=%d reruns it)", seed, seed)
	rng := rand.New(rand.NewSource(seed))
	for run := 0; run < 8; run++ {
		e := newEnv(t)
		n := 10 + rng.Intn(40)
		maxJobs := 1 + rng.Intn(4)
		keep := rng.Intn(2) == 0
		var nodes []storepath.Path
		fails := map[storepath.Path]bool{}
		inputs := map[storepath.Path][]storepath.Path{}
		for i := 0; i < n; i++ {
			var ins []storepath.Path
			for j := 0; j < len(nodes) && len(ins) < 3; j++ {
				if rng.Intn(4) == 0 {
					ins = append(ins, nodes[rng.Intn(len(nodes))])
				}
			}
			env := map[string]string{}
			if rng.Intn(12) == 0 {
				env["fail"] = "1"
			}
			p := e.drv(t, fmt.Sprintf("n%d", i), dedup(ins), env)
			fails[p] = env["fail"] == "1"
			inputs[p] = dedup(ins)
			nodes = append(nodes, p)
		}
		e.b.delay = time.Duration(rng.Intn(3)) * time.Millisecond
		w := e.worker(Options{MaxJobs: maxJobs, FailureTTL: time.Hour, Request: Request{KeepGoing: keep}})
		var wg sync.WaitGroup
		results := make([]error, len(nodes))
		requested := make([]bool, len(nodes))
		for i, p := range nodes {
			if rng.Intn(3) != 0 {
				continue
			}
			requested[i] = true
			ctx, cancel := context.WithCancel(context.Background())
			if rng.Intn(5) == 0 {
				time.AfterFunc(time.Duration(rng.Intn(5))*time.Millisecond, cancel)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer cancel()
				_, results[i] = w.BuildDerivation(ctx, p)
			}()
		}
		wg.Wait()
		w.Wait() // cancelled goals wind down
		if r := w.Running(); len(r) > 0 {
			t.Fatalf("seed %d run %d: goals still running after Wait: %v", seed, run, r)
		}
		if e.b.maxRunning() > maxJobs {
			t.Errorf("seed %d run %d: %d builders at once, max-jobs %d", seed, run, e.b.maxRunning(), maxJobs)
		}
		broken := map[storepath.Path]bool{} // fails itself or through an input
		for _, p := range nodes {
			broken[p] = fails[p]
			for _, in := range inputs[p] {
				broken[p] = broken[p] || broken[in]
			}
		}
		for i, p := range nodes {
			if n := e.b.count(p); n > 1 {
				t.Errorf("seed %d run %d: %s built %d times", seed, run, p, n)
			}
			valid, _ := e.s.IsValid(e.output(t, p))
			if valid && broken[p] {
				t.Errorf("seed %d run %d: %s valid though it or an input fails", seed, run, p)
			}
			if valid {
				for _, in := range inputs[p] {
					if ok, _ := e.s.IsValid(e.output(t, in)); !ok {
						t.Errorf("seed %d run %d: %s valid but its input %s is not", seed, run, p, in)
					}
				}
			}
			if !requested[i] {
				continue
			}
			err := results[i]
			if errors.Is(err, context.Canceled) {
				continue // another requester may still have seen it through
			}
			if (err == nil) != valid {
				t.Errorf("seed %d run %d: request of %s returned %v but valid=%v", seed, run, p, err, valid)
			}
			if err != nil && !broken[p] {
				t.Errorf("seed %d run %d: %s failed though nothing it needs fails: %v", seed, run, p, err)
			}
		}
	}
}

func dedup(ps []storepath.Path) []storepath.Path {
	seen := map[storepath.Path]bool{}
	var out []storepath.Path
	for _, p := range ps {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}
