package integration

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// realDaemon is Nix's own nix-daemon on a private socket over a store with
// the daemonEnv's store dir, for the same work as storefs daemon.
type realDaemon struct {
	url string
	env []string // a client's environment, pointed at it
}

func startRealDaemon(b testing.TB, e *daemonEnv) *realDaemon {
	b.Helper()
	needTool(b, "nix-daemon")
	root := filepath.Join(e.base, "nixd-root")
	n := nixStoreAt(b, root)
	sock := filepath.Join(e.base, "nixd.sock")
	env := append(append([]string{}, n.env...), "NIX_STORE_DIR="+e.storeDir, "NIX_DAEMON_SOCKET_PATH="+sock,
		"NIX_STATE_DIR="+filepath.Join(root, "nix/var/nix"))
	cmd := exec.Command("nix-daemon")
	cmd.Env = env
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("nix-daemon did not listen")
		}
		time.Sleep(20 * time.Millisecond)
	}
	url := "unix://" + sock + "?root=" + root
	return &realDaemon{url: url, env: append(append([]string{}, e.env...), "NIX_REMOTE="+url)}
}

// BenchmarkDaemon runs the same client work against storefs daemon and
// against Nix's nix-daemon on this machine, in one run, and reports each
// time and the ratio storefs/nix (goal: at most 0.5): 1,000 nix-store -q
// --references calls, nix-instantiate of a 200-derivation DAG, and nix
// copy --to unix:// of a 100 MB closure.
func BenchmarkDaemon(b *testing.B) {
	e := newDaemonEnv(b)
	nd := startRealDaemon(b, e)
	src := writeFile(b, e.base, "q.txt", "query me\n")
	p := e.nix(b, "nix-store", "--add", src)
	mustRun(b, nd.env, nil, "nix-store", "--add", src)

	// A DAG of 200 derivations, each depending on the two before it.
	dag := writeFile(b, e.base, "dag.nix", `let
  mk = i: deps: derivation { name = "n${toString i}"; system = "x86_64-linux"; builder = "/bin/sh";
    args = ["-c" "echo ${toString i} > $out"]; inherit deps; };
  nodes = builtins.genList (i: mk i (if i < 2 then [] else [ (builtins.elemAt nodes (i - 1)) (builtins.elemAt nodes (i - 2)) ])) 200;
in builtins.elemAt nodes 199
`)
	// 100 MB in 100 files of one source tree, added to a third store.
	tree := filepath.Join(e.base, "big")
	os.MkdirAll(tree, 0o755)
	chunk := make([]byte, 1<<20)
	for i := range 100 {
		for j := range chunk {
			chunk[j] = byte(i*7 + j*13)
		}
		os.WriteFile(filepath.Join(tree, fmt.Sprintf("f%03d", i)), chunk, 0o644)
	}
	from := nixStoreAt(b, filepath.Join(e.base, "from"))
	fromEnv := append(append([]string{}, e.ref.env...), "NIX_REMOTE=local?root="+from.Root)
	big := strings.TrimSpace(string(mustRun(b, fromEnv, nil, "nix-store", "--add", tree)))

	timed := func(fn func()) time.Duration {
		start := time.Now()
		fn()
		return time.Since(start)
	}
	for b.Loop() {
		work := []struct {
			name string
			run  func(env []string, url string)
		}{
			{"1000 × nix-store -q --references", func(env []string, _ string) {
				for range 1000 {
					mustRun(b, env, nil, "nix-store", "-q", "--references", p)
				}
			}},
			{"nix-instantiate of 200 derivations", func(env []string, _ string) {
				mustRun(b, env, nil, "nix-instantiate", dag)
			}},
			{"nix copy --to unix:// of 100 MB", func(_ []string, url string) {
				mustRun(b, fromEnv, nil, "nix", "copy", "--to", url, big)
			}},
		}
		for _, w := range work {
			nixT := timed(func() { w.run(nd.env, nd.url) })
			sfsT := timed(func() { w.run(e.env, e.url) })
			b.Logf("%s: nix-daemon %v, storefs daemon %v; storefs/nix %.2f", w.name, nixT, sfsT, sfsT.Seconds()/nixT.Seconds())
			b.ReportMetric(sfsT.Seconds()/nixT.Seconds(), "storefs/nix-"+strings.Fields(w.name)[1])
		}
	}
}
