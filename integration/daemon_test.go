package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Stock Nix 2.8 clients against `storefs daemon`, each command held
// against the same command on a real Nix store (docs/daemon.md).

// daemonTree writes a file and a directory to add.
func daemonTree(t *testing.T, e *daemonEnv) (file, dir string) {
	t.Helper()
	src := filepath.Join(e.base, "src")
	dir = filepath.Join(src, "tree")
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	writeFile(t, dir, "a", "aaa\n")
	writeFile(t, filepath.Join(dir, "sub"), "b", "bbb\n")
	os.WriteFile(filepath.Join(dir, "run"), []byte("#!/bin/sh\n"), 0o755)
	os.Symlink("a", filepath.Join(dir, "link"))
	return writeFile(t, src, "hello.txt", "hello\n"), dir
}

func TestDaemonAddAndQuery(t *testing.T) {
	e := newDaemonEnv(t)
	file, dir := daemonTree(t, e)
	var paths []string
	for _, args := range [][]string{
		{"--add", file},
		{"--add", dir},
		{"--add-fixed", "sha256", file},
		{"--add-fixed", "--recursive", "sha1", dir},
		{"--add-fixed", "--recursive", "sha256", file},
	} {
		paths = append(paths, e.both(t, "nix-store", args...))
	}
	for _, p := range paths {
		for _, q := range []string{"--hash", "--size", "--references", "--requisites", "--deriver", "--referrers"} {
			e.both(t, "nix-store", "-q", q, p)
		}
		e.both(t, "nix-store", "--check-validity", p)
		if got, want := daemonPathInfo(t, e.nix(t, "nix", "path-info", "--json", "-r", p)), daemonPathInfo(t, e.refRun(t, "nix", "path-info", "--json", "-r", p)); got != want {
			t.Errorf("nix path-info --json -r %s:\nstorefs: %s\nNix:     %s", p, got, want)
		}
	}
	// What a client reads itself, it finds where docs/daemon.md says.
	if data, err := os.ReadFile(e.realPath(paths[0])); err != nil || string(data) != "hello\n" {
		t.Errorf("the added file at its real path: %q, %v", data, err)
	}
	if r := e.nixResult(t, "nix-store", "--check-validity", e.storeDir+"/00000000000000000000000000000000-nothing"); r.code == 0 {
		t.Error("--check-validity of a path never added succeeded")
	}
	if r := e.nixResult(t, "nix", "store", "ping"); !strings.Contains(string(r.stdout)+string(r.stderr), "Version: 2.8.0") {
		t.Errorf("nix store ping: %s%s", r.stdout, r.stderr)
	}
	e.both(t, "nix-store", "--verify", "--check-contents")
}

// daemonPathInfo is nix path-info --json without what differs by design:
// registration times, and ultimate (storefs does not record it).
func daemonPathInfo(t *testing.T, s string) string {
	t.Helper()
	var infos []map[string]any
	if err := json.Unmarshal([]byte(s), &infos); err != nil {
		t.Fatalf("path-info JSON %q: %v", s, err)
	}
	for _, i := range infos {
		delete(i, "registrationTime")
		delete(i, "ultimate")
	}
	out, _ := json.Marshal(infos)
	return string(out)
}

// daemonExpr is the expression both stores instantiate: a derivation, one
// that refers to it, a source and a text, and one that fails.
const daemonExpr = `{ bb }:
let
  bbp = builtins.storePath bb;
  mk = attrs: derivation ({ system = "x86_64-linux"; builder = "${bbp}/bin/sh"; } // attrs);
in rec {
  dep = mk { name = "dep"; args = ["-c" "echo building dep; echo dep > $out"]; };
  top = mk { name = "top"; t = builtins.toFile "t.txt" "text"; args = ["-c" "echo building top; cat ${dep} $t ${./src/hello.txt} > $out"]; };
  fail = mk { name = "fail"; args = ["-c" "echo failing now; exit 3"]; };
}
`

