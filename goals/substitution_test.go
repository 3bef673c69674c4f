package goals

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"storefs/store"
	"storefs/store/storepath"
)

// fakeSubstituter is a binary cache in memory: it has the paths in has,
// each a file holding its name, with the given references. Query and
// Fetch record how many run at once; while a gate is set they wait for it
// after saying so on entered.
type fakeSubstituter struct {
	s       *store.Store
	has     map[storepath.Path][]storepath.Path // path -> references
	corrupt map[storepath.Path]bool             // Fetch fails: the NAR does not match

	queryGate, fetchGate chan struct{}
	entered              chan string // "query <base>" or "fetch <base>"

	mu                 sync.Mutex
	queries, fetches   map[storepath.Path]int
	nQuery, nFetch     int // running now
	maxQuery, maxFetch int
}

func newFakeSubstituter(s *store.Store) *fakeSubstituter {
	return &fakeSubstituter{s: s, has: map[storepath.Path][]storepath.Path{}, corrupt: map[storepath.Path]bool{},
		queries: map[storepath.Path]int{}, fetches: map[storepath.Path]int{}}
}

// enter counts one more running call and returns its end.
func (f *fakeSubstituter) enter(ctx context.Context, n, most *int, gate chan struct{}, what string) (func(), error) {
	f.mu.Lock()
	*n++
	*most = max(*most, *n)
	f.mu.Unlock()
	leave := func() {
		f.mu.Lock()
		*n--
		f.mu.Unlock()
	}
	if gate == nil {
		return leave, nil
	}
	if f.entered != nil {
		f.entered <- what
	}
	select {
	case <-gate:
		return leave, nil
	case <-ctx.Done():
		leave()
		return nil, ctx.Err()
	}
}

func (f *fakeSubstituter) Query(ctx context.Context, p storepath.Path) (*Substitute, error) {
	f.mu.Lock()
	f.queries[p]++
	f.mu.Unlock()
	leave, err := f.enter(ctx, &f.nQuery, &f.maxQuery, f.queryGate, "query "+p.Base())
	if err != nil {
		return nil, err
	}
	defer leave()
	refs, ok := f.has[p]
	if !ok {
		return nil, fmt.Errorf("%s: %w", f.s.Print(p), ErrNoSubstitute)
	}
	return &Substitute{References: refs}, nil
}

func (f *fakeSubstituter) Fetch(ctx context.Context, p storepath.Path, sub *Substitute) error {
	f.mu.Lock()
	f.fetches[p]++
	f.mu.Unlock()
	leave, err := f.enter(ctx, &f.nFetch, &f.maxFetch, f.fetchGate, "fetch "+p.Base())
	if err != nil {
		return err
	}
	defer leave()
	if f.corrupt[p] {
		return fmt.Errorf("NAR of %s from fake://cache: NAR hash mismatch", f.s.Print(p))
	}
	reg, cleanup, err := fileRegistration(f.s, p, p.Name())
	if err != nil {
		return err
	}
	defer cleanup()
	reg.Info.References = sub.References
	return f.s.Register(reg)
}

func (f *fakeSubstituter) counts(p storepath.Path) (queries, fetches int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.queries[p], f.fetches[p]
}

// cached makes a path of that name that f has, not valid in the store.
func (f *fakeSubstituter) cached(t *testing.T, name string, refs ...storepath.Path) storepath.Path {
	t.Helper()
	p, err := storepath.ParseBase(fmt.Sprintf("%032d-%s", len(f.has)+1, name))
	if err != nil {
		t.Fatal(err)
	}
	f.has[p] = refs
	return p
}

func (e *testEnv) workerWith(sub Substituter, opts Options) *Worker {
	w := New(e.s, e.b, sub, opts)
	e.mu.Lock()
	e.workers = append(e.workers, w)
	e.mu.Unlock()
	return w
}

