package realise

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"storefs/goals"
	"storefs/store/nixbase32"
	"storefs/store/storepath"
)

// A bounded client floods lookups of random names as one uid: the caches
// get at most the burst plus the query rate's worth of requests, the
// database does not grow, and another uid's lookups are not held back.
func TestLookupFlood(t *testing.T) {
	f := newFixture(t)
	dir := f.writeCache(t, "none", f.trusted)
	srv := newFaultServer(t, dir)
	const rate = 20
	d := newDest(t, f, []string{srv.URL}, func(o *SubstituterOptions) { o.QueryRate = rate })
	ctx := context.Background()
	// The cache's nix-cache-info is remembered first, as it would be.
	if err := d.w.Realise(ctx, f.tree); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(d.s.State, "db")
	sizeOf := func() int64 {
		st, err := os.Stat(db)
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	size0, requests0 := sizeOf(), srv.total()

	const clients, floodFor = 8, 3 * time.Second
	attacker := goals.WithCaller(ctx, 1000)
	var lookups, unknown atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range clients {
		wg.Go(func() {
			for time.Since(start) < floodFor {
				var h [20]byte
				for i := range h {
					h[i] = byte(rand.N(256))
				}
				p, err := storepath.ParseBase(nixbase32.EncodeToString(h[:]) + "-random")
				if err != nil {
					t.Error(err)
					return
				}
				err = d.w.Realise(attacker, p)
				lookups.Add(1)
				if errors.Is(err, goals.ErrUnknownPath) {
					unknown.Add(1)
				} else {
					t.Errorf("lookup of a random name: %v", err)
					return
				}
			}
		})
	}
	// Meanwhile another user's lookup is answered at once.
	time.Sleep(floodFor / 2)
	other, err := timed(t, "uid 1001's lookup during the flood", func() error { return d.w.Realise(goals.WithCaller(ctx, 1001), f.text) })
	if err != nil {
		t.Errorf("another uid's lookup: %v", err)
	}
	wg.Wait()
	el := time.Since(start)
	requests := srv.total() - requests0
	growth := sizeOf() - size0
	t.Logf("%d lookups of random names by %d clients in %v: %d cache requests (rate %d/s, burst %d), database grew by %d bytes (%d -> %d)",
		lookups.Load(), clients, el.Round(time.Millisecond), requests, rate, rate*queryBurstSecs, growth, size0, size0+growth)
	if max := int(rate*queryBurstSecs+rate*el.Seconds()) + 10; requests > max {
		t.Errorf("%d cache requests, more than the %d the rate allows", requests, max)
	}
	if growth > 0 {
		t.Errorf("the database grew by %d bytes", growth)
	}
	if other > 5*time.Second {
		t.Errorf("another uid's lookup took %v", other)
	}
}

// A user's misses live in this process's memory, yet a storefs copy --to
// in another process (ForgetNarInfoCache) makes them stale.
func TestMemoryMissForgotten(t *testing.T) {
	f := newFixture(t)
	dir := f.writeCache(t, "none", f.trusted)
	file := filepath.Join(dir, f.tree.HashPart()+".narinfo")
	saved, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(file)
	srv := newFaultServer(t, dir)
	d := newDest(t, f, []string{srv.URL}, nil)
	user := goals.WithCaller(context.Background(), 1000)
	if err := d.w.Realise(user, f.tree); !errors.Is(err, goals.ErrUnknownPath) {
		t.Fatalf("first lookup: %v", err)
	}
	n := srv.total()
	if err := d.w.Realise(user, f.tree); !errors.Is(err, goals.ErrUnknownPath) || srv.total() != n {
		t.Errorf("second lookup: %v, %d more requests; want the remembered miss", err, srv.total()-n)
	}
	if e, _ := d.s.LookupNarInfoCache(srv.URL, f.tree.HashPart()); e != nil {
		t.Errorf("a user's miss was written to the database: %+v", e)
	}
	if err := os.WriteFile(file, saved, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.s.ForgetNarInfoCache(srv.URL); err != nil {
		t.Fatal(err)
	}
	if err := d.w.Realise(user, f.tree); err != nil {
		t.Errorf("lookup after the cache was written to: %v", err)
	}
}

// The limiter lets a burst through, makes the next ones wait up to
// maxQueryWait, refuses the rest (warning once), and keeps uids apart.
func TestLimiter(t *testing.T) {
	const rate = 10
	l := newLimiter(rate)
	now := time.Unix(1700000000, 0)
	var ok, refused, warned atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range rate*queryBurstSecs + 15 {
		wg.Go(func() {
			err := l.wait(context.Background(), 1000, now)
			var re *RateError
			switch {
			case err == nil:
				ok.Add(1)
			case errors.As(err, &re):
				refused.Add(1)
				if re.Warn {
					warned.Add(1)
				}
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	t.Logf("%d through, %d refused (%d warned) in %v", ok.Load(), refused.Load(), warned.Load(), time.Since(start).Round(time.Millisecond))
	if want := int64(rate*queryBurstSecs + rate*maxQueryWait/time.Second); ok.Load() != want || refused.Load() != 15-rate || warned.Load() != 1 {
		t.Errorf("%d through (want %d), %d refused (want %d), %d warned (want 1)", ok.Load(), want, refused.Load(), 15-rate, warned.Load())
	}
	if err := l.wait(context.Background(), 1001, now); err != nil {
		t.Errorf("another uid: %v", err)
	}
	if err := l.wait(context.Background(), 1000, now.Add(time.Second)); err != nil {
		t.Errorf("a second later: %v", err)
	}
}
