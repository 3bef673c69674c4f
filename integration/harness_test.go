// Package integration holds end-to-end tests: the storefs binary against
// real Nix 2.8 (the oracle for every format), real FUSE and real caches.
//
// Nothing here skips: a missing tool is a failure, since `make test`
// installs every dependency first. The tests run in a mount namespace of
// their own, and leave alone whatever the machine serves at /store
// (mountns_test.go).
package integration

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// storeDir is the store dir every test uses, for storefs and for Nix.
const storeDir = "/store"

// storefsBin is the storefs binary built once for the whole run.
var storefsBin string

// TestMain runs the tests in a mount namespace of their own
// (mountns_test.go), where it builds storefs.
func TestMain(m *testing.M) {
	if os.Getenv(privateNSEnv) == "" {
		os.Exit(runInPrivateMountNS())
	}
	if err := detachHostMounts(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "storefs-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	storefsBin = filepath.Join(dir, "storefs")
	build := exec.Command("go", "build", "-o", storefsBin, "storefs/cmd/storefs")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building storefs:", err)
		return 1
	}
	if err := isolateSettings(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// isolateSettings keeps the machine's storefs settings from every storefs
// the tests run, so that each has its flags and the defaults only:
// storefs reads them from STOREFS_<NAME> variables and from
// /etc/storefs/storefs.conf, which a user (or a demo) may have set. The
// variables are those of the settings `storefs config show` lists; the
// config file is an empty one in dir.
func isolateSettings(dir string) error {
	conf := filepath.Join(dir, "storefs.conf")
	if err := os.WriteFile(conf, nil, 0o644); err != nil {
		return fmt.Errorf("writing an empty config file for the tests: %w", err)
	}
	os.Setenv("STOREFS_CONFIG", conf)
	out, err := exec.Command(storefsBin, "config", "show").Output()
	if err != nil {
		return fmt.Errorf("storefs config show, to list the settings: %w", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		name, _, ok := strings.Cut(line, " = ")
		if !ok {
			return fmt.Errorf("storefs config show printed %q, not `name = value # source`", line)
		}
		os.Unsetenv("STOREFS_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")))
	}
	return nil
}

// TestSettingsIsolated: every setting a test's storefs sees is its
// default (the tests give the rest as flags).
func TestSettingsIsolated(t *testing.T) {
	for _, line := range strings.Split(strings.TrimSpace(string(storefs(t, nil, "config", "show"))), "\n") {
		if !strings.HasSuffix(line, " # default") {
			t.Errorf("storefs config show in a test: %q, want every setting from its default", line)
		}
	}
}

// needTool fails the test when a program the test drives is missing.
func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed (make test installs it): %v", name, err)
	}
	return p
}

// result is what a finished command left behind.
type result struct {
	stdout, stderr []byte
	code           int
}

func runCmd(t testing.TB, env []string, stdin io.Reader, name string, args ...string) result {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = env
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{out.Bytes(), errb.Bytes(), 0}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("running %s: %v", name, err)
		}
		r.code = ee.ExitCode()
	}
	return r
}

func mustRun(t testing.TB, env []string, stdin io.Reader, name string, args ...string) []byte {
	t.Helper()
	r := runCmd(t, env, stdin, name, args...)
	if r.code != 0 {
		t.Fatalf("%s %s: exit %d\n%s", name, strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// storefs runs the storefs binary and fails the test if it fails.
func storefs(t testing.TB, stdin io.Reader, args ...string) []byte {
	t.Helper()
	return mustRun(t, os.Environ(), stdin, storefsBin, args...)
}

// storefsResult runs the storefs binary and returns whatever happened.
func storefsResult(t testing.TB, stdin io.Reader, args ...string) result {
	t.Helper()
	return runCmd(t, os.Environ(), stdin, storefsBin, args...)
}

// nixStore is a real Nix 2.8 store whose store dir is /store, with its
// contents under Root/nix/store, so tests never touch /store itself.
type nixStore struct {
	Root string
	env  []string
}

func newNixStore(t testing.TB) *nixStore {
	t.Helper()
	needTool(t, "nix-store")
	return nixStoreAt(t, t.TempDir())
}

// nixStoreAt is a Nix store, store dir /store, whose contents live under
// root.
func nixStoreAt(t testing.TB, root string) *nixStore {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := "build-users-group = nixbld\nsandbox = true\nsubstituters =\n" +
		"experimental-features = nix-command\nrequire-sigs = true\n"
	if err := os.WriteFile(filepath.Join(root, "etc/nix.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(),
		"NIX_STORE_DIR="+storeDir,
		"NIX_REMOTE=local?root="+root,
		"NIX_CONF_DIR="+filepath.Join(root, "etc"),
		"NIX_USER_CONF_FILES=",
		"HOME="+root,
	)
	return &nixStore{Root: root, env: env}
}

// run runs a Nix command against the store and returns its stdout.
func (n *nixStore) run(t testing.TB, stdin io.Reader, name string, args ...string) []byte {
	t.Helper()
	return mustRun(t, n.env, stdin, name, args...)
}

// line runs a Nix command and returns its stdout without the final newline.
func (n *nixStore) line(t testing.TB, name string, args ...string) string {
	t.Helper()
	return strings.TrimSuffix(string(n.run(t, nil, name, args...)), "\n")
}

// realPath is where the contents of a /store path live on disk.
func (n *nixStore) realPath(storePath string) string {
	return filepath.Join(n.Root, "nix/store", strings.TrimPrefix(storePath, storeDir+"/"))
}

// writeFile writes content to dir/name and returns the path.
func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// busyboxTree makes a directory with bin/busybox (Debian's busybox-static)
// and bin/sh and the other applets tests use as symlinks to it: the builder
// of every test derivation once added to a store.
func busyboxTree(t testing.TB) string {
	t.Helper()
	src := needTool(t, "busybox")
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "busybox")
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, applet := range []string{"sh", "cat", "echo", "mkdir", "cp", "ls", "sleep", "printf", "ln", "chmod", "head", "seq"} {
		if err := os.Symlink("busybox", filepath.Join(bin, applet)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