// TestSubstitutionSlots: no more than MaxSubstitutionJobs queries, and no
// more than that many fetches, run at once, and that many do.
func TestSubstitutionSlots(t *testing.T) {
	const limit, n = 3, 12
	e := newEnv(t)
	f := newFakeSubstituter(e.s)
	f.entered = make(chan string, 2*n)
	f.queryGate, f.fetchGate = make(chan struct{}), make(chan struct{})
	openQueries, openFetches := opener(t, f.queryGate), opener(t, f.fetchGate)
	var paths []storepath.Path
	for i := 0; i < n; i++ {
		paths = append(paths, f.cached(t, fmt.Sprintf("p%d", i)))
	}
	w := e.workerWith(f, Options{MaxSubstitutionJobs: limit})
	errc := make(chan error, n)
	for _, p := range paths {
		go func() { errc <- w.Realise(context.Background(), p) }()
	}
	for _, stage := range []struct {
		name string
		open func()
		most func() int
	}{
		{"queries", openQueries, func() int { return f.maxQuery }},
		{"fetches", openFetches, func() int { return f.maxFetch }},
	} {
		for i := 0; i < limit; i++ {
			recv(t, f.entered, stage.name)
		}
		// Room for one more would let it in now.
		select {
		case what := <-f.entered:
			t.Fatalf("%s: %d running with %d slots (%s)", stage.name, limit+1, limit, what)
		case <-time.After(100 * time.Millisecond):
		}
		stage.open()
		for i := limit; i < n; i++ {
			recv(t, f.entered, stage.name)
		}
		f.mu.Lock()
		most := stage.most()
		f.mu.Unlock()
		if most != limit {
			t.Errorf("%s: at most %d at once, want %d", stage.name, most, limit)
		}
	}
	for range paths {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
}

// TestOneSubstitutionGoal: concurrent requests of one path share one
// substitution goal: one query, one fetch.
func TestOneSubstitutionGoal(t *testing.T) {
	const n = 8
	e := newEnv(t)
	f := newFakeSubstituter(e.s)
	f.queryGate = make(chan struct{})
	openQueries := opener(t, f.queryGate)
	dep := f.cached(t, "dep")
	p := f.cached(t, "top", dep)
	w := e.workerWith(f, Options{})
	var mu sync.Mutex
	starts, requests := map[string]int{}, 0
	allIn := make(chan struct{})
	w.onWant = func(key string, started bool) {
		mu.Lock()
		defer mu.Unlock()
		if started {
			starts[key]++
		}
		if key == "sub:"+p.Base() {
			if requests++; requests == n {
				close(allIn)
			}
		}
	}
	errc := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() { errc <- w.Realise(context.Background(), p) }()
	}
	recv(t, allIn, "every requester") // in before the first query can end
	openQueries()
	for i := 0; i < n; i++ {
		if err := recv(t, errc, "the requests to end"); err != nil {
			t.Fatal(err)
		}
	}
	if starts["sub:"+p.Base()] != 1 || starts["sub:"+dep.Base()] != 1 {
		t.Errorf("goals started: %v, want one per path", starts)
	}
	if q, fe := f.counts(p); q != 1 || fe != 1 {
		t.Errorf("%d queries and %d fetches of %s, want 1 and 1", q, fe, p)
	}
}

// twoOutputs adds a derivation with outputs out and dev.
func (e *testEnv) twoOutputs(t *testing.T, name string) (drv, out, dev storepath.Path) {
	t.Helper()
	drv = e.drvWith(t, name, []string{"out", "dev"}, nil, nil)
	outs, err := e.s.DerivationOutputs(drv)
	if err != nil {
		t.Fatal(err)
	}
	return drv, outs["out"], outs["dev"]
}

