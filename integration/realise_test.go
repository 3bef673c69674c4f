package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// buildEnv is one real Nix store and one storefs store, both with the
// busybox tree (the builder of every derivation) at the same path.
// Derivations are instantiated by nix-instantiate, added to storefs with
// storefs derivation add, and realised by both.
type buildEnv struct {
	n     *nixStore
	state string // storefs's state dir
	bb    string // the busybox tree's store path
	dir   string // where expressions are written
}

func newBuildEnv(t testing.TB) *buildEnv {
	t.Helper()
	needTool(t, "nix-instantiate")
	e := &buildEnv{n: newNixStore(t), state: t.TempDir(), dir: t.TempDir()}
	tree := busyboxTree(t)
	e.bb = e.n.line(t, "nix-store", "--add", tree)
	if got := strings.TrimSpace(string(e.sfs(t, "add", tree))); got != e.bb {
		t.Fatalf("storefs add of the busybox tree gave %s, nix-store --add %s", got, e.bb)
	}
	return e
}

// sfs runs storefs on the env's store and fails the test if it fails.
func (e *buildEnv) sfs(t testing.TB, args ...string) []byte {
	t.Helper()
	return storefs(t, nil, append([]string{"--store-dir", storeDir, "--state-dir", e.state}, args...)...)
}

// sfsResult runs storefs on the env's store and returns what happened.
func (e *buildEnv) sfsResult(t testing.TB, args ...string) result {
	t.Helper()
	return storefsResult(t, nil, append([]string{"--store-dir", storeDir, "--state-dir", e.state}, args...)...)
}

// exprPrelude opens every expression: bb is the busybox tree, mk a
// derivation built by its shell.
const exprPrelude = `{ bb }:
let
  bbp = builtins.storePath bb;
  mk = attrs: derivation ({ system = "x86_64-linux"; builder = "${bbp}/bin/sh"; } // attrs);
in `

// instantiate writes the expression body (after exprPrelude) to a file and
// returns the .drv path of each attribute, as nix-instantiate prints them.
func (e *buildEnv) instantiate(t testing.TB, body string, attrs ...string) []string {
	t.Helper()
	f, err := os.CreateTemp(e.dir, "expr-*.nix")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(exprPrelude + body); err != nil {
		t.Fatal(err)
	}
	f.Close()
	args := []string{f.Name(), "--argstr", "bb", e.bb}
	for _, a := range attrs {
		args = append(args, "-A", a)
	}
	drvs := strings.Fields(e.n.line(t, "nix-instantiate", args...))
	if len(drvs) != len(attrs) {
		t.Fatalf("nix-instantiate of %v printed %v", attrs, drvs)
	}
	return drvs
}

// addDrvs gives storefs the .drv files of drvs and of their input
// derivations, from Nix's store, and checks storefs puts each at Nix's path.
func (e *buildEnv) addDrvs(t testing.TB, drvs ...string) {
	t.Helper()
	// nix-store -qR lists references before referrers.
	closure := strings.Fields(e.n.line(t, "nix-store", append([]string{"-qR"}, drvs...)...))
	var files, want []string
	for _, p := range closure {
		if strings.HasSuffix(p, ".drv") {
			files = append(files, e.n.realPath(p))
			want = append(want, p)
		}
	}
	got := strings.Fields(string(e.sfs(t, append([]string{"derivation", "add"}, files...)...)))
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("storefs derivation add printed\n%v\nwant\n%v", got, want)
	}
}

// pathInfo is what both nix path-info --json and storefs path-info --json
// say of a path.
type pathInfo struct {
	Path       string   `json:"path"`
	Valid      *bool    `json:"valid"`
	NarHash    string   `json:"narHash"`
	NarSize    uint64   `json:"narSize"`
	References []string `json:"references"`
	CA         string   `json:"ca"`
	Deriver    string   `json:"deriver"`
}

func parsePathInfos(t testing.TB, who string, data []byte) map[string]pathInfo {
	t.Helper()
	var infos []pathInfo
	if err := json.Unmarshal(data, &infos); err != nil {
		t.Fatalf("%s path-info --json: %v\n%s", who, err, data)
	}
	m := map[string]pathInfo{}
	for _, i := range infos {
		sort.Strings(i.References)
		if i.References == nil {
			i.References = []string{}
		}
		m[i.Path] = i
	}
	return m
}

// nixInfos and sfsInfos ask each store about paths.
func (e *buildEnv) nixInfos(t testing.TB, paths []string) map[string]pathInfo {
	t.Helper()
	return parsePathInfos(t, "nix", e.n.run(t, nil, "nix", append([]string{"path-info", "--json"}, paths...)...))
}