// instantiated adds the busybox tree to both stores and instantiates the
// expression in both; it returns the busybox path and the .drv paths.
func instantiated(t *testing.T, e *daemonEnv, attrs ...string) (string, map[string]string) {
	t.Helper()
	needTool(t, "nix-instantiate")
	daemonTree(t, e)
	bb := e.both(t, "nix-store", "--add", busyboxTree(t))
	expr := writeFile(t, e.base, "expr.nix", daemonExpr)
	args := []string{expr, "--argstr", "bb", bb}
	for _, a := range attrs {
		args = append(args, "-A", a)
	}
	drvs := strings.Fields(e.both(t, "nix-instantiate", args...))
	if len(drvs) != len(attrs) {
		t.Fatalf("nix-instantiate printed %v", drvs)
	}
	out := map[string]string{}
	for i, a := range attrs {
		out[a] = drvs[i]
	}
	return bb, out
}

func TestDaemonInstantiateAndBuild(t *testing.T) {
	e := newDaemonEnv(t)
	bb, drvs := instantiated(t, e, "top", "dep", "fail")
	for _, d := range drvs {
		e.both(t, "nix-store", "-q", "--outputs", d)
		e.both(t, "nix-store", "-q", "--references", d)
	}
	// The builders' output reaches the client live, as build log lines.
	r := e.nixResult(t, "nix-store", "-r", drvs["top"])
	if r.code != 0 || !strings.Contains(string(r.stderr), "building dep\n") || !strings.Contains(string(r.stderr), "building top\n") {
		t.Errorf("nix-store -r %s: exit %d, no build log lines in its stderr:\n%s", drvs["top"], r.code, r.stderr)
	}
	out := e.both(t, "nix-store", "-r", drvs["top"])
	for _, q := range []string{"--hash", "--size", "--references", "--deriver", "--requisites"} {
		e.both(t, "nix-store", "-q", q, out)
	}
	if data, err := os.ReadFile(e.realPath(out)); err != nil || !strings.HasPrefix(string(data), "dep\ntext") {
		t.Errorf("built output %s: %q, %v", out, data, err)
	}
	dep := e.nix(t, "nix-store", "-q", "--outputs", drvs["dep"])
	e.both(t, "nix-store", "-q", "--referrers", dep)

	// nix-build makes its result link and an indirect root through the
	// daemon; nix build (BuildPathsWithResults) likewise.
	link := filepath.Join(e.base, "result-dep")
	e.nix(t, "nix-build", filepath.Join(e.base, "expr.nix"), "--argstr", "bb", bb, "-A", "dep", "-o", link)
	if target, err := os.Readlink(link); err != nil || target != dep {
		t.Errorf("nix-build's result link: %q, %v, want %s", target, err, dep)
	}
	if roots := e.nix(t, "nix-store", "--gc", "--print-roots"); !strings.Contains(roots, link+" -> "+dep) {
		t.Errorf("print-roots does not show %s:\n%s", link, roots)
	}
	link2 := filepath.Join(e.base, "result-nix-build")
	e.nix(t, "nix", "build", drvs["top"], "--out-link", link2)
	if target, err := os.Readlink(link2); err != nil || target != out {
		t.Errorf("nix build's result link: %q, %v, want %s", target, err, out)
	}

	// A failing build: the client fails with the log's last lines.
	r = e.nixResult(t, "nix-store", "-r", drvs["fail"])
	if r.code == 0 || !strings.Contains(string(r.stderr), "failing now") {
		t.Errorf("nix-store -r of a failing derivation: exit %d\n%s", r.code, r.stderr)
	}
	r = e.nixResult(t, "nix", "build", drvs["fail"], "--no-link")
	if r.code == 0 || !strings.Contains(string(r.stderr), "failing now") {
		t.Errorf("nix build of a failing derivation: exit %d\n%s", r.code, r.stderr)
	}
	if r := e.refResult(t, "nix-store", "-r", drvs["fail"]); r.code == 0 {
		t.Error("the real store built the failing derivation")
	}

	// nix log finds the logs of builds a client asked for, with its log
	// dir pointed at the daemon's (docs/daemon.md).
	logEnv := append(append([]string{}, e.env...), "NIX_LOG_DIR="+filepath.Join(e.state, "nix-log"))
	for drv, want := range map[string]string{drvs["dep"]: "building dep\n", drvs["fail"]: "failing now\n", out: "building top\n"} {
		r := runCmd(t, logEnv, nil, "nix", "log", drv)
		if r.code != 0 || string(r.stdout) != want {
			t.Errorf("nix log %s: exit %d, %q, want %q\n%s", drv, r.code, r.stdout, want, r.stderr)
		}
	}
}

