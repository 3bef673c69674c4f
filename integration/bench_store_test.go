package integration

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// BenchmarkStoreImport imports one 1 GiB export stream (2,000 paths of
// mixed sizes, tens of thousands of files) with `storefs import` and with
// `nix-store --import` into a fresh Nix store, alternating, twice each,
// and reports the best time of each and their ratio. Everything is synced
// before each run. storefs's import is durable when it returns (contents
// synced, then records committed); Nix 2.8 does not sync contents, so the
// time Nix's import plus a sync takes is reported too.
func BenchmarkStoreImport(b *testing.B) {
	needTool(b, "nix-store")
	stream, paths := genStream(b, b.TempDir(), streamSpec{Paths: 2000, Bytes: 1 << 30, Seed: 1})
	st, err := os.Stat(stream)
	if err != nil {
		b.Fatal(err)
	}
	timed := func(fn func()) time.Duration {
		syscall.Sync()
		start := time.Now()
		fn()
		return time.Since(start)
	}
	importInto := func(name string, args ...string) {
		f, err := os.Open(stream)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		mustRun(b, nil, f, name, args...)
	}
	for b.Loop() {
		var nixBest, nixSyncBest, sfsBest time.Duration
		for range 2 {
			n := newNixStore(b)
			var nixT time.Duration
			nixSync := timed(func() {
				nixT = timed(func() {
					f, err := os.Open(stream)
					if err != nil {
						b.Fatal(err)
					}
					defer f.Close()
					n.run(b, f, "nix-store", "--import")
				})
				syscall.Sync()
			})
			s := newSfsStore(b)
			sfsT := timed(func() { importInto(storefsBin, s.args("import")...) })
			b.Logf("nix-store --import %v (%v with a sync after), storefs import %v", nixT, nixSync, sfsT)
			nixBest, nixSyncBest, sfsBest = best(nixBest, nixT), best(nixSyncBest, nixSync), best(sfsBest, sfsT)
		}
		b.Logf("stream: %d bytes, %d paths; best of 2: nix-store --import %v (%v with a sync), storefs import %v; storefs/nix %.2f",
			st.Size(), len(paths), nixBest, nixSyncBest, sfsBest, sfsBest.Seconds()/nixBest.Seconds())
		b.ReportMetric(nixBest.Seconds(), "nix-s")
		b.ReportMetric(nixSyncBest.Seconds(), "nix+sync-s")
		b.ReportMetric(sfsBest.Seconds(), "storefs-s")
		b.ReportMetric(sfsBest.Seconds()/nixBest.Seconds(), "storefs/nix")
	}
}

func best(a, b time.Duration) time.Duration {
	if a == 0 || b < a {
		return b
	}
	return a
}

// BenchmarkStoreOpen100k makes a store of 100,000 valid paths, each a small
// file referring to up to three earlier ones, with `storefs import` (the
// registration every path goes through), then measures `storefs path-info`
// of one path end to end: the time and the process's maximum resident set
// size (medians of 10 runs each).
func BenchmarkStoreOpen100k(b *testing.B) {
	const n = 100_000
	stream, paths := genStream(b, b.TempDir(), streamSpec{Paths: n, Bytes: n * 200, Seed: 3, Flat: true})
	s := newSfsStore(b)
	start := time.Now()
	f, err := os.Open(stream)
	if err != nil {
		b.Fatal(err)
	}
	s.run(b, f, "import")
	f.Close()
	b.Logf("importing %d paths took %v", n, time.Since(start))
	one := paths[n/2]
	// A process exec'd from this big test process starts with its
	// maximum RSS (Linux carries the high-water mark across exec), so the
	// RSS is measured by GNU time, whose child is forked from a small
	// process. (busybox's time prints four times the right figure.)
	gnuTime := needTool(b, "time")
	maxRSS := regexp.MustCompile(`maxrss ([0-9]+)`)
	for b.Loop() {
		var times []time.Duration
		var rss []int
		for i := range 20 {
			var cmd *exec.Cmd
			if i%2 == 0 {
				cmd = exec.Command(storefsBin, s.args("path-info", "--json", one)...)
			} else {
				cmd = exec.Command(gnuTime, append([]string{"-f", "maxrss %M", storefsBin}, s.args("path-info", "--json", one)...)...)
			}
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			t0 := time.Now()
			if err := cmd.Run(); err != nil {
				b.Fatalf("%v: %s", err, errb.Bytes())
			}
			if !bytes.Contains(out.Bytes(), []byte(one)) {
				b.Fatalf("path-info printed %s", out.Bytes())
			}
			if i%2 == 0 {
				times = append(times, time.Since(t0))
				continue
			}
			m := maxRSS.FindSubmatch(errb.Bytes())
			if m == nil {
				b.Fatalf("time printed no maximum RSS: %s", errb.Bytes())
			}
			kb, _ := strconv.Atoi(string(m[1]))
			rss = append(rss, kb)
		}
		sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
		sort.Ints(rss)
		b.Logf("store of %d paths: storefs path-info of one path takes %v (median of %d; fastest %v, slowest %v); max RSS %d KiB (median of %d; %d to %d)",
			n, times[len(times)/2], len(times), times[0], times[len(times)-1], rss[len(rss)/2], len(rss), rss[0], rss[len(rss)-1])
		b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "path-info-ms")
		b.ReportMetric(float64(rss[len(rss)/2]), "maxrss-KiB")
	}
}