func (e *buildEnv) sfsInfos(t testing.TB, paths []string) map[string]pathInfo {
	t.Helper()
	return parsePathInfos(t, "storefs", e.sfs(t, append([]string{"path-info", "--json"}, paths...)...))
}

// outputsOf is every output path of drvs, from Nix.
func (e *buildEnv) outputsOf(t testing.TB, drvs ...string) []string {
	t.Helper()
	var outs []string
	for _, d := range drvs {
		outs = append(outs, strings.Fields(e.n.line(t, "nix-store", "-q", "--outputs", d))...)
	}
	sort.Strings(outs)
	return outs
}

// compareWithNix checks that every output of drvs (which both stores have
// realised) has the same narHash, narSize, references, CA and deriver in
// both.
func (e *buildEnv) compareWithNix(t testing.TB, drvs ...string) {
	t.Helper()
	outs := e.outputsOf(t, drvs...)
	want, got := e.nixInfos(t, outs), e.sfsInfos(t, outs)
	for _, p := range outs {
		w, g := want[p], got[p]
		if w.Path == "" || (w.Valid != nil && !*w.Valid) {
			t.Errorf("%s: not valid in Nix", p)
			continue
		}
		if g.Path == "" || (g.Valid != nil && !*g.Valid) {
			t.Errorf("%s: not valid in storefs", p)
			continue
		}
		if w.NarHash != g.NarHash || w.NarSize != g.NarSize || w.CA != g.CA || w.Deriver != g.Deriver ||
			strings.Join(w.References, " ") != strings.Join(g.References, " ") {
			t.Errorf("%s differs:\n storefs %+v\n nix     %+v", p, g, w)
		}
	}
}

// realiseBoth realises drvs with Nix and with storefs (extra flags added)
// with jobs builds at once; both must succeed and print the same output
// paths.
func (e *buildEnv) realiseBoth(t testing.TB, jobs int, drvs []string, extra ...string) {
	t.Helper()
	nixOut := e.n.run(t, nil, "nix-store", append([]string{"--realise", "--max-jobs", fmt.Sprint(jobs)}, drvs...)...)
	args := append([]string{"realise", "--max-jobs", fmt.Sprint(jobs)}, extra...)
	sfsOut := e.sfs(t, append(args, drvs...)...)
	n, s := strings.Fields(string(nixOut)), strings.Fields(string(sfsOut))
	sort.Strings(n)
	sort.Strings(s)
	if strings.Join(n, " ") != strings.Join(s, " ") {
		t.Errorf("output paths: storefs printed %v, nix-store --realise %v", s, n)
	}
}

// checkVerify runs storefs verify --check-contents, which must be clean.
func (e *buildEnv) checkVerify(t testing.TB) {
	t.Helper()
	if r := e.sfsResult(t, "verify", "--check-contents"); r.code != 0 {
		t.Errorf("storefs verify --check-contents: exit %d\n%s", r.code, r.stderr)
	}
}

// checkInvalid fails unless storefs says each path is not valid.
func (e *buildEnv) checkInvalid(t testing.TB, paths ...string) {
	t.Helper()
	for p, i := range e.sfsInfos(t, paths) {
		if i.Valid == nil || *i.Valid {
			t.Errorf("%s is valid in storefs, should not be", p)
		}
		if _, err := os.Lstat(filepath.Join(e.state, "store", strings.TrimPrefix(p, storeDir+"/"))); err == nil {
			t.Errorf("%s: contents left in the backing directory", p)
		}
	}
}

