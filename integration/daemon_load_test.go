package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// 50 stock clients at once for a while, mixing queries, adds and builds:
// none fails, and the daemon's memory stays bounded.
func TestDaemonManyClients(t *testing.T) {
	e := newDaemonEnv(t, "--max-jobs", "4")
	bb := e.nix(t, "nix-store", "--add", busyboxTree(t))
	const clients = 50
	duration := 20 * time.Second
	deadline := time.Now().Add(duration)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ops := map[string]int{}
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dir := filepath.Join(e.base, "c"+strconv.Itoa(i))
			os.MkdirAll(dir, 0o755)
			for n := 0; time.Now().Before(deadline) && !t.Failed(); n++ {
				var kind string
				switch n % 3 {
				case 0:
					kind = "add"
					p := e.nix(t, "nix-store", "--add", writeFile(t, dir, fmt.Sprintf("f%d", n), fmt.Sprintf("%d %d\n", i, n)))
					if got := e.nix(t, "nix-store", "-q", "--size", p); got != "120" && got != "128" {
						t.Errorf("size of %s: %s", p, got)
					}
				case 1:
					kind = "query"
					e.nix(t, "nix-store", "-q", "--requisites", bb)
				case 2:
					kind = "build"
					expr := writeFile(t, dir, fmt.Sprintf("d%d.nix", n), fmt.Sprintf(`derivation { name = "c%d-%d"; system = "x86_64-linux";
  builder = "${builtins.storePath "%s"}/bin/sh"; args = ["-c" "echo %d > $out"]; }`, i, n, bb, n))
					out := e.nix(t, "nix-build", expr, "--no-out-link")
					if data, err := os.ReadFile(e.realPath(out)); err != nil || strings.TrimSpace(string(data)) != strconv.Itoa(n) {
						t.Errorf("built %s: %q, %v", out, data, err)
					}
				}
				mu.Lock()
				ops[kind]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Logf("%d clients for %v: %v", clients, duration, ops)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", e.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && (f[0] == "VmHWM:" || f[0] == "Threads:") {
			t.Logf("daemon %s %s", f[0], strings.Join(f[1:], " "))
			if f[0] == "VmHWM:" {
				if kb, _ := strconv.Atoi(f[1]); kb > 512<<10 {
					t.Errorf("the daemon's peak memory is %d kB", kb)
				}
			}
		}
	}
}