func TestDaemonExportImportCopy(t *testing.T) {
	e := newDaemonEnv(t)
	_, drvs := instantiated(t, e, "top", "dep")
	// Built on the real store only, then brought over three ways.
	out := e.refRun(t, "nix-store", "-r", drvs["top"])
	closure := strings.Fields(e.refRun(t, "nix-store", "-q", "--requisites", out))
	sort.Strings(closure)

	// nix copy --to the daemon: unsigned input-addressed paths are
	// refused, as the real daemon refuses them, unless told not to check.
	r := runCmd(t, e.ref.env, nil, "nix", "copy", "--to", e.url, out)
	if r.code == 0 || !strings.Contains(string(r.stderr), "signature") {
		t.Errorf("nix copy --to of unsigned paths: exit %d\n%s", r.code, r.stderr)
	}
	mustRun(t, e.ref.env, nil, "nix", "copy", "--no-check-sigs", "--to", e.url, out)
	for _, p := range closure {
		e.both(t, "nix-store", "-q", "--hash", p)
		e.both(t, "nix-store", "-q", "--references", p)
	}
	e.both(t, "nix-store", "-q", "--deriver", out)

	// nix copy --from the daemon into a fresh real store.
	fresh := nixStoreAt(t, filepath.Join(e.base, "fresh"))
	freshURL := "local?root=" + fresh.Root
	mustRun(t, e.env, nil, "nix", "copy", "--no-check-sigs", "--from", e.url, "--to", freshURL, out)
	freshEnv := append(append([]string{}, e.ref.env...), "NIX_REMOTE="+freshURL)
	got := strings.Fields(string(mustRun(t, freshEnv, nil, "nix-store", "-q", "--requisites", out)))
	sort.Strings(got)
	if strings.Join(got, " ") != strings.Join(closure, " ") {
		t.Errorf("nix copy --from: %v, want %v", got, closure)
	}

	// --export through the daemon reads the NARs where the daemon keeps
	// them; --import into the real store takes them.
	export := mustRun(t, e.env, nil, "nix-store", "--export", out)
	want := mustRun(t, e.ref.env, nil, "nix-store", "--export", out)
	if string(export) != string(want) {
		t.Errorf("nix-store --export through the daemon differs from the real store's (%d and %d bytes)", len(export), len(want))
	}
	other := nixStoreAt(t, filepath.Join(e.base, "other"))
	otherEnv := append(append([]string{}, e.ref.env...), "NIX_REMOTE=local?root="+other.Root)
	mustRun(t, otherEnv, strings.NewReader(string(mustRun(t, e.env, nil, "nix-store", append([]string{"--export"}, closure...)...))), "nix-store", "--import")
	for _, p := range closure {
		if got, want := string(mustRun(t, otherEnv, nil, "nix-store", "-q", "--hash", p)), e.refRun(t, "nix-store", "-q", "--hash", p); strings.TrimSpace(got) != want {
			t.Errorf("%s imported from the daemon's export: hash %s, want %s", p, got, want)
		}
	}

	// --import into the daemon (a trusted client: dontCheckSigs holds).
	depOut := e.refRun(t, "nix-store", "-r", drvs["dep"])
	mustRun(t, e.env, strings.NewReader(string(mustRun(t, e.ref.env, nil, "nix-store", "--export", depOut))), "nix-store", "--import")
	e.both(t, "nix-store", "-q", "--hash", depOut)
	e.both(t, "nix-store", "-q", "--deriver", depOut)
}