// realiseExpr is every kind of derivation the comparison with Nix covers.
const realiseExpr = `rec {
  trivial = mk { name = "trivial"; args = ["-c" "echo hello > $out"]; };
  none = mk { name = "none"; args = ["-c" "mkdir $out; echo no references > $out/f"]; };
  self = mk { name = "self"; args = ["-c" "mkdir $out; echo $out > $out/me; ln -s $out/me $out/link"]; };
  input = mk { name = "input"; args = ["-c" "echo ${trivial} ${bbp} > $out"]; };
  multi = mk {
    name = "multi"; outputs = ["out" "dev" "lib"];
    args = ["-c" "mkdir $out $dev $lib; echo $dev > $out/dev-path; echo $lib > $dev/lib-path; echo lib > $lib/x; echo $out > $out/self"];
  };
  multiUser = mk { name = "multi-user"; args = ["-c" "echo ${multi.lib} > $out"]; };
  c1 = mk { name = "c1"; args = ["-c" "echo c1 > $out"]; };
  c2 = mk { name = "c2"; args = ["-c" "echo ${c1} > $out; cat ${c1} >> $out"]; };
  c3 = mk { name = "c3"; args = ["-c" "cat ${c2} > $out"]; };
  base = mk { name = "base"; args = ["-c" "echo base > $out"]; };
  left = mk { name = "left"; args = ["-c" "echo ${base} left > $out"]; };
  right = mk { name = "right"; args = ["-c" "echo ${base} right > $out"]; };
  diamond = mk { name = "diamond"; args = ["-c" "echo ${left} ${right} > $out"]; };
  flatSha256 = mk {
    name = "flat-sha256"; args = ["-c" "printf fixed > $out"];
    outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = "992a93455c71fedd36ac9bbc439952c041cf61445958472af479269b8d873513";
  };
  flatSha1 = mk {
    name = "flat-sha1"; args = ["-c" "printf fixed > $out"];
    outputHashMode = "flat"; outputHashAlgo = "sha1"; outputHash = "7bc555991dbab41aa198fbd77899d49a277d4d6d";
  };
  recSha256 = mk {
    name = "rec-sha256"; args = ["-c" "mkdir $out; printf fixed > $out/f; ln -s f $out/l; printf '#!x' > $out/x; chmod +x $out/x"];
    outputHashMode = "recursive"; outputHashAlgo = "sha256"; outputHash = "@REC_SHA256@";
  };
  recSha1 = mk {
    name = "rec-sha1"; args = ["-c" "printf fixed > $out"];
    outputHashMode = "recursive"; outputHashAlgo = "sha1"; outputHash = "@REC_SHA1@";
  };
  fixedUser = mk { name = "fixed-user"; args = ["-c" "cat ${flatSha256} ${recSha256}/f > $out"]; };
  silent = mk { name = "silent"; args = ["-c" "sleep 1; mkdir $out"]; };
  large = mk {
    name = "large";
    args = ["-c" ''
      mkdir -p $out/many/deeper
      seq 1 3000000 > $out/big
      head -c 5000000 /dev/zero > $out/zeros
      i=0; while [ $i -lt 2000 ]; do echo $i > $out/many/f$i; i=$((i+1)); done
      echo ${trivial} > $out/many/deeper/ref
      ln $out/big $out/hardlink
      printf '#!/bin/sh\n' > $out/exe; chmod 0755 $out/exe
      chmod 0600 $out/zeros; chmod 0700 $out/many
      touch $out/empty; mkdir $out/emptydir
      ln -s /nowhere $out/dangling
    ''];
  };
  strings = mk {
    name = "strings";
    weird = "q\"uote 'single' back\\slash\nnewline\ttab \r cr $HOME \${x} é ☃";
    passAsFile = ["file"];
    file = "passed\nas \"file\"\n";
    args = ["-c" ''
      printf '%s|' "$weird" > $out
      cat "$filePath" >> $out
      printf '%s|' "$#" "$0" >> $out
      echo "$PWD $NIX_BUILD_TOP $TMPDIR $HOME $PATH $NIX_STORE" >> $out
    '' "arg with \"quotes\"\nand a newline"];
  };
  envDump = mk { name = "env-dump"; args = ["-c" "export > $out; pwd >> $out; id >> $out; stat -c '%a %u %g %s %n' /build /build/.attr-* >> $out; umask >> $out"]; passAsFile = ["big"]; big = "x"; };
  outFile = mk { name = "out-link"; args = ["-c" "ln -s ${trivial} $out"]; };
  i686 = mk { name = "i686"; system = "i686-linux"; args = ["-c" "uname -m > $out"]; };
  kvm = mk { name = "kvm"; requiredSystemFeatures = ["kvm"]; args = ["-c" "ls /dev > $out"]; };
  logs = mk { name = "logs"; args = ["-c" "export >&2; echo to stdout; echo to stderr >&2; printf 'no newline at the end'; echo > $out"]; };
  fixedEnv = mk {
    name = "fixed-env"; args = ["-c" "export; printf fixed > $out"]; impureEnvVars = ["RZ_IMPURE" "RZ_UNSET"];
    outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = "992a93455c71fedd36ac9bbc439952c041cf61445958472af479269b8d873513";
  };
}`

