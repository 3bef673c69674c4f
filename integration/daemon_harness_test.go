package integration

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// daemonEnv is a `storefs daemon` on a store of its own and a real Nix
// store with the same store dir, for the same commands through both.
//
// The store dir is under /var/tmp (a builder's sandbox refuses one under
// /tmp) and never exists as such: storefs keeps the contents in its state
// dir, and the clients read them there (`?real=<state>/store`, as
// docs/daemon.md says); the Nix store keeps them under its root.
type daemonEnv struct {
	base     string
	storeDir string
	state    string
	sock     string
	url      string   // the daemon's store URL, for --store, --to, --from
	env      []string // a Nix client's environment, pointed at the daemon
	ref      *refNix
	args     []string // the daemon's own flags
	cmd      *exec.Cmd
	logf     *os.File
}

// start runs storefs daemon and waits until it listens.
func (e *daemonEnv) start(t testing.TB) {
	t.Helper()
	args := append([]string{"--store-dir", e.storeDir, "--state-dir", e.state, "daemon", "--daemon-socket", e.sock}, e.args...)
	e.cmd = exec.Command(storefsBin, args...)
	logf, err := os.OpenFile(filepath.Join(e.base, "daemon.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	e.logf = logf
	e.cmd.Stdout, e.cmd.Stderr = logf, logf
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.Dial("unix", e.sock); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("storefs daemon did not listen on %s", e.sock)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends the daemon (SIGTERM) and waits for it.
func (e *daemonEnv) stop() {
	if e.cmd != nil {
		e.cmd.Process.Signal(syscall.SIGTERM)
		e.cmd.Wait()
		e.logf.Close()
		e.cmd = nil
	}
}

// kill ends the daemon with SIGKILL, as a crash would.
func (e *daemonEnv) kill() {
	e.cmd.Process.Kill()
	e.cmd.Wait()
	e.logf.Close()
	e.cmd = nil
}

// refNix is the real Nix store of a daemonEnv.
type refNix struct {
	root, url string
	env       []string
}

func newDaemonEnv(t testing.TB, daemonArgs ...string) *daemonEnv {
	t.Helper()
	needTool(t, "nix-store")
	base, err := os.MkdirTemp("/var/tmp", "sfd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	e := &daemonEnv{base: base, storeDir: filepath.Join(base, "store"), state: filepath.Join(base, "state"), sock: filepath.Join(base, "sock")}
	e.url = "unix://" + e.sock + "?real=" + filepath.Join(e.state, "store")
	conf := filepath.Join(base, "client-etc")
	os.MkdirAll(conf, 0o755)
	os.WriteFile(filepath.Join(conf, "nix.conf"), []byte("substituters =\nexperimental-features = nix-command\nsandbox = false\n"), 0o644)
	common := append(os.Environ(),
		"NIX_STORE_DIR="+e.storeDir,
		"NIX_USER_CONF_FILES=",
		"NIX_STATE_DIR="+filepath.Join(base, "client-state"),
		"NIX_LOG_DIR="+filepath.Join(base, "client-log"),
		"XDG_CACHE_HOME="+filepath.Join(base, "cache"),
	)
	e.env = append(append([]string{}, common...), "NIX_REMOTE="+e.url, "NIX_CONF_DIR="+conf, "HOME="+filepath.Join(base, "home"))

	root := filepath.Join(base, "ref")
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/nix.conf"), []byte("build-users-group = nixbld\nsandbox = true\nsubstituters =\n"+
		"experimental-features = nix-command\nrequire-sigs = true\n"), 0o644)
	e.ref = &refNix{root: root, url: "local?root=" + root}
	e.ref.env = append(append([]string{}, common...), "NIX_REMOTE="+e.ref.url, "NIX_CONF_DIR="+filepath.Join(root, "etc"), "HOME="+root)

	e.args = daemonArgs
	e.start(t)
	t.Cleanup(func() {
		e.stop()
		if t.Failed() {
			data, _ := os.ReadFile(filepath.Join(base, "daemon.log"))
			t.Logf("daemon log:\n%s", data)
		}
		// Whatever the test did, the store is sound afterwards.
		storefs(t, nil, "--store-dir", e.storeDir, "--state-dir", e.state, "verify", "--check-contents")
	})
	return e
}

// nix runs a Nix command through the daemon and returns its trimmed stdout.
func (e *daemonEnv) nix(t testing.TB, name string, args ...string) string {
	t.Helper()
	return strings.TrimSpace(string(mustRun(t, e.env, nil, name, args...)))
}

// nixResult runs a Nix command through the daemon.
func (e *daemonEnv) nixResult(t testing.TB, name string, args ...string) result {
	t.Helper()
	return runCmd(t, e.env, nil, name, args...)
}

// refNix runs the same command on the real Nix store.
func (e *daemonEnv) refRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	return strings.TrimSpace(string(mustRun(t, e.ref.env, nil, name, args...)))
}

func (e *daemonEnv) refResult(t testing.TB, name string, args ...string) result {
	t.Helper()
	return runCmd(t, e.ref.env, nil, name, args...)
}

// both runs a command through the daemon and on the real store and fails
// the test unless they print the same.
func (e *daemonEnv) both(t testing.TB, name string, args ...string) string {
	t.Helper()
	got, want := e.nix(t, name, args...), e.refRun(t, name, args...)
	if got != want {
		t.Errorf("%s %s:\nthrough storefs daemon:\n%s\nreal Nix store:\n%s", name, strings.Join(args, " "), got, want)
	}
	return got
}

// realPath is where a store path's contents are, for the daemon's store.
func (e *daemonEnv) realPath(p string) string {
	return filepath.Join(e.state, "store", strings.TrimPrefix(p, e.storeDir+"/"))
}
