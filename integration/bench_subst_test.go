package integration

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"storefs/internal/nginxtest"
	"strings"
	"testing"
	"time"
)

// substBenchClosure makes a closure of about 200 MB in Nix's store: 30
// trees of 800 small text files (about 60 MB in 24,000 files) and 4 files
// of 35 MB, half random bytes and half text, all referred to by one text
// path. It returns that path.
func substBenchClosure(b *testing.B, n *nixStore) string {
	b.Helper()
	work := b.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("the store path derivation output narinfo substitute cache build hash reference closure signature archive compress lazy mount goal worker")
	text := func(size int) []byte {
		var sb strings.Builder
		for sb.Len() < size {
			sb.WriteString(words[rng.IntN(len(words))])
			if rng.IntN(12) == 0 {
				fmt.Fprintf(&sb, " %d\n", rng.Uint32())
			} else {
				sb.WriteByte(' ')
			}
		}
		return []byte(sb.String()[:size])
	}
	var paths []string
	for i := range 30 {
		dir := filepath.Join(work, fmt.Sprintf("small-%02d", i))
		for j := range 800 {
			sub := filepath.Join(dir, fmt.Sprintf("d%02d", j/50))
			if err := os.MkdirAll(sub, 0o755); err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%03d.txt", j)), text(500+rng.IntN(4500)), 0o644); err != nil {
				b.Fatal(err)
			}
		}
		paths = append(paths, n.line(b, "nix-store", "--add", dir))
	}
	for i := range 4 {
		f := filepath.Join(work, fmt.Sprintf("large-%d.bin", i))
		data := make([]byte, 35<<20)
		for k := 0; k < len(data)/2; k += 8 {
			v := rng.Uint64()
			for s := range 8 {
				data[k+s] = byte(v >> (8 * s))
			}
		}
		copy(data[len(data)/2:], text(len(data)/2))
		if err := os.WriteFile(f, data, 0o644); err != nil {
			b.Fatal(err)
		}
		paths = append(paths, n.line(b, "nix-store", "--add", f))
	}
	var expr strings.Builder
	expr.WriteString(`builtins.toFile "bench-top" "`)
	for _, p := range paths {
		fmt.Fprintf(&expr, `${builtins.storePath "%s"} `, p)
	}
	expr.WriteString(`"`)
	return strings.Trim(n.line(b, "nix-instantiate", "--eval", "--read-write-mode", "-E", expr.String()), `"`)
}

// timeShell runs a shell command and returns how long it took.
func timeShell(b *testing.B, script string) time.Duration {
	b.Helper()
	start := time.Now()
	out, err := exec.Command("sh", "-c", script).CombinedOutput()
	if err != nil {
		b.Fatalf("%s: %v\n%s", script, err, out)
	}
	return time.Since(start)
}

// BenchmarkSubstitute substitutes the same 200 MB closure with storefs and
// with Nix 2.8's nix-store --realise, from a file:// cache and from nginx,
// compressed with xz and with zstd, and prints storefs's time over Nix's.
// The limit is the bare decompression of the same NARs (xz -dc, zstd -dc
// to /dev/null), on one core and split over two.
func BenchmarkSubstitute(b *testing.B) {
	needTool(b, "xz")
	needTool(b, "zstd")
	n := newNixStore(b)
	top := substBenchClosure(b, n)
	closure := strings.Fields(n.line(b, "nix-store", "-qR", top))
	size := strings.Fields(n.line(b, "nix", "path-info", "-S", top))
	sk, pk := substNixKey(b, n, "bench-1")
	work := b.TempDir()
	for _, comp := range []string{"xz", "zstd"} {
		cache := filepath.Join(work, comp)
		n.run(b, nil, "nix", "copy", "--to", "file://"+cache+"?compression="+comp+"&secret-key="+sk, top)
		nars, _ := filepath.Glob(filepath.Join(cache, "nar", "*"))
		tool := map[string]string{"xz": "xz", "zstd": "zstd"}[comp]
		one := timeShell(b, tool+" -dc "+strings.Join(nars, " ")+" > /dev/null")
		half := len(nars) / 2
		two := timeShell(b, "("+tool+" -dc "+strings.Join(nars[:half], " ")+" > /dev/null) & "+tool+" -dc "+strings.Join(nars[half:], " ")+" > /dev/null; wait")

		for _, transport := range []string{"file", "nginx"} {
			b.Run(comp+"-"+transport, func(b *testing.B) {
				url := "file://" + cache
				if transport == "nginx" {
					url = nginxtest.Serve(b, cache)
				}
				b.Logf("closure: %d paths, %s bytes of NAR, in %s (STOREFS_BENCH_DISK=1: on disk)", len(closure), size[len(size)-1], where)
				for b.Loop() {
					other := nixStoreAt(b, substBenchDir(b))
					exec.Command("sync").Run()
					t0 := time.Now()
					other.run(b, nil, "nix-store", "--realise", top, "--option", "substituters", url, "--option", "trusted-public-keys", pk)
					nixT := time.Since(t0)
					os.RemoveAll(other.Root)

					state := substBenchDir(b)
					exec.Command("sync").Run()
					t0 = time.Now()
					storefs(b, nil, "--store-dir", storeDir, "--state-dir", state, "realise", "--substituters", url, "--trusted-public-keys", pk, top)
					sfsT := time.Since(t0)
					if r := storefsResult(b, nil, "--store-dir", storeDir, "--state-dir", state, "verify"); r.code != 0 {
						b.Fatalf("storefs verify: exit %d\n%s", r.code, r.stdout)
					}
					removeTree(state)
					b.Logf("%s from %s: nix-store --realise %v, storefs realise %v, ratio storefs/nix %.2f; bare %s -dc %v (1 core) %v (2 cores), storefs/bare(2 cores) %.2f",
						comp, transport, nixT.Round(time.Millisecond), sfsT.Round(time.Millisecond), sfsT.Seconds()/nixT.Seconds(),
						tool, one.Round(time.Millisecond), two.Round(time.Millisecond), sfsT.Seconds()/two.Seconds())
				}
			})
		}
	}
}

// substBenchDir is where a benchmark's store lives: a tmpfs unless
// STOREFS_BENCH_DISK is set, because on this disk creating 24,000 files
// just after deleting as many varies run to run by a factor of three (the
// kernel's inode allocator and writeback, the same for both programs).
func substBenchDir(b *testing.B) string {
	if os.Getenv("STOREFS_BENCH_DISK") == "" {
		if d, err := os.MkdirTemp("/dev/shm", "storefs-bench-"); err == nil {
			b.Cleanup(func() { os.RemoveAll(d) })
			return d
		}
	}
	return b.TempDir()
}

var where = map[bool]string{true: "a tmpfs", false: "the disk"}[os.Getenv("STOREFS_BENCH_DISK") == ""]

// removeTree removes a store's state at once (root ignores the read-only
// modes), so that runs do not fill the disk.
func removeTree(dir string) { os.RemoveAll(dir) }
