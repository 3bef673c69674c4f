package store

import (
	"context"
	"testing"
	"time"
)

// BenchmarkLockUnlock is one Lock and Unlock of a free path; it reports
// ns per pair over many pairs, since make bench runs each benchmark once.
func BenchmarkLockUnlock(b *testing.B) {
	s, err := Open("/store", b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	p := manyPaths(1)[0]
	ctx := context.Background()
	const n = 20000
	for b.Loop() {
		start := time.Now()
		for i := 0; i < n; i++ {
			l, err := s.Lock(ctx, p)
			if err != nil {
				b.Fatal(err)
			}
			l.Unlock()
		}
		b.ReportMetric(float64(time.Since(start).Nanoseconds())/n, "ns/lock")
	}
}

// BenchmarkLockAll20000 takes and releases the locks of a derivation's
// 20,000 outputs, reporting the time and the descriptors held.
func BenchmarkLockAll20000(b *testing.B) {
	s, err := Open("/store", b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	ps := manyPaths(20000)
	ctx := context.Background()
	for b.Loop() {
		before := openFDs(b)
		start := time.Now()
		unlock, err := s.LockAll(ctx, ps)
		if err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		held := openFDs(b) - before
		unlock()
		b.ReportMetric(took.Seconds(), "s/lockall")
		b.ReportMetric(float64(held), "fds")
	}
}
