package store

import "testing"

// BenchmarkRuntimeRoots is the cost of one scan of /proc.
func BenchmarkRuntimeRoots(b *testing.B) {
	s, err := Open("/store", b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		s.runtimeRoots()
	}
}