// TestWantedOutputs: a cache that has out but not dev: asking for out (as
// drv!out, or by its path) substitutes it and builds nothing; asking for
// everything builds.
func TestWantedOutputs(t *testing.T) {
	e := newEnv(t)
	f := newFakeSubstituter(e.s)
	drv, out, dev := e.twoOutputs(t, "two")
	f.has[out] = nil
	w := e.workerWith(f, Options{MaxJobs: 1})
	outs, err := w.BuildDerivation(context.Background(), drv, "out")
	if err != nil {
		t.Fatal(err)
	}
	if outs["out"] != out || outs["dev"] != dev {
		t.Errorf("outputs %v, want out %s and dev %s", outs, out, dev)
	}
	if ok, _ := e.s.IsValid(out); !ok {
		t.Error("out not valid after drv!out")
	}
	if ok, _ := e.s.IsValid(dev); ok {
		t.Error("dev valid after drv!out: it was built or substituted though not wanted")
	}
	if n := e.b.count(drv); n != 0 {
		t.Errorf("built %d times for drv!out, want 0", n)
	}
	if _, fe := f.counts(dev); fe != 0 {
		t.Errorf("dev fetched %d times, want 0", fe)
	}

	// A lookup of the output by path, in a fresh store state: forget out.
	e2 := newEnv(t)
	f2 := newFakeSubstituter(e2.s)
	drv2, out2, dev2 := e2.twoOutputs(t, "two")
	f2.has[out2] = nil
	w2 := e2.workerWith(f2, Options{MaxJobs: 1})
	if err := w2.Realise(context.Background(), out2); err != nil {
		t.Fatal(err)
	}
	if ok, _ := e2.s.IsValid(dev2); ok || e2.b.count(drv2) != 0 {
		t.Errorf("a lookup of out built %d times (dev valid %v), want a substitution only", e2.b.count(drv2), ok)
	}

	// Everything: dev is built (and out, already valid, stays as it is).
	if _, err := w.BuildDerivation(context.Background(), drv); err != nil {
		t.Fatal(err)
	}
	if n := e.b.count(drv); n != 1 {
		t.Errorf("built %d times for every output, want 1", n)
	}
	if ok, _ := e.s.IsValid(dev); !ok {
		t.Error("dev not valid after building")
	}
}

// TestFallback: a wanted output that a cache has but cannot deliver is an
// error naming why, without Fallback; with it, the derivation is built.
func TestFallback(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		t.Run(fmt.Sprint("fallback=", fallback), func(t *testing.T) {
			e := newEnv(t)
			f := newFakeSubstituter(e.s)
			drv := e.drv(t, "broken", nil, nil)
			out := e.output(t, drv)
			f.has[out] = nil
			f.corrupt[out] = true
			w := e.workerWith(f, Options{MaxJobs: 1, Request: Request{Fallback: fallback}})
			_, err := w.BuildDerivation(context.Background(), drv)
			if fallback {
				if err != nil || e.b.count(drv) != 1 {
					t.Fatalf("with fallback: %v, built %d times; want one build", err, e.b.count(drv))
				}
				return
			}
			var se *SubstitutionError
			if !errors.As(err, &se) || !strings.Contains(err.Error(), "NAR hash mismatch") || !strings.Contains(err.Error(), "--fallback") || !strings.Contains(err.Error(), e.s.Print(drv)) {
				t.Fatalf("err = %v; want a substitution error naming %s, the corruption and --fallback", err, drv)
			}
			if n := e.b.count(drv); n != 0 {
				t.Errorf("built %d times without --fallback", n)
			}
		})
	}
	// A derivation no cache has is built without Fallback.
	e := newEnv(t)
	f := newFakeSubstituter(e.s)
	drv := e.drv(t, "uncached", nil, nil)
	w := e.workerWith(f, Options{MaxJobs: 1})
	if _, err := w.BuildDerivation(context.Background(), drv); err != nil || e.b.count(drv) != 1 {
		t.Errorf("uncached: %v, built %d times; want one build", err, e.b.count(drv))
	}
}

