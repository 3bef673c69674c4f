package derivation

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"storefs/store/nixhash"
	"storefs/store/storepath"
)

const testDir = storepath.Dir("/store")

// golden is a .drv made by nix-instantiate (testdata/README).
type golden struct {
	base string // its store path's base name
	data []byte
}

func goldens(t testing.TB) []golden {
	t.Helper()
	files, err := filepath.Glob("testdata/*.drv")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/*.drv: %v", err)
	}
	var gs []golden
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		gs = append(gs, golden{filepath.Base(f), data})
	}
	return gs
}

// testdataResolver loads input derivations from testdata, counting loads.
func testdataResolver(t testing.TB, loads map[storepath.Path]int) Resolver {
	return func(p storepath.Path) (*Derivation, error) {
		if loads != nil {
			loads[p]++
		}
		data, err := os.ReadFile(filepath.Join("testdata", p.Base()))
		if err != nil {
			return nil, err
		}
		return Parse(data, testDir)
	}
}

func TestGoldenATermRoundTripAndPaths(t *testing.T) {
	loads := map[storepath.Path]int{}
	h := NewHasher(testDir, testdataResolver(t, loads))
	for _, g := range goldens(t) {
		t.Run(g.base, func(t *testing.T) {
			d, err := Parse(g.data, testDir)
			if err != nil {
				t.Fatal(err)
			}
			if got := d.ATerm(testDir); !bytes.Equal(got, g.data) {
				t.Fatalf("ATerm round trip differs:\n got %s\nwant %s", got, g.data)
			}
			p, err := d.Path(testDir)
			if err != nil {
				t.Fatal(err)
			}
			if p.Base() != g.base {
				t.Errorf("drv path %s, nix-instantiate made %s", p, g.base)
			}
			if err := h.Check(d); err != nil {
				t.Errorf("Check: %v", err)
			}
			paths, err := h.OutputPaths(d)
			if err != nil {
				t.Fatal(err)
			}
			for id, o := range d.Outputs {
				if paths[id] != o.Path {
					t.Errorf("output %s: computed %s, Nix wrote %s", id, paths[id], o.Path)
				}
			}
		})
	}
	for p, n := range loads {
		if n != 1 {
			t.Errorf("input derivation %s loaded %d times, want once", p, n)
		}
	}
	if len(loads) == 0 {
		t.Error("no input derivation was loaded: the graph tests nothing")
	}
}

func TestGoldenJSON(t *testing.T) {
	var all []*Derivation
	for _, g := range goldens(t) {
		d, err := Parse(g.data, testDir)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, d)
		want, err := os.ReadFile(filepath.Join("testdata", strings.TrimSuffix(g.base, ".drv")+".json"))
		if err != nil {
			t.Fatal(err)
		}
		got, err := ShowJSON(testDir, d)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: ShowJSON differs from nix show-derivation:\n got %s\nwant %s", g.base, got, want)
		}
		back, err := ParseJSON(want, testDir)
		if err != nil {
			t.Fatalf("%s: ParseJSON of nix show-derivation: %v", g.base, err)
		}
		if len(back) != 1 || !reflect.DeepEqual(back[0], d) {
			t.Errorf("%s: ParseJSON gives %+v, want %+v", g.base, back, d)
		}
	}
	want, err := os.ReadFile("testdata/all.json")
	if err != nil {
		t.Fatal(err)
	}
	// Reversed and repeated: ShowJSON sorts and deduplicates as Nix does.
	rev := []*Derivation{all[0]}
	for i := len(all) - 1; i >= 0; i-- {
		rev = append(rev, all[i])
	}
	got, err := ShowJSON(testDir, rev...)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("ShowJSON of all differs from nix show-derivation:\n got %s\nwant %s", got, want)
	}
	back, err := ParseJSON(want, testDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != len(all) {
		t.Fatalf("ParseJSON(all.json) gave %d derivations, want %d", len(back), len(all))
	}
	if empty, _ := ShowJSON(testDir); string(empty) != "{}\n" {
		t.Errorf("ShowJSON() = %q, want {}\\n", empty)
	}
}

// A derivation and a fixed output whose paths Nix 2.8 printed, under
// /nix/store. The input source bbdir need not exist: appendContext makes it
// an input source, and --readonly-mode computes the paths without writing
// or checking anything. An empty chroot store keeps the host's /nix out:
//
//	export NIX_REMOTE="local?root=$(mktemp -d)"
//	nix-instantiate --readonly-mode -E '
//	  let bb = builtins.appendContext "/nix/store/pqrpiq7sxnq9dyh4iipav0h2wafj6lcp-bbdir"
//	    { "/nix/store/pqrpiq7sxnq9dyh4iipav0h2wafj6lcp-bbdir" = { path = true; }; };
//	  in derivation { name = "a"; system = "x86_64-linux"; builder = "${bb}/bin/sh";
//	    PATH = "${bb}/bin"; args = [ "-c" "mkdir $out; echo hello > $out/greeting" ]; }'
//	# /nix/store/74jknh25n5xmamqc113hgx9rb4i0jiyb-a.drv; its out, shown by
//	# --eval with (...).outPath: /nix/store/sxyhjqmx4yasakykhzjgkjj6wgw23pfw-a
//	nix-store --print-fixed-path sha256 992a93455c71fedd36ac9bbc439952c041cf61445958472af479269b8d873513 fo
//	# /nix/store/fgzwfyidpyz8838f7hs2jj7nrym0a07q-fo
//
// The ATerm below is that derivation as Nix writes it; its .drv path,
// which hashes these very bytes, pins it.
func TestFormatsExample(t *testing.T) {
	const aterm = `Derive([("out","/nix/store/sxyhjqmx4yasakykhzjgkjj6wgw23pfw-a","","")],[],["/nix/store/pqrpiq7sxnq9dyh4iipav0h2wafj6lcp-bbdir"],"x86_64-linux","/nix/store/pqrpiq7sxnq9dyh4iipav0h2wafj6lcp-bbdir/bin/sh",["-c","mkdir $out; echo hello > $out/greeting"],[("PATH","/nix/store/pqrpiq7sxnq9dyh4iipav0h2wafj6lcp-bbdir/bin"),("builder","/nix/store/pqrpiq7sxnq9dyh4iipav0h2wafj6lcp-bbdir/bin/sh"),("name","a"),("out","/nix/store/sxyhjqmx4yasakykhzjgkjj6wgw23pfw-a"),("system","x86_64-linux")])`
	dir := storepath.Dir("/nix/store")
	d, err := Parse([]byte(aterm), dir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := d.Path(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := dir.Print(p); got != "/nix/store/74jknh25n5xmamqc113hgx9rb4i0jiyb-a.drv" {
		t.Errorf("drv path %s, want /nix/store/74jknh25n5xmamqc113hgx9rb4i0jiyb-a.drv", got)
	}
	if err := NewHasher(dir, nil).Check(d); err != nil {
		t.Error(err)
	}
	// Under /store the same derivation has other paths.
	if err := NewHasher("/store", nil).Check(d); err == nil {
		t.Error("Check under /store accepted /nix/store paths")
	}

	fixed, _ := nixhash.ParseDigest(nixhash.SHA256, "992a93455c71fedd36ac9bbc439952c041cf61445958472af479269b8d873513")
	fo := &Derivation{Outputs: map[string]Output{"out": {Hash: fixed}}, Env: map[string]string{"name": "fo"}}
	fp, err := fo.FixedOutputPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := dir.Print(fp); got != "/nix/store/fgzwfyidpyz8838f7hs2jj7nrym0a07q-fo" {
		t.Errorf("fixed output path %s, want /nix/store/fgzwfyidpyz8838f7hs2jj7nrym0a07q-fo", got)
	}
}

// A derivation made from JSON without output paths gets exactly the paths
// and file nix-instantiate made.
func TestFillFromJSON(t *testing.T) {
	h := NewHasher(testDir, testdataResolver(t, nil))
	for _, base := range []string{"25lp7372zjjf8jaq1gblqyn86xk18pnz-diamond.drv", "2ra1ac94mgxkw7ssjrjgxxni9h6i5mir-multi.drv", "r54kpip829v3bv7kffh65vsplwfd33l1-fo.drv"} {
		want, err := os.ReadFile(filepath.Join("testdata", base))
		if err != nil {
			t.Fatal(err)
		}
		js, err := os.ReadFile(filepath.Join("testdata", strings.TrimSuffix(base, ".drv")+".json"))
		if err != nil {
			t.Fatal(err)
		}
		all, err := ParseJSON(js, testDir)
		if err != nil {
			t.Fatal(err)
		}
		d := all[0]
		for id, o := range d.Outputs {
			o.Path = storepath.Path{}
			d.Outputs[id] = o
			delete(d.Env, id)
		}
		if err := h.Check(d); err == nil {
			t.Errorf("%s: Check accepted a derivation without output paths", base)
		}
		if err := h.Fill(d); err != nil {
			t.Fatalf("%s: %v", base, err)
		}
		if got := d.ATerm(testDir); !bytes.Equal(got, want) {
			t.Errorf("%s: filled derivation\n got %s\nwant %s", base, got, want)
		}
		if p, err := d.Path(testDir); err != nil || p.Base() != base {
			t.Errorf("%s: filled derivation has path %s (%v)", base, p, err)
		}
	}
}

func TestCheckRefusesWrongOutputs(t *testing.T) {
	h := NewHasher(testDir, testdataResolver(t, nil))
	for _, g := range goldens(t) {
		d, err := Parse(g.data, testDir)
		if err != nil {
			t.Fatal(err)
		}
		id := d.OutputIDs()[len(d.OutputIDs())-1]
		o := d.Outputs[id]
		other, _ := storepath.ParseBase("00000000000000000000000000000000-" + o.Path.Name())
		right := o.Path
		o.Path = other
		d.Outputs[id] = o
		err = h.Check(d)
		var mm *OutputMismatchError
		if !errors.As(err, &mm) || mm.Output != id || mm.EnvVar || !strings.Contains(err.Error(), testDir.Print(right)) {
			t.Errorf("%s: altered output %q: Check gave %v", g.base, id, err)
		}
		o.Path = right
		d.Outputs[id] = o
		d.Env[id] = testDir.Print(other)
		err = h.Check(d)
		if !errors.As(err, &mm) || mm.Output != id || !mm.EnvVar {
			t.Errorf("%s: altered env var %q: Check gave %v", g.base, id, err)
		}
	}
}

func TestResolverErrors(t *testing.T) {
	data, err := os.ReadFile("testdata/6znc0jl3jc7391v4kshax98v0pyfc7vm-chain2.drv")
	if err != nil {
		t.Fatal(err)
	}
	d, err := Parse(data, testDir)
	if err != nil {
		t.Fatal(err)
	}
	missing := errors.New("not in this store")
	h := NewHasher(testDir, func(storepath.Path) (*Derivation, error) { return nil, missing })
	err = h.Check(d)
	if !errors.Is(err, missing) || !strings.Contains(err.Error(), "m5hkciry3ggs7g45ilcrz2zjzc5140p8-chain1.drv") {
		t.Errorf("Check with a failing resolver: %v", err)
	}
	if err := NewHasher(testDir, nil).Check(d); err == nil || !strings.Contains(err.Error(), "chain1.drv") {
		t.Errorf("Check with no resolver: %v", err)
	}
	// An input that names an output its derivation lacks.
	for p := range d.InputDrvs {
		d.InputDrvs[p] = []string{"dev"}
	}
	err = NewHasher(testDir, testdataResolver(t, nil)).Check(d)
	if err == nil || !strings.Contains(err.Error(), `has no output "dev"`) {
		t.Errorf("input with a missing output: %v", err)
	}
}

func BenchmarkParse(b *testing.B) {
	data, err := os.ReadFile("testdata/25lp7372zjjf8jaq1gblqyn86xk18pnz-diamond.drv")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Parse(data, testDir); err != nil {
			b.Fatal(err)
		}
	}
}
