package realise

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"storefs/goals"
	"storefs/internal/loopback"
	"storefs/store/derivation"
	"storefs/store/storepath"
)

// timed runs fn and logs how long it took.
func timed(t *testing.T, what string, fn func() error) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	err := fn()
	el := time.Since(start)
	t.Logf("%s: %v (%v)", what, el.Round(time.Millisecond), err)
	return el, err
}

// A cache that is down at the first lookup is skipped, without asking it,
// for RetryDown, and then asked again: once it is back, paths come from
// it.
func TestCacheDownThenBack(t *testing.T) {
	f := newFixture(t)
	dir := f.writeCache(t, "none", f.trusted)
	addr := loopback.FreeAddr(t)
	const retry = time.Second
	d := newDest(t, f, []string{"http://" + addr}, func(o *SubstituterOptions) { o.RetryDown = retry })
	ctx := context.Background()

	_, err := timed(t, "lookup 1, cache down", func() error { return d.w.Realise(ctx, f.tree) })
	if !errors.Is(err, goals.ErrUnknownPath) {
		t.Fatalf("lookup while the cache is down: %v, want ErrUnknownPath", err)
	}
	if w := strings.Join(d.warnings, "\n"); !strings.Contains(w, "is not used for 1s") || !strings.Contains(w, "connection refused") {
		t.Errorf("warnings %q", w)
	}

	// The cache comes back on the same address.
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var requests atomic.Int64
	files := http.FileServer(http.Dir(dir))
	srv := &httptest.Server{Listener: l, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		files.ServeHTTP(w, r)
	})}}
	srv.Start()
	t.Cleanup(srv.Close)

	_, err = timed(t, "lookup 2, cache back but within RetryDown", func() error { return d.w.Realise(ctx, f.tree) })
	if !errors.Is(err, goals.ErrUnknownPath) {
		t.Errorf("lookup within RetryDown: %v, want ErrUnknownPath", err)
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("%d requests to a cache within its RetryDown", n)
	}
	warnings := len(d.warnings)
	time.Sleep(retry + 100*time.Millisecond)
	if _, err := timed(t, "lookup 3, after RetryDown", func() error { return d.w.Realise(ctx, f.tree) }); err != nil {
		t.Fatalf("lookup after the cache came back: %v", err)
	}
	sameInfo(t, f.src, d.s, f.tree, "trusted-1")
	t.Logf("%d requests once back; %d warnings in all", requests.Load(), len(d.warnings))
	if len(d.warnings) != warnings {
		t.Errorf("new warnings once the cache is back: %q", d.warnings[warnings:])
	}
}

// countingBuilder counts builds and fails each (the test wants to know that
// a build was tried, and when).
type countingBuilder struct{ n atomic.Int64 }

func (b *countingBuilder) Build(context.Context, storepath.Path, *derivation.Derivation, goals.BuildOptions) error {
	b.n.Add(1)
	return errors.New("the test builder builds nothing")
}

// A cache that accepts connections and never answers costs a lookup at
// most the query timeout (default settings here), concurrent lookups do
// not queue behind each other, later ones skip it at once, and a buildable
// output whose cache hangs is built within seconds.
func TestCacheNeverAnswers(t *testing.T) {
	f := newFixture(t)
	url, accepted := loopback.Silent(t)
	defaults := func(o *SubstituterOptions) { o.HTTP = HTTPOptions{} }
	d := newDest(t, f, []string{url}, defaults)
	ctx := context.Background()
	bound := 3 * DefaultQueryTimeout // generous: the machine is shared

	var wg sync.WaitGroup
	for i, p := range []storepath.Path{f.tree, f.text} {
		wg.Go(func() {
			el, err := timed(t, "concurrent lookup "+string(rune('1'+i)), func() error { return d.w.Realise(ctx, p) })
			if !errors.Is(err, goals.ErrUnknownPath) {
				t.Errorf("lookup of %s: %v, want ErrUnknownPath", p, err)
			}
			if el > bound {
				t.Errorf("lookup of %s took %v with a query timeout of %v", p, el, DefaultQueryTimeout)
			}
		})
	}
	wg.Wait()
	el, _ := timed(t, "lookup 3, cache known down", func() error { return d.w.Realise(ctx, f.refs) })
	if el > time.Second {
		t.Errorf("a lookup of a cache known to be down took %v", el)
	}
	t.Logf("%d connections accepted; warnings %q", accepted.Load(), d.warnings)

	// A buildable output: substitution is tried first, then the build.
	b := &countingBuilder{}
	s2 := newDest(t, f, []string{url}, defaults)
	w := goals.New(s2.s, b, s2.sub, goals.Options{MaxJobs: 1})
	drv := &derivation.Derivation{
		Outputs:   map[string]derivation.Output{"out": {}},
		InputDrvs: map[storepath.Path][]string{},
		System:    HostSystem(),
		Builder:   "/bin/sh",
		Env:       map[string]string{"name": "buildable", "builder": "/bin/sh", "system": HostSystem(), "out": ""},
	}
	info, err := s2.s.AddDerivation(ctx, drv)
	if err != nil {
		t.Fatal(err)
	}
	el, err = timed(t, "buildable output, cache hangs", func() error { _, err := w.BuildDerivation(ctx, info.Path); return err })
	if b.n.Load() != 1 {
		t.Errorf("built %d times, want once (error %v)", b.n.Load(), err)
	}
	if el > bound {
		t.Errorf("building took %v with a query timeout of %v", el, DefaultQueryTimeout)
	}
	w.Wait()
}