// TestNoLocalBuilds: with MaxJobs 0 a derivation that must be built fails
// at once, naming max-jobs, and is not remembered; one a cache has is
// substituted.
func TestNoLocalBuilds(t *testing.T) {
	e := newEnv(t)
	f := newFakeSubstituter(e.s)
	cachedDrv := e.drv(t, "cached", nil, nil)
	f.has[e.output(t, cachedDrv)] = nil
	in := e.drv(t, "in", nil, nil)
	top := e.drv(t, "top", []storepath.Path{in}, nil)
	w := e.workerWith(f, Options{MaxJobs: 0, FailureTTL: time.Hour})
	if _, err := w.BuildDerivation(context.Background(), cachedDrv); err != nil {
		t.Errorf("substitutable with max-jobs 0: %v", err)
	}
	// Bounded: without the check the goal would wait for a slot for ever.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := w.BuildDerivation(ctx, top)
	if !errors.Is(err, ErrNoLocalBuilds) || !strings.Contains(err.Error(), e.s.Print(top)) {
		t.Fatalf("err = %v, want ErrNoLocalBuilds naming %s", err, top)
	}
	if e.b.count(in) != 0 {
		t.Errorf("input built with max-jobs 0")
	}
	if f, err := e.s.LookupFailure(top); err != nil || f != nil {
		t.Errorf("failure remembered: %v %v", f, err)
	}
}

// opener returns a function that closes gate once; the test's cleanup
// calls it too, so that a failed test does not leave goals waiting on it
// (the store's cleanup waits for every goal).
func opener(t *testing.T, gate chan struct{}) func() {
	open := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(open)
	return open
}

// recv waits for an event the code under test signals; it fails the test
// if none comes within a generous bound.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		t.Fatalf("waited 20 s for %s", what)
		panic("unreachable")
	}
}

// TestRequestOptions: what a request asks (WithRequest) applies to the
// goals it starts, not to the worker's other requests.
func TestRequestOptions(t *testing.T) {
	e := newEnv(t)
	f := newFakeSubstituter(e.s)
	cachedDrv := e.drv(t, "cached", nil, nil)
	f.has[e.output(t, cachedDrv)] = nil
	broken := e.drv(t, "broken", nil, nil)
	f.has[e.output(t, broken)] = nil
	f.corrupt[e.output(t, broken)] = true
	local := e.drv(t, "local", nil, nil)
	w := e.workerWith(f, Options{MaxJobs: 1})
	ctx := context.Background()

	// No substitutes: the cached derivation is built.
	if _, err := w.BuildDerivation(WithRequest(ctx, Request{NoSubstitutes: true}), cachedDrv); err != nil || e.b.count(cachedDrv) != 1 {
		t.Errorf("without substitutes: %v, built %d times; want one build", err, e.b.count(cachedDrv))
	}
	if q, _ := f.counts(e.output(t, cachedDrv)); q != 0 {
		t.Errorf("without substitutes the cache was asked %d times", q)
	}
	// No local builds for this request only.
	if _, err := w.BuildDerivation(WithRequest(ctx, Request{NoLocalBuilds: true}), local); !errors.Is(err, ErrNoLocalBuilds) {
		t.Errorf("request without local builds: %v", err)
	}
	if _, err := w.BuildDerivation(ctx, local); err != nil {
		t.Errorf("the next request, with the worker's defaults: %v", err)
	}
	// Fallback for this request only.
	if _, err := w.BuildDerivation(ctx, broken); !errors.As(err, new(*SubstitutionError)) {
		t.Errorf("without fallback: %v", err)
	}
	if _, err := w.BuildDerivation(WithRequest(ctx, Request{Fallback: true}), broken); err != nil || e.b.count(broken) != 1 {
		t.Errorf("with fallback: %v, built %d times", err, e.b.count(broken))
	}
	// Another substituter for this request.
	other := newFakeSubstituter(e.s)
	p := other.cached(t, "elsewhere")
	if err := w.Realise(ctx, p); !errors.Is(err, ErrUnknownPath) {
		t.Errorf("a path only another cache has, with the worker's: %v", err)
	}
	if err := w.Realise(WithRequest(ctx, Request{Substituter: other}), p); err != nil {
		t.Errorf("with the request's substituter: %v", err)
	}
}