// recursiveHashes makes the trees recSha256 and recSha1 build and asks
// nix-hash for their recursive hashes.
func recursiveHashes(t *testing.T) (sha256, sha1 string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tree")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "f", "fixed")
	if err := os.Symlink("f", filepath.Join(dir, "l")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "x"), []byte("#!x"), 0o755); err != nil {
		t.Fatal(err)
	}
	file := writeFile(t, t.TempDir(), "f", "fixed")
	sha256 = strings.TrimSpace(string(mustRun(t, os.Environ(), nil, "nix-hash", "--type", "sha256", "--base32", dir)))
	sha1 = strings.TrimSpace(string(mustRun(t, os.Environ(), nil, "nix-hash", "--type", "sha1", file)))
	return sha256, sha1
}

var realiseAttrs = []string{"trivial", "none", "self", "input", "multi", "multiUser", "c1", "c2", "c3",
	"base", "left", "right", "diamond", "flatSha256", "flatSha1", "recSha256", "recSha1", "fixedUser",
	"silent", "large", "strings", "envDump", "outFile", "i686", "logs", "fixedEnv"}

// TestRealiseAgainstNix realises derivations instantiated by Nix with
// storefs and with Nix: every output must register with the narHash,
// narSize, references, CA and deriver Nix computes.
func TestRealiseAgainstNix(t *testing.T) {
	e := newBuildEnv(t)
	sha256, sha1 := recursiveHashes(t)
	expr := strings.NewReplacer("@REC_SHA256@", sha256, "@REC_SHA1@", sha1).Replace(realiseExpr)
	attrs := realiseAttrs
	if _, err := os.Stat("/dev/kvm"); err == nil {
		// Nix offers the kvm feature, and /dev/kvm, where there is one.
		attrs = append([]string{"kvm"}, attrs...)
	}
	drvs := e.instantiate(t, expr, attrs...)
	e.addDrvs(t, drvs...)
	// A fixed-output builder gets the impureEnvVars from the environment
	// of whoever builds.
	t.Setenv("RZ_IMPURE", "from the caller")
	e.n.env = append(e.n.env, "RZ_IMPURE=from the caller")
	// --max-silent-time is longer than the silent builder's silence.
	e.realiseBoth(t, 4, drvs, "--max-silent-time", "10s")
	e.compareWithNix(t, drvs...)
	e.checkVerify(t)
	// The builder environment, as the builders print it, and the logs.
	for _, i := range []int{len(drvs) - 2, len(drvs) - 1} {
		want := e.n.run(t, nil, "nix-store", "--read-log", drvs[i])
		if got := e.sfs(t, "log", drvs[i]); string(got) != string(want) {
			t.Errorf("log of %s:\n%s\nNix's:\n%s", drvs[i], got, want)
		}
	}
	// Realising again builds nothing.
	r := e.sfsResult(t, append([]string{"realise"}, drvs...)...)
	if r.code != 0 || strings.Contains(string(r.stderr), "building") {
		t.Errorf("second realise: exit %d, stderr %s", r.code, r.stderr)
	}
	// Outputs chosen with !.
	multi := drvs[slices.Index(attrs, "multi")]
	out := strings.TrimSpace(string(e.sfs(t, "realise", multi+"!dev")))
	if want := e.outputsOf(t, multi); !strings.HasSuffix(out, "-multi-dev") || !slices.Contains(want, out) {
		t.Errorf("realise %s!dev printed %q", multi, out)
	}
}

// TestRealiseDAGAgainstNix realises a 200-node DAG with both.
func TestRealiseDAGAgainstNix(t *testing.T) {
	e := newBuildEnv(t)
	drvs := e.instantiate(t, dagExpr(200, "cmp", 0), "root")
	e.addDrvs(t, drvs...)
	e.realiseBoth(t, 4, drvs)
	all := strings.Fields(e.n.line(t, "nix-store", "-qR", drvs[0]))
	var nodes []string
	for _, p := range all {
		if strings.HasSuffix(p, ".drv") {
			nodes = append(nodes, p)
		}
	}
	if len(nodes) != 200 {
		t.Fatalf("the DAG has %d derivations, want 200", len(nodes))
	}
	e.compareWithNix(t, nodes...)
	e.checkVerify(t)
}

