package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"storefs/store/derivation"
)

// memChildEnv makes the test binary run `storefs derivation add` with the
// arguments in memArgsEnv (tab separated) and exit: the child whose peak
// memory the tests measure.
const (
	memChildEnv = "STOREFS_MEM_CHILD"
	memArgsEnv  = "STOREFS_MEM_ARGS"
)

func TestDerivationAddChild(t *testing.T) {
	if os.Getenv(memChildEnv) == "" {
		return
	}
	args := strings.Split(os.Getenv(memArgsEnv), "\t")
	code := run(context.Background(), args, stdio{nil, os.Stdout, os.Stderr})
	// The peak of this program's own memory: the rusage a parent gets
	// counts the parent's memory too (the child was forked from it).
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			fmt.Fprintln(os.Stderr, l)
		}
	}
	os.Exit(code)
}

// writeBigEnvDrv writes a derivation whose env var "big" is size bytes
// (lines of 99 letters and a newline, which the .drv escapes), and
// returns its file.
func writeBigEnvDrv(t testing.TB, dir string, size int) string {
	t.Helper()
	line := strings.Repeat("x", 99) + "\n"
	big := strings.Repeat(line, size/len(line)) + line[:size%len(line)]
	d := &derivation.Derivation{
		Outputs: map[string]derivation.Output{"out": {}},
		System:  "x86_64-linux",
		Builder: "/bin/sh",
		Args:    []string{"-c", "echo > $out"},
		Env:     map[string]string{"name": "big", "builder": "/bin/sh", "system": "x86_64-linux", "big": big},
	}
	if err := derivation.NewHasher("/store", nil).Fill(d); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, "big.drv")
	w, err := os.Create(f)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriter(w)
	if err := d.WriteATerm(bw, "/store"); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return f
}

// derivationAddRSS runs `storefs derivation add f` in a child process
// and returns its peak resident set size in bytes (VmHWM).
func derivationAddRSS(t testing.TB, state, f string) int64 {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestDerivationAddChild$", "-test.count=1")
	args := []string{"--store-dir", "/store", "--state-dir", state, "derivation", "add", f}
	cmd.Env = append(os.Environ(), memChildEnv+"=1", memArgsEnv+"="+strings.Join(args, "\t"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("storefs derivation add %s: %v: %s", f, err, out)
	}
	_, hwm, ok := strings.Cut(string(out), "VmHWM:")
	var kb int64
	if _, err := fmt.Sscanf(hwm, "%d kB", &kb); !ok || err != nil {
		t.Fatalf("storefs derivation add %s printed no peak RSS (%v): %s", f, err, out)
	}
	return kb << 10
}

// A derivation with a big env string is added with memory a small
// multiple of the string: the file, the parsed string and buffers, not a
// copy for every step (reading, unescaping, hashing, printing).
func TestDerivationAddBigEnvMemory(t *testing.T) {
	const size = 64 << 20
	dir := t.TempDir()
	small := writeBigEnvDrv(t, t.TempDir(), 100)
	base := derivationAddRSS(t, filepath.Join(dir, "state0"), small)
	big := writeBigEnvDrv(t, dir, size)
	rss := derivationAddRSS(t, filepath.Join(dir, "state"), big)
	t.Logf("derivation add of a %d MiB env string: peak RSS %d MiB (%d MiB for a small one)", size>>20, rss>>20, base>>20)
	if extra := rss - base; extra > 3*size {
		t.Errorf("derivation add of a %d MiB env string takes %d MiB beyond a small one's %d MiB, more than 3x the string", size>>20, extra>>20, base>>20)
	}
}

// BenchmarkDerivationAddBigEnv adds a derivation with a 200 MB env
// string, reporting the peak RSS of the command and its ratio to the
// string.
func BenchmarkDerivationAddBigEnv(b *testing.B) {
	const size = 200 << 20
	dir := b.TempDir()
	f := writeBigEnvDrv(b, dir, size)
	for i := 0; b.Loop(); i++ {
		rss := derivationAddRSS(b, filepath.Join(dir, fmt.Sprint("state", i)), f)
		b.ReportMetric(float64(rss>>20), "MiB-peak-RSS")
		b.ReportMetric(float64(rss)/size, "RSS/string")
	}
}
