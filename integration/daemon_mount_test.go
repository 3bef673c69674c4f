package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The headline flow: nix-instantiate through the mount's daemon socket,
// then a cat of the output through the mount builds it.
func TestDaemonInstantiateThenCat(t *testing.T) {
	needTool(t, "nix-instantiate")
	m := newMountStore(t, freshStoreDir(t))
	m.mount(t)
	base := t.TempDir()
	conf := filepath.Join(base, "etc")
	os.MkdirAll(conf, 0o755)
	os.WriteFile(filepath.Join(conf, "nix.conf"), []byte("substituters =\nexperimental-features = nix-command\n"), 0o644)
	env := append(os.Environ(),
		"NIX_REMOTE=unix://"+filepath.Join(m.StateDir, "daemon-socket", "socket"),
		"NIX_STORE_DIR="+m.StoreDir, "NIX_CONF_DIR="+conf, "NIX_USER_CONF_FILES=",
		"NIX_STATE_DIR="+filepath.Join(base, "state"), "NIX_LOG_DIR="+filepath.Join(base, "log"),
		"XDG_CACHE_HOME="+filepath.Join(base, "cache"), "HOME="+base)
	expr := writeFile(t, base, "hello.nix", `{ bb }: derivation {
  name = "hello-through-socket"; system = "x86_64-linux"; builder = "${builtins.storePath bb}/bin/sh";
  args = ["-c" "mkdir $out; echo hello from the socket > $out/greeting"];
}`)
	drv := strings.TrimSpace(string(mustRun(t, env, nil, "nix-instantiate", expr, "--argstr", "bb", m.BB)))
	out := strings.TrimSpace(string(mustRun(t, env, nil, "nix-store", "-q", "--outputs", drv)))
	if !strings.HasPrefix(out, m.StoreDir+"/") {
		t.Fatalf("nix-store -q --outputs %s printed %q", drv, out)
	}
	got, err := catFile(t, out+"/greeting")
	if err != nil || got != "hello from the socket\n" {
		t.Fatalf("cat %s/greeting: %q, %v\n%s", out, got, err, m.log)
	}
	// The client sees it valid now.
	if v := strings.TrimSpace(string(mustRun(t, env, nil, "nix-store", "--check-validity", "--print-invalid", out))); v != "" {
		t.Errorf("nix-store --check-validity says %s is invalid", v)
	}
}