// dagExpr is a DAG of n derivations named dag-<tag>-<i>: layers of 20,
// each node depending on three of the layer before; attribute root
// depends on the last two layers. With sleep > 0 each node sleeps that
// long and records its start and end (host uptime) in its output.
func dagExpr(n int, tag string, sleep float64) string {
	work := `echo "$deps" > $out`
	if sleep > 0 {
		work = fmt.Sprintf(`read s _ < /proc/uptime; sleep %g; read e _ < /proc/uptime; echo "$s $e $deps" > $out`, sleep)
	}
	return fmt.Sprintf(`let
  n = %d; width = 20; count = n - 1;
  layer = i: i / width;
  parents = i: if layer i == 0 then [] else
    let l = (layer i - 1) * width; j = i - layer i * width; in
    [ (l + j) (l + builtins.bitAnd (j + 3) 15) (l + builtins.bitAnd (j * 7) 15) ];
  node = i: mk {
    name = "dag-%s-${toString i}";
    deps = map (j: builtins.elemAt nodes j) (parents i);
    args = ["-c" %q];
  };
  nodes = builtins.genList node count;
  # The last layer is not full, so the one before has nodes nothing else needs.
  lastLayers = builtins.filter (i: layer i >= layer (count - 1) - 1) (builtins.genList (i: i) count);
in {
  root = mk { name = "dag-%s-root"; deps = map (j: builtins.elemAt nodes j) lastLayers; args = ["-c" %q]; };
}`, n, tag, work, tag, work)
}

// failExpr makes derivations that fail, each in its own way.
const failExpr = `rec {
  fail = mk { name = "fail"; args = ["-c" "i=1; while [ $i -le 30 ]; do echo line $i; i=$((i+1)); done; echo oops >&2; exit 3"]; };
  nobuilder = mk { name = "nobuilder"; builder = "${bbp}/bin/nonexistent"; };
  hostbuilder = mk { name = "hostbuilder"; builder = "/bin/sh"; args = ["-c" "echo > $out"]; };
  noout = mk { name = "noout"; args = ["-c" "echo made nothing"]; };
  cycle = mk { name = "cycle"; outputs = ["out" "dev"]; args = ["-c" "echo $dev > $out; echo $out > $dev"]; };
  flatdir = mk { name = "flatdir"; args = ["-c" "mkdir $out"]; outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = "992a93455c71fedd36ac9bbc439952c041cf61445958472af479269b8d873513"; };
  flatexec = mk { name = "flatexec"; args = ["-c" "printf fixed > $out; chmod +x $out"]; outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = "992a93455c71fedd36ac9bbc439952c041cf61445958472af479269b8d873513"; };
  badspec = mk { name = "badspec"; args = ["-c" "echo > $out"]; allowedReferences = ["nonsense"]; };
  other = mk { name = "other"; system = "aarch64-linux"; args = ["-c" "echo > $out"]; };
  features = mk { name = "features"; requiredSystemFeatures = ["big-parallel" "no-such-feature"]; args = ["-c" "echo > $out"]; };
  fifo = mk { name = "fifo"; args = ["-c" "mkdir $out; mkfifo $out/fifo"]; };
}`

// TestRealiseFailuresAsNix realises derivations that fail with both: the
// same exit code, an error naming the derivation and the cause, nothing
// registered.
func TestRealiseFailuresAsNix(t *testing.T) {
	e := newBuildEnv(t)
	cases := []struct {
		attr string
		code int
		want []string // in storefs's error
	}{
		{"fail", 100, []string{"failed with exit code 3", "> oops", "> line 30", "> line 10"}},
		{"nobuilder", 100, []string{"executing '" + storeDir + "/", "/bin/nonexistent': no such file or directory"}},
		{"hostbuilder", 100, []string{`"/bin/sh" is not in the store`}},
		{"noout", 1, []string{"failed to produce output path for output 'out'", "> made nothing"}},
		{"cycle", 1, []string{"cycle detected in build of", "output 'dev' from output 'out'"}},
		{"flatdir", 1, []string{"should be a non-executable regular file"}},
		{"flatexec", 1, []string{"should be a non-executable regular file"}},
		{"badspec", 1, []string{"illegal reference specifier 'nonsense'"}},
		{"other", 1, []string{"a 'aarch64-linux' with features {} is required to build", "but I am a 'x86_64-linux' with features {benchmark, big-parallel"}},
		{"features", 1, []string{"with features {big-parallel, no-such-feature} is required to build"}},
		{"fifo", 1, []string{"-fifo/fifo: cannot archive a named pipe"}},
	}
	var attrs []string
	for _, c := range cases {
		attrs = append(attrs, c.attr)
	}
	drvs := e.instantiate(t, failExpr, attrs...)
	e.addDrvs(t, drvs...)
	for i, c := range cases {
		t.Run(c.attr, func(t *testing.T) {
			drv := drvs[i]
			nix := runCmd(t, e.n.env, nil, "nix-store", "--realise", drv)
			if nix.code != c.code {
				t.Errorf("nix-store --realise: exit %d, want %d\n%s", nix.code, c.code, nix.stderr)
			}
			r := e.sfsResult(t, "realise", drv)
			msg := string(r.stderr)
			if r.code != c.code {
				t.Errorf("storefs realise: exit %d, want %d (as Nix)\n%s", r.code, c.code, msg)
			}
			for _, w := range append([]string{drv}, c.want...) {
				if !strings.Contains(msg, w) {
					t.Errorf("storefs realise: the error does not say %q:\n%s", w, msg)
				}
			}
			if len(r.stdout) != 0 {
				t.Errorf("storefs realise printed %q", r.stdout)
			}
			if strings.Contains(msg, e.state) {
				t.Errorf("storefs realise: the error names a path in the state dir, not as the builder saw it:\n%s", msg)
			}
			e.checkInvalid(t, e.outputsOf(t, drv)...)
		})
	}
	e.checkVerify(t)
}

