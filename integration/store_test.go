package integration

// The store (database of valid paths) against real Nix: the paths `add`
// makes, what `import` records of a closure Nix built, what `query`,
// `path-info` and `export` print, concurrent imports, bad input and the
// garbage collector. The crash test is in store_crash_test.go.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// sfsStore is a storefs store for one test: store dir /store, state in a
// temporary directory.
type sfsStore struct{ state string }

func newSfsStore(t testing.TB) *sfsStore { return &sfsStore{state: t.TempDir()} }

func (s *sfsStore) args(a ...string) []string {
	return append([]string{"--store-dir", storeDir, "--state-dir", s.state}, a...)
}

// run runs storefs on the store and fails the test if it fails.
func (s *sfsStore) run(t testing.TB, stdin io.Reader, a ...string) []byte {
	t.Helper()
	return storefs(t, stdin, s.args(a...)...)
}

func (s *sfsStore) result(t testing.TB, stdin io.Reader, a ...string) result {
	t.Helper()
	return storefsResult(t, stdin, s.args(a...)...)
}

// valid lists the store's valid paths, sorted.
func (s *sfsStore) valid(t testing.TB) []string {
	t.Helper()
	ps := strings.Fields(string(s.run(t, nil, "path-info", "--all")))
	sort.Strings(ps)
	return ps
}

// verify fails the test unless `storefs verify --check-contents` is clean.
func (s *sfsStore) verify(t testing.TB) {
	t.Helper()
	if r := s.result(t, nil, "verify", "--check-contents"); r.code != 0 || len(r.stderr) != 0 {
		t.Fatalf("storefs verify --check-contents: exit %d\n%s", r.code, r.stderr)
	}
}

// backing lists the entries of the backing directory.
func (s *sfsStore) backing(t testing.TB) []string {
	t.Helper()
	return dirNames(t, filepath.Join(s.state, "store"))
}

func dirNames(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// impure strips what only says when and how a path was made, which no
// two stores share.
var impure = regexp.MustCompile(`,"registrationTime":[0-9]+|,"ultimate":true`)

// sameBytes fails the test unless storefs printed what Nix printed.
func sameBytes(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s:\nstorefs: %q\nnix:     %q", what, got, want)
	}
}

// pathInfos parses `path-info --json` output into objects by path.
func pathInfos(t testing.TB, js []byte) map[string]map[string]any {
	t.Helper()
	var list []map[string]any
	if err := json.Unmarshal(js, &list); err != nil {
		t.Fatalf("path-info --json: %v\n%s", err, js)
	}
	out := map[string]map[string]any{}
	for _, o := range list {
		out[o["path"].(string)] = o
	}
	return out
}

// sameFields compares two path-info objects per path and field, leaving
// out the fields named in skip.
func sameFields(t testing.TB, what string, got, want map[string]map[string]any, skip ...string) {
	t.Helper()
	for p, w := range want {
		g, ok := got[p]
		if !ok {
			t.Errorf("%s: %s missing", what, p)
			continue
		}
		for _, k := range skip {
			delete(g, k)
			delete(w, k)
		}
		for k := range w {
			if !reflect.DeepEqual(g[k], w[k]) {
				t.Errorf("%s: %s: %s is %v, want %v", what, p, k, g[k], w[k])
			}
		}
		for k := range g {
			if _, ok := w[k]; !ok {
				t.Errorf("%s: %s: %s is %v, Nix has none", what, p, k, g[k])
			}
		}
	}
	if len(got) != len(want) {
		t.Errorf("%s: %d paths, want %d", what, len(got), len(want))
	}
}

