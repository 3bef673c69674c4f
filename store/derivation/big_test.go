package derivation

import (
	"bytes"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// bigEnv is a derivation whose env var "big" is size bytes: lines of 99
// letters and a newline (escaped in the .drv), and a quote.
func bigEnv(t testing.TB, size int) *Derivation {
	t.Helper()
	line := strings.Repeat("x", 99) + "\n"
	big := strings.Repeat(line, size/len(line)) + `"` + line[:size%len(line)]
	d := &Derivation{
		Outputs: map[string]Output{"out": {}},
		System:  "x86_64-linux",
		Builder: "/bin/sh",
		Env:     map[string]string{"name": "big", "builder": "/bin/sh", "system": "x86_64-linux", "big": big},
	}
	if err := NewHasher(testDir, nil).Fill(d); err != nil {
		t.Fatal(err)
	}
	return d
}

// allocated is how many bytes fn allocates.
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// WriteATerm prints what ATerm does, whatever the strings' lengths
// around its buffer's size, and holds no copy of a long string.
func TestWriteATermMatchesATerm(t *testing.T) {
	for _, n := range []int{0, 1, atermFlushAt - 2, atermFlushAt - 1, atermFlushAt, atermFlushAt + 1, 3*atermFlushAt + 7} {
		for _, fill := range []string{"x", "\n", "a\\", "\"\t\r"} {
			d := bigEnv(t, 10)
			d.Args = []string{strings.Repeat(fill, n/len(fill)), "-c", strings.Repeat(fill, n)}
			d.Env["x"] = strings.Repeat(fill, n)
			want := d.ATerm(testDir)
			var got bytes.Buffer
			if err := d.WriteATerm(&got, testDir); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("strings of %d %q: WriteATerm differs from ATerm", n, fill)
			}
			if back, err := Parse(want, testDir); err != nil || !bytes.Equal(back.ATerm(testDir), want) {
				t.Errorf("strings of %d %q: no round trip: %v", n, fill, err)
			}
		}
	}
}

// Hashing a derivation (its output paths, its .drv path) streams its
// ATerm into the hash: a 16 MiB env var costs no copy of it.
func TestHashBigEnvDoesNotCopy(t *testing.T) {
	const size = 16 << 20
	d := bigEnv(t, size)
	h := NewHasher(testDir, nil)
	var err error
	if n := allocated(func() { err = h.Check(d) }); n > size/8 {
		t.Errorf("Check of a derivation with a %d MiB env var allocates %d MiB", size>>20, n>>20)
	}
	if err != nil {
		t.Fatal(err)
	}
	if n := allocated(func() { _, err = d.Path(testDir) }); n > size/8 {
		t.Errorf("Path of a derivation with a %d MiB env var allocates %d MiB", size>>20, n>>20)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// Parse allocates a long string once, at its length: not the doublings of
// a growing buffer.
func TestParseBigEnvAllocatesOnce(t *testing.T) {
	const size = 16 << 20
	for _, plain := range []bool{false, true} {
		d := bigEnv(t, size)
		if plain {
			d.Env["big"] = strings.Repeat("x", size)
			d.Env["out"] = ""
			if err := NewHasher(testDir, nil).Fill(d); err != nil {
				t.Fatal(err)
			}
		}
		data := d.ATerm(testDir)
		var back *Derivation
		var err error
		n := allocated(func() { back, err = Parse(data, testDir) })
		if err != nil {
			t.Fatal(err)
		}
		if back.Env["big"] != d.Env["big"] {
			t.Fatalf("Parse changed the big env var")
		}
		if n > size+size/8 {
			t.Errorf("Parse of a %d MiB env var (escapes: %v) allocates %d MiB", size>>20, !plain, n>>20)
		}
	}
}

// BenchmarkSmallDerivation is what a small derivation costs to read,
// hash and print: Parse, Check, Path and ATerm of the testdata's
// "trivial", in ns per derivation over many.
func BenchmarkSmallDerivation(b *testing.B) {
	data, err := os.ReadFile("testdata/jpx999psj3wr619yjh0v0msq53xk0z17-trivial.drv")
	if err != nil {
		b.Fatal(err)
	}
	const n = 20000
	for b.Loop() {
		start := time.Now()
		for i := 0; i < n; i++ {
			d, err := Parse(data, testDir)
			if err != nil {
				b.Fatal(err)
			}
			if err := NewHasher(testDir, nil).Check(d); err != nil {
				b.Fatal(err)
			}
			if _, err := d.Path(testDir); err != nil {
				b.Fatal(err)
			}
			if !bytes.Equal(d.ATerm(testDir), data) {
				b.Fatal("ATerm differs")
			}
		}
		b.ReportMetric(float64(time.Since(start).Nanoseconds())/n, "ns/drv")
	}
}

// ParseJSON, like Parse, allocates a long string once.
func TestParseJSONBigEnvAllocatesOnce(t *testing.T) {
	const size = 16 << 20
	for _, plain := range []bool{false, true} {
		d := bigEnv(t, size)
		if plain {
			d.Env["big"] = strings.Repeat("x", size)
		}
		data, err := ShowJSON(testDir, d)
		if err != nil {
			t.Fatal(err)
		}
		var back []*Derivation
		n := allocated(func() { back, err = ParseJSON(data, testDir) })
		if err != nil {
			t.Fatal(err)
		}
		if len(back) != 1 || back[0].Env["big"] != d.Env["big"] {
			t.Fatalf("ParseJSON changed the big env var")
		}
		if n > size+size/8 {
			t.Errorf("ParseJSON of a %d MiB env var (escapes: %v) allocates %d MiB", size>>20, !plain, n>>20)
		}
	}
}