// TestRealiseBadInput: what cannot be built at all is refused with one
// clear line naming it, and nothing is registered.
func TestRealiseBadInput(t *testing.T) {
	e := newBuildEnv(t)
	writeFile(t, e.dir, "input.txt", "an input source\n")
	drvs := e.instantiate(t, `{
  other = mk { name = "other"; system = "aarch64-linux"; args = ["-c" "echo > $out"]; };
  missing = mk { name = "missing-input"; args = ["-c" "cat ${./input.txt} > $out"]; };
}`, "other", "missing")
	e.addDrvs(t, drvs[0])
	oneLine := func(what string, r result, code int, want ...string) {
		t.Helper()
		msg := string(r.stderr)
		if r.code != code || strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, "storefs: ") {
			t.Errorf("%s: exit %d (want %d), stderr not one line:\n%s", what, r.code, code, msg)
		}
		for _, w := range want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: the error does not say %q:\n%s", what, w, msg)
			}
		}
	}
	oneLine("another system", e.sfsResult(t, "realise", drvs[0]), 1, drvs[0], "aarch64-linux")
	// Not remembered as a failed build: the same error again.
	oneLine("another system, again", e.sfsResult(t, "realise", drvs[0]), 1, drvs[0], "aarch64-linux")

	input := strings.Fields(e.n.line(t, "nix-store", "-q", "--references", drvs[1]))
	var src string
	for _, p := range input {
		if strings.HasSuffix(p, "-input.txt") {
			src = p
		}
	}
	drvFile := e.n.realPath(drvs[1])
	oneLine("missing input, derivation add", e.sfsResult(t, "derivation", "add", drvFile), 1, src, "not a valid path")
	oneLine("missing input, realise of the file", e.sfsResult(t, "realise", drvFile), 1, src, "not a valid path")
	oneLine("missing input, realise of the path", e.sfsResult(t, "realise", drvs[1]), 1, drvs[1], "not a valid path")

	// Broken copies of a derivation whose inputs are all valid.
	data, err := os.ReadFile(e.n.realPath(drvs[0]))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ what, text, want string }{
		{"truncated", string(data[:40]), "offset"},
		{"garbage", "hello", "offset 0"},
		{"empty", "", "offset 0"},
		{"another output path", strings.Replace(string(data), e.outputsOf(t, drvs[0])[0][len(storeDir)+1:][:8], "00000000", 1), "computed path"},
	} {
		f := writeFile(t, t.TempDir(), "bad.drv", c.text)
		oneLine("malformed derivation, "+c.what, e.sfsResult(t, "realise", f), 1, f, c.want)
	}
	oneLine("not a store path", e.sfsResult(t, "realise", storeDir+"/nothere"), 1, "nothere")
	e.checkInvalid(t, e.outputsOf(t, drvs...)...)
	e.checkVerify(t)
}