// TestStoreAddMatchesNix: `storefs add` and `add-fixed` make the paths
// `nix-store --add` and `--add-fixed` make, with the same info.
func TestStoreAddMatchesNix(t *testing.T) {
	n := newNixStore(t)
	s := newSfsStore(t)
	work := t.TempDir()
	write := func(rel, content string, mode os.FileMode) string {
		p := filepath.Join(work, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	link := func(target, rel string) string {
		p := filepath.Join(work, rel)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	mkdir := func(rel string) string {
		p := filepath.Join(work, rel)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hello := write("hello.txt", "hello\n", 0o644)
	run := write("run.sh", "#!/bin/sh\necho run\n", 0o700)
	empty := write("empty", "", 0o600)
	write("tree/a", "a\n", 0o644)
	write("tree/sub/exe", "#!/bin/sh\n", 0o755)
	write("tree/sub/deeper/quiet", "", 0o400)
	write("tree/.hidden", "h", 0o444)
	write("tree/x=y+z?_.-", "odd name", 0o644)
	link("a", "tree/link")
	link("nowhere", "tree/dangling")
	link("/etc/passwd", "tree/absolute")
	mkdir("tree/emptydir")
	tree := filepath.Join(work, "tree")
	emptyDir := mkdir("emptydir")
	topLink := link("hello.txt", "toplink")

	adds := []string{hello, run, empty, tree, emptyDir, topLink}
	want := n.run(t, nil, "nix-store", append([]string{"--add"}, adds...)...)
	got := s.run(t, nil, append([]string{"add"}, adds...)...)
	sameBytes(t, "add", got, want)
	paths := strings.Fields(string(want))

	for _, c := range [][]string{
		{"sha1", hello}, {"sha256", hello}, {"md5", run}, {"sha512", empty},
		{"--recursive", "sha512", tree}, {"--recursive", "sha1", tree},
		{"--recursive", "sha256", emptyDir}, {"--recursive", "md5", run},
	} {
		want := n.run(t, nil, "nix-store", append([]string{"--add-fixed"}, c...)...)
		got := s.run(t, nil, append([]string{"add-fixed"}, c...)...)
		sameBytes(t, "add-fixed "+strings.Join(c, " "), got, want)
		paths = append(paths, strings.Fields(string(want))...)
	}

	// A .drv added as a file is a source path, and still a derivation
	// whose outputs are recorded.
	needTool(t, "nix-instantiate")
	drv := n.line(t, "nix-instantiate", "-E",
		`derivation { name = "plain"; system = "x86_64-linux"; builder = "/bin/sh"; outputs = ["out" "doc"]; }`)
	data, err := os.ReadFile(n.realPath(drv))
	if err != nil {
		t.Fatal(err)
	}
	drvFile := write("plain.drv", string(data), 0o644)
	want = n.run(t, nil, "nix-store", "--add", drvFile)
	sameBytes(t, "add plain.drv", s.run(t, nil, "add", drvFile), want)
	added := strings.TrimSpace(string(want))
	sameBytes(t, "query --outputs of an added .drv",
		s.run(t, nil, "query", "--outputs", added), n.run(t, nil, "nix-store", "-q", "--outputs", added))
	sameBytes(t, "path-info --json of an added .drv",
		impure.ReplaceAll(s.run(t, nil, "path-info", "--json", added), nil),
		impure.ReplaceAll(n.run(t, nil, "nix", "path-info", "--json", "--derivation", added), nil))

	want = impure.ReplaceAll(n.run(t, nil, "nix", append([]string{"path-info", "--json"}, paths...)...), nil)
	got = impure.ReplaceAll(s.run(t, nil, append([]string{"path-info", "--json"}, paths...)...), nil)
	sameBytes(t, "path-info --json", got, want)
	// A path that is not valid is listed as such.
	missing := storeDir + "/00000000000000000000000000000000-missing"
	sameBytes(t, "path-info --json of a path that is not valid",
		impure.ReplaceAll(s.run(t, nil, "path-info", "--json", missing, paths[0]), nil), impure.ReplaceAll(n.run(t, nil, "nix", "path-info", "--json", missing, paths[0]), nil))
	for _, q := range []string{"--hash", "--size", "--references", "--deriver"} {
		want := n.run(t, nil, "nix-store", append([]string{"-q", q}, paths...)...)
		got := s.run(t, nil, append([]string{"query", q}, paths...)...)
		sameBytes(t, "query "+q, got, want)
	}
	s.verify(t)
}

// storeClosureExpr is a small closure for Nix to build: texts with
// references (builtins.toFile), a two-output derivation whose output
// refers to itself, and one that uses both outputs.
const storeClosureExpr = `{ bb }:
let
  bbp = builtins.storePath bb;
  t1 = builtins.toFile "t1.txt" "plain text";
  t2 = builtins.toFile "t2.txt" "refers to ${t1}";
  mk = attrs: derivation ({ system = "x86_64-linux"; builder = "${bbp}/bin/sh"; PATH = "${bbp}/bin"; } // attrs);
in rec {
  a = mk { name = "a"; outputs = ["out" "dev"];
    args = ["-c" "mkdir $out $dev; echo ${t2} > $out/x; echo $out/x > $out/self; echo $out > $dev/y; ln -s ${bbp}/bin/sh $out/sh"]; };
  b = mk { name = "b"; args = ["-c" "echo ${a} ${a.dev} > $out"]; };
}
`

// storeClosure is what makeStoreClosure built in a Nix store.
type storeClosure struct {
	all, drvs, outs []string // every path; the .drvs; the others
	bb, aDrv, bDrv  string
	bOut, aOut      string
	t1              string
}

func makeStoreClosure(t *testing.T, n *nixStore) storeClosure {
	t.Helper()
	needTool(t, "nix-instantiate")
	var c storeClosure
	c.bb = n.line(t, "nix-store", "--add", busyboxTree(t))
	expr := writeFile(t, t.TempDir(), "closure.nix", storeClosureExpr)
	c.aDrv = n.line(t, "nix-instantiate", expr, "--argstr", "bb", c.bb, "-A", "a")
	c.bDrv = n.line(t, "nix-instantiate", expr, "--argstr", "bb", c.bb, "-A", "b")
	c.bOut = n.line(t, "nix-store", "--realise", c.bDrv)
	for _, o := range strings.Fields(n.line(t, "nix-store", "-q", "--outputs", c.aDrv)) {
		if !strings.HasSuffix(o, "-dev") {
			c.aOut = o
		}
	}
	set := map[string]bool{}
	for _, root := range []string{c.bDrv, c.bOut} {
		for _, p := range strings.Fields(n.line(t, "nix-store", "-qR", root)) {
			set[p] = true
		}
	}
	for p := range set {
		c.all = append(c.all, p)
		if strings.HasSuffix(p, ".drv") {
			c.drvs = append(c.drvs, p)
		} else {
			c.outs = append(c.outs, p)
		}
		if strings.HasSuffix(p, "-t1.txt") {
			c.t1 = p
		}
	}
	sort.Strings(c.all)
	sort.Strings(c.drvs)
	sort.Strings(c.outs)
	return c
}

// TestStoreImportFromNix: a closure built by Nix, exported and imported
// into storefs, has the same info in both; every query prints what
// nix-store -q prints; storefs's export is Nix's, byte for byte, and Nix
// imports it.
func TestStoreImportFromNix(t *testing.T) {
	n := newNixStore(t)
	c := makeStoreClosure(t, n)
	if len(c.all) != 8 {
		t.Fatalf("closure %v: want 8 paths", c.all)
	}
	stream := n.run(t, nil, "nix-store", append([]string{"--export"}, c.all...)...)
	s := newSfsStore(t)
	imported := strings.Fields(string(s.run(t, bytes.NewReader(stream), "import")))
	sort.Strings(imported)
	if strings.Join(imported, " ") != strings.Join(c.all, " ") {
		t.Fatalf("storefs import printed %v, want %v", imported, c.all)
	}
	s.verify(t)

	// path-info: Nix names a .drv itself only with --derivation.
	for _, g := range []struct {
		what         string
		paths        []string
		nix, storefs []string
	}{
		{"outputs", c.outs, []string{"path-info", "--json"}, []string{"path-info", "--json"}},
		{"derivations", c.drvs, []string{"path-info", "--json", "--derivation"}, []string{"path-info", "--json"}},
		{"closure sizes", c.outs, []string{"path-info", "--json", "--closure-size"}, []string{"path-info", "--json", "--closure-size"}},
	} {
		want := n.run(t, nil, "nix", append(g.nix, g.paths...)...)
		got := s.run(t, nil, append(g.storefs, g.paths...)...)
		sameFields(t, "path-info of the "+g.what, pathInfos(t, got), pathInfos(t, want), "registrationTime", "ultimate")
		sameBytes(t, "path-info --json of the "+g.what, impure.ReplaceAll(got, nil), impure.ReplaceAll(want, nil))
	}
	for _, args := range [][]string{{"-r", c.bOut}, {"-s", "-S", c.bOut, c.bb}, {"-r", "-S", c.aOut}} {
		sameBytes(t, "path-info "+strings.Join(args, " "),
			s.run(t, nil, append([]string{"path-info"}, args...)...),
			n.run(t, nil, "nix", append([]string{"path-info"}, args...)...))
	}

	// query, one path at a time and several at once.
	queries := []string{"--references", "--referrers", "--requisites", "--deriver", "--outputs", "--hash", "--size"}
	calls := [][]string{{c.bOut, c.bDrv}, {c.bb, c.t1}, {c.aDrv, c.bDrv}}
	for _, p := range c.all {
		calls = append(calls, []string{p})
	}
	for _, q := range queries {
		for _, ps := range calls {
			want := n.run(t, nil, "nix-store", append([]string{"-q", q}, ps...)...)
			got := s.run(t, nil, append([]string{"query", q}, ps...)...)
			sameBytes(t, "query "+q+" "+strings.Join(ps, " "), got, want)
		}
	}

	// export: the same bytes as Nix's, and a fresh Nix store takes them.
	exported := s.run(t, nil, append([]string{"export"}, c.all...)...)
	if !bytes.Equal(exported, stream) {
		t.Errorf("storefs export (%d bytes) differs from nix-store --export (%d bytes)", len(exported), len(stream))
	}
	n2 := newNixStore(t)
	n2.run(t, bytes.NewReader(exported), "nix-store", "--import")
	if out := n2.run(t, nil, "nix-store", "--verify", "--check-contents"); len(out) != 0 {
		t.Errorf("nix-store --verify in the importing store: %s", out)
	}
	// The export stream carries neither a content address nor Nix's
	// "ultimate" (built here) mark, so nix-store --import records neither,
	// from storefs's stream as from Nix's own (the bytes are the same).
	for _, g := range [][]string{{"path-info", "--json"}, {"path-info", "--json", "--derivation"}} {
		paths := c.outs
		if len(g) == 3 {
			paths = c.drvs
		}
		args := append(g, paths...)
		sameFields(t, "Nix store importing storefs's export",
			pathInfos(t, n2.run(t, nil, "nix", args...)), pathInfos(t, n.run(t, nil, "nix", args...)),
			"registrationTime", "ultimate", "ca")
	}
}

// TestStoreConcurrentImport: two processes importing one stream at once
// both succeed, and each path has one copy.
func TestStoreConcurrentImport(t *testing.T) {
	streamFile, paths := genStream(t, t.TempDir(), streamSpec{Paths: 120, Bytes: 40 << 20, Seed: 7})
	s := newSfsStore(t)
	var cmds []*exec.Cmd
	var outs []*bytes.Buffer
	for range 2 {
		f, err := os.Open(streamFile)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cmd := exec.Command(storefsBin, s.args("import")...)
		var out, errb bytes.Buffer
		cmd.Stdin, cmd.Stdout, cmd.Stderr = f, &out, &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
		outs = append(outs, &out)
		defer func() {
			if errb.Len() > 0 {
				t.Logf("import stderr: %s", errb.Bytes())
			}
		}()
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("import %d: %v", i, err)
		}
		if got := strings.Fields(outs[i].String()); strings.Join(got, " ") != strings.Join(paths, " ") {
			t.Errorf("import %d printed %d paths, want the stream's %d in order", i, len(got), len(paths))
		}
	}
	want := append([]string(nil), paths...)
	sort.Strings(want)
	if got := s.valid(t); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("valid paths: %d, want %d", len(got), len(want))
	}
	if got := s.backing(t); len(got) != len(paths) {
		t.Errorf("backing directory holds %d entries, want one per path (%d)", len(got), len(paths))
	}
	s.verify(t)
	if left := dirNames(t, filepath.Join(s.state, "tmp")); len(left) != 0 {
		t.Errorf("scratch left behind: %v", left)
	}

	// Two adds of one tree: one path, both print it.
	tree := filepath.Join(t.TempDir(), "tree")
	if err := os.MkdirAll(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		writeFile(t, tree, fmt.Sprintf("f%03d", i), strings.Repeat("data ", i))
	}
	var adds []*exec.Cmd
	var addOuts []*bytes.Buffer
	for range 2 {
		cmd := exec.Command(storefsBin, s.args("add", tree)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		adds = append(adds, cmd)
		addOuts = append(addOuts, &out)
	}
	for i, cmd := range adds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("add %d: %v", i, err)
		}
	}
	if a, b := addOuts[0].String(), addOuts[1].String(); a != b || a == "" {
		t.Errorf("concurrent adds printed %q and %q", a, b)
	}
	if got := s.backing(t); len(got) != len(paths)+1 {
		t.Errorf("backing directory holds %d entries after the adds, want %d", len(got), len(paths)+1)
	}
	s.verify(t)
}