func TestDaemonGC(t *testing.T) {
	e := newDaemonEnv(t)
	file, dir := daemonTree(t, e)
	a := e.both(t, "nix-store", "--add", file)
	b := e.both(t, "nix-store", "--add", dir)
	e.nix(t, "nix-store", "--add-root", filepath.Join(e.base, "root-a"), "-r", a)
	e.refRun(t, "nix-store", "--add-root", filepath.Join(e.base, "ref-root-a"), "-r", a)
	if roots := e.nix(t, "nix-store", "--gc", "--print-roots"); roots != filepath.Join(e.base, "root-a")+" -> "+a {
		t.Errorf("--print-roots: %q", roots)
	}
	e.both(t, "nix-store", "--gc", "--print-dead")
	e.both(t, "nix-store", "--gc", "--print-live")
	if r, rr := e.nixResult(t, "nix-store", "--delete", a), e.refResult(t, "nix-store", "--delete", a); r.code == 0 || rr.code == 0 {
		t.Errorf("--delete of a rooted path: exit %d (real store: %d)", r.code, rr.code)
	}
	e.both(t, "nix-store", "--delete", b)
	for _, p := range []string{a, b} {
		if r, rr := e.nixResult(t, "nix-store", "--check-validity", p), e.refResult(t, "nix-store", "--check-validity", p); (r.code == 0) != (rr.code == 0) {
			t.Errorf("%s after --delete: valid here %v, in the real store %v", p, r.code == 0, rr.code == 0)
		}
	}
	c := e.both(t, "nix-store", "--add", filepath.Join(e.base, "src", "tree", "a"))
	d := e.both(t, "nix-store", "--add", filepath.Join(e.base, "src", "tree", "sub"))
	// --max-freed stops once that much is freed: one of the two goes.
	e.nix(t, "nix-store", "--gc", "--max-freed", "1")
	gone := 0
	for _, p := range []string{c, d} {
		if r := e.nixResult(t, "nix-store", "--check-validity", p); r.code != 0 {
			gone++
		}
	}
	if gone != 1 {
		t.Errorf("--gc --max-freed 1 deleted %d paths, want 1", gone)
	}
	e.nix(t, "nix-store", "--gc")
	if r := e.nixResult(t, "nix-store", "--check-validity", c); r.code == 0 {
		t.Errorf("%s is valid after --gc", c)
	}
	if r := e.nixResult(t, "nix-store", "--check-validity", a); r.code != 0 {
		t.Errorf("the rooted %s went in --gc", a)
	}
}

// A client the daemon does not trust is refused what Nix refuses, and can
// still query and add; one not allowed is not served at all.
func TestDaemonTrust(t *testing.T) {
	e := newDaemonEnv(t, "--trusted-users", "nobody-here")
	file, _ := daemonTree(t, e)
	p := e.both(t, "nix-store", "--add", file)
	e.both(t, "nix-store", "-q", "--hash", p)
	key := filepath.Join(e.base, "key")
	secret := mustRun(t, e.env, nil, "nix", "key", "generate-secret", "--key-name", "test-1")
	os.WriteFile(key, secret, 0o600)
	r := e.nixResult(t, "nix", "store", "sign", "--key-file", key, p)
	if r.code == 0 || !strings.Contains(string(r.stderr), "not a trusted user") {
		t.Errorf("untrusted nix store sign: exit %d\n%s", r.code, r.stderr)
	}
	other := writeFile(t, e.base, "other.txt", "other\n")
	q := e.refRun(t, "nix-store", "--add", other)
	_ = q
	exp := mustRun(t, e.ref.env, nil, "nix-store", "--export", q)
	// An export stream carries no content address nor signature: an
	// untrusted client's import is refused, as by Nix's daemon.
	if r := runCmd(t, e.env, strings.NewReader(string(exp)), "nix-store", "--import"); r.code == 0 || !strings.Contains(string(r.stderr), "signature") {
		t.Errorf("untrusted nix-store --import: exit %d\n%s", r.code, r.stderr)
	}

	n := newDaemonEnv(t, "--allowed-users", "nobody-here", "--trusted-users", "nobody-here")
	// As with nix-daemon, whose client says the same: "cannot open
	// connection to remote store ...: reading from file: Connection reset
	// by peer".
	if r := n.nixResult(t, "nix-store", "--add", file); r.code == 0 || !strings.Contains(string(r.stderr), "cannot open connection to remote store") {
		t.Errorf("a user not allowed: exit %d\n%s", r.code, r.stderr)
	}
}