// TestRealiseFixedOutput: a wrong hash fails with 102 and both hashes in
// SRI and nix32, as Nix 2.8 names them; a fixed-output derivation reaches
// a server on the host's loopback, and no other derivation does.
func TestRealiseFixedOutput(t *testing.T) {
	e := newBuildEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "fixed")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	url := "http://" + ln.Addr().String() + "/file"
	drvs := e.instantiate(t, `{
  mismatch = mk { name = "mismatch"; args = ["-c" "printf other > $out"]; outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = "992a93455c71fedd36ac9bbc439952c041cf61445958472af479269b8d873513"; };
  fetch = mk { name = "fetch"; args = ["-c" "wget -q -O $out `+url+`"]; outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = "992a93455c71fedd36ac9bbc439952c041cf61445958472af479269b8d873513"; };
  nofetch = mk { name = "nofetch"; args = ["-c" "wget -q -O $out `+url+`"]; };
}`, "mismatch", "fetch", "nofetch")
	e.addDrvs(t, drvs...)

	nix := runCmd(t, e.n.env, nil, "nix-store", "--realise", drvs[0])
	r := e.sfsResult(t, "realise", drvs[0])
	if nix.code != 102 || r.code != 102 {
		t.Errorf("hash mismatch: nix exit %d, storefs exit %d; want 102\n%s", nix.code, r.code, r.stderr)
	}
	// What Nix says: specified: sha256-mSqT... got: sha256-2SmK...
	sri := regexp.MustCompile(`sha256-[A-Za-z0-9+/]{43}=`).FindAllString(string(nix.stderr), -1)
	if len(sri) != 2 {
		t.Fatalf("nix's message has no two SRI hashes:\n%s", nix.stderr)
	}
	msg := string(r.stderr)
	for _, w := range []string{"hash mismatch in fixed-output derivation '" + drvs[0] + "'",
		"specified: " + sri[0] + " (sha256:" + nix32Of(t, "fixed") + ")",
		"got: " + sri[1] + " (sha256:" + nix32Of(t, "other") + ")"} {
		if !strings.Contains(msg, w) {
			t.Errorf("hash mismatch: storefs's error does not say %q:\n%s\nNix said:\n%s", w, msg, nix.stderr)
		}
	}
	e.checkInvalid(t, e.outputsOf(t, drvs[0])...)

	e.realiseBoth(t, 1, drvs[1:2])
	e.compareWithNix(t, drvs[1])
	r = e.sfsResult(t, "realise", drvs[2])
	if nixr := runCmd(t, e.n.env, nil, "nix-store", "--realise", drvs[2]); r.code != 100 || nixr.code != 100 {
		t.Errorf("a derivation that is not fixed-output reached the host's network: storefs exit %d, nix exit %d\n%s", r.code, nixr.code, r.stderr)
	}
	e.checkInvalid(t, e.outputsOf(t, drvs[2])...)

	// A fixed output that refers to a path: Nix 2.8 aborts on an
	// assertion, later Nix refuses it; storefs refuses it.
	h := strings.TrimSpace(string(mustRun(t, os.Environ(), strings.NewReader(e.bb), "nix-hash", "--type", "sha256", "--flat", "/dev/stdin")))
	refs := e.instantiate(t, strings.Replace(`{
  refs = mk { name = "refs"; args = ["-c" "printf ${bbp} > $out"]; outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = "@REFS_HASH@"; };
}`, "@REFS_HASH@", h, 1), "refs")
	e.addDrvs(t, refs...)
	r = e.sfsResult(t, "realise", refs[0])
	if r.code != 1 || !strings.Contains(string(r.stderr), "illegal path references in fixed-output derivation '"+refs[0]+"'") {
		t.Errorf("a fixed output with references: exit %d\n%s", r.code, r.stderr)
	}
	e.checkInvalid(t, e.outputsOf(t, refs[0])...)
	e.checkVerify(t)
}

// nix32Of is the nix32 sha256 of s, from nix-hash.
func nix32Of(t *testing.T, s string) string {
	t.Helper()
	f := writeFile(t, t.TempDir(), "f", s)
	return strings.TrimSpace(string(mustRun(t, os.Environ(), nil, "nix-hash", "--type", "sha256", "--flat", "--base32", f)))
}

// TestRealiseReferenceRules: allowedReferences, disallowedReferences,
// allowedRequisites and disallowedRequisites pass and fail as in Nix.
func TestRealiseReferenceRules(t *testing.T) {
	e := newBuildEnv(t)
	cases := []struct {
		attr, expr string
		ok         bool
	}{
		{"arOK", `mk { name = "ar-ok"; args = ["-c" "echo ${dep} > $out"]; allowedReferences = [dep]; }`, true},
		{"arEmpty", `mk { name = "ar-empty"; args = ["-c" "echo none > $out"]; allowedReferences = []; }`, true},
		{"arSelf", `mk { name = "ar-self"; args = ["-c" "echo ${dep} $out > $out"]; allowedReferences = [dep "out"]; }`, true},
		{"arSelfMissing", `mk { name = "ar-self-missing"; args = ["-c" "echo $out > $out"]; allowedReferences = []; }`, false},
		{"arBad", `mk { name = "ar-bad"; args = ["-c" "echo ${dep} ${bbp} > $out"]; allowedReferences = [dep]; }`, false},
		{"drOK", `mk { name = "dr-ok"; args = ["-c" "echo ${dep} > $out"]; disallowedReferences = [dep2]; }`, true},
		{"drBad", `mk { name = "dr-bad"; args = ["-c" "echo ${dep} > $out"]; disallowedReferences = [dep]; }`, false},
		{"drSelf", `mk { name = "dr-self"; args = ["-c" "echo $out > $out"]; disallowedReferences = ["out"]; }`, false},
		{"aqOK", `mk { name = "aq-ok"; args = ["-c" "echo ${dep} $out > $out"]; allowedRequisites = [dep dep2]; }`, true},
		{"aqBad", `mk { name = "aq-bad"; args = ["-c" "echo ${dep} > $out"]; allowedRequisites = [dep]; }`, false},
		{"dqOK", `mk { name = "dq-ok"; args = ["-c" "echo ${dep} > $out"]; disallowedRequisites = [bbp]; }`, true},
		{"dqBad", `mk { name = "dq-bad"; args = ["-c" "echo ${dep} > $out"]; disallowedRequisites = [dep2]; }`, false},
		{"dqSelf", `mk { name = "dq-self"; args = ["-c" "echo $out > $out"]; disallowedRequisites = ["out"]; }`, true},
		{"multiOK", `mk { name = "multi-ok"; outputs = ["out" "dev"]; args = ["-c" "echo $dev > $out; echo ${dep} > $dev"]; allowedRequisites = ["dev" dep dep2]; }`, true},
		{"multiBad", `mk { name = "multi-bad"; outputs = ["out" "dev"]; args = ["-c" "echo $dev > $out; echo ${dep} > $dev"]; allowedRequisites = ["dev" dep]; }`, false},
		{"multiDisallowed", `mk { name = "multi-disallowed"; outputs = ["out" "dev"]; args = ["-c" "echo $dev > $out; echo > $dev"]; disallowedReferences = ["dev"]; }`, false},
	}
	body := `rec {
  dep2 = mk { name = "dep2"; args = ["-c" "echo dep2 > $out"]; };
  dep = mk { name = "dep"; args = ["-c" "echo ${dep2} > $out"]; };
`
	var attrs []string
	for _, c := range cases {
		body += "  " + c.attr + " = " + c.expr + ";\n"
		attrs = append(attrs, c.attr)
	}
	drvs := e.instantiate(t, body+"}", attrs...)
	e.addDrvs(t, drvs...)
	nixR := runCmd(t, e.n.env, nil, "nix-store", append([]string{"--realise", "--keep-going", "--max-jobs", "4"}, drvs...)...)
	sfsR := e.sfsResult(t, append([]string{"realise", "--keep-going", "--max-jobs", "4"}, drvs...)...)
	if nixR.code != 1 || sfsR.code != 1 {
		t.Errorf("exit codes: nix %d, storefs %d; want 1 (outputs rejected)\n%s", nixR.code, sfsR.code, sfsR.stderr)
	}
	for i, c := range cases {
		outs := e.outputsOf(t, drvs[i])
		nixValid := len(e.nixValid(t, outs)) == len(outs)
		sfsInfo := e.sfsInfos(t, outs)
		sfsValid := true
		for _, p := range outs {
			if v := sfsInfo[p].Valid; v != nil && !*v {
				sfsValid = false
			}
		}
		if nixValid != c.ok || sfsValid != c.ok {
			t.Errorf("%s: valid in Nix %v, in storefs %v; want %v", c.attr, nixValid, sfsValid, c.ok)
		}
		if !c.ok && !strings.Contains(string(sfsR.stderr), drvs[i]) {
			t.Errorf("%s: storefs's error does not name %s", c.attr, drvs[i])
		}
		if c.ok && sfsValid && nixValid {
			e.compareWithNix(t, drvs[i])
		}
	}
	// As Nix, naming the output and the paths; storefs names the rule too.
	want := regexp.MustCompile(`output '` + storeDir + `/\w{32}-dq-bad' is not allowed to refer to the following paths \(disallowedRequisites\): ` + storeDir + `/\w{32}-dep2\b`)
	if !want.Match(sfsR.stderr) {
		t.Errorf("the error of dq-bad does not match %s:\n%s", want, sfsR.stderr)
	}
	e.checkVerify(t)
}

// nixValid lists which of paths Nix has valid.
func (e *buildEnv) nixValid(t testing.TB, paths []string) []string {
	t.Helper()
	r := runCmd(t, e.n.env, nil, "nix-store", append([]string{"--check-validity", "--print-invalid"}, paths...)...)
	if r.code != 0 {
		t.Fatalf("nix-store --check-validity: exit %d\n%s", r.code, r.stderr)
	}
	invalid := strings.Fields(string(r.stdout))
	var valid []string
	for _, p := range paths {
		if !slices.Contains(invalid, p) {
			valid = append(valid, p)
		}
	}
	return valid
}