// The trusted nix store sign adds a signature that path-info shows.
func TestDaemonSign(t *testing.T) {
	e := newDaemonEnv(t)
	file, _ := daemonTree(t, e)
	p := e.nix(t, "nix-store", "--add", file)
	key := filepath.Join(e.base, "key")
	os.WriteFile(key, mustRun(t, e.env, nil, "nix", "key", "generate-secret", "--key-name", "test-1"), 0o600)
	e.nix(t, "nix", "store", "sign", "--key-file", key, p)
	if info := e.nix(t, "nix", "path-info", "--sigs", p); !strings.Contains(info, "test-1:") {
		t.Errorf("nix path-info --sigs after nix store sign: %s", info)
	}
}

// A client run as an unprivileged user (nobody) through the 0666 socket:
// it can add, query and build a fixed-output derivation, and is refused
// repair and signing, as by Nix's daemon.
func TestDaemonUnprivileged(t *testing.T) {
	runuser := needTool(t, "runuser")
	e := newDaemonEnv(t)
	os.Chmod(e.base, 0o755)
	home := filepath.Join(e.base, "nobody")
	os.MkdirAll(home, 0o777)
	os.Chmod(home, 0o777)
	bb, _ := instantiated(t, e, "dep")
	fod := writeFile(t, e.base, "fod.nix", `{ bb }:
let bbp = builtins.storePath bb; in
derivation { name = "fod"; system = "x86_64-linux"; builder = "${bbp}/bin/sh"; args = ["-c" "echo -n fixed > $out"];
  outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = builtins.hashString "sha256" "fixed"; }
`)
	os.Chmod(filepath.Join(e.base, "src"), 0o755)
	os.Chmod(filepath.Join(e.base, "src", "hello.txt"), 0o644)
	key := filepath.Join(home, "key")
	os.WriteFile(key, mustRun(t, e.env, nil, "nix", "key", "generate-secret", "--key-name", "test-1"), 0o644)
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "NIX_USER_CONF_FILES=",
		"NIX_STATE_DIR=" + filepath.Join(home, "state"), "NIX_LOG_DIR=" + filepath.Join(home, "log"),
		"XDG_CACHE_HOME=" + filepath.Join(home, "cache"), "NIX_CONF_DIR=" + filepath.Join(e.base, "client-etc")}
	for _, kv := range e.env {
		if strings.HasPrefix(kv, "NIX_STORE_DIR=") || strings.HasPrefix(kv, "NIX_REMOTE=") {
			env = append(env, kv)
		}
	}
	as := func(args ...string) result {
		return runCmd(t, env, nil, runuser, append([]string{"-u", "nobody", "--"}, args...)...)
	}
	if r := as("id", "-un"); strings.TrimSpace(string(r.stdout)) != "nobody" {
		t.Fatalf("runuser: %s%s", r.stdout, r.stderr)
	}
	added := as("nix-store", "--add", filepath.Join(e.base, "src", "hello.txt"))
	if want := e.refRun(t, "nix-store", "--add", filepath.Join(e.base, "src", "hello.txt")); added.code != 0 || strings.TrimSpace(string(added.stdout)) != want {
		t.Errorf("nobody's nix-store --add: exit %d %s%s, want %s", added.code, added.stdout, added.stderr, want)
	}
	if r := as("nix-store", "-q", "--hash", bb); r.code != 0 || strings.TrimSpace(string(r.stdout)) != e.refRun(t, "nix-store", "-q", "--hash", bb) {
		t.Errorf("nobody's query: exit %d %s%s", r.code, r.stdout, r.stderr)
	}
	built := as("nix-build", fod, "--argstr", "bb", bb, "--no-out-link")
	if want := e.refRun(t, "nix-build", fod, "--argstr", "bb", bb, "--no-out-link"); built.code != 0 || strings.TrimSpace(string(built.stdout)) != want {
		t.Errorf("nobody's nix-build of a fixed-output derivation: exit %d %s%s, want %s", built.code, built.stdout, built.stderr, want)
	}
	for _, args := range [][]string{
		{"nix-store", "--verify", "--repair"},
		{"nix", "store", "sign", "--key-file", key, bb},
	} {
		if r := as(args...); r.code == 0 || !strings.Contains(string(r.stderr), "not a trusted user") {
			t.Errorf("nobody's %s: exit %d\n%s", strings.Join(args, " "), r.code, r.stderr)
		}
	}
}
