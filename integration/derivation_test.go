package integration

import (
	"bytes"
	"os"
	"sort"
	"strings"
	"testing"

	"storefs/store/derivation"
	"storefs/store/storepath"
)

// drvExpr makes every kind of derivation Nix 2.8 writes without
// experimental features. bb is the busybox tree, src a file added with
// nix-store --add; lit.txt next to the expression is a path literal.
const drvExpr = `{ bb, src }:
let
  bbp = builtins.storePath bb;
  srcp = builtins.storePath src;
  mk = attrs: derivation ({ system = "x86_64-linux"; builder = "${bbp}/bin/sh"; PATH = "${bbp}/bin"; } // attrs);
  fixed = name: mode: algo: hash: mk {
    inherit name; args = ["-c" "printf fixed > $out"];
    outputHashMode = mode; outputHashAlgo = algo; outputHash = hash;
  };
in rec {
  trivial = mk { name = "trivial"; args = ["-c" "mkdir $out; echo hello > $out/greeting"]; };
  flat-sha1 = fixed "flat-sha1" "flat" "sha1" "7bc555991dbab41aa198fbd77899d49a277d4d6d";
  rec-sha1 = fixed "rec-sha1" "recursive" "sha1" "7bc555991dbab41aa198fbd77899d49a277d4d6d";
  flat-sha256 = fixed "flat-sha256" "flat" "sha256" "992a93455c71fedd36ac9bbc439952c041cf61445958472af479269b8d873513";
  rec-sha256 = fixed "rec-sha256" "recursive" "sha256" "sha256-mSqTRVxx/t02rJu8Q5lSwEHPYURZWEcq9Hkmm42HNRM=";
  flat-sha512 = fixed "flat-sha512" "flat" "sha512" "sha512-S7h5eeUV67g9BeD6y+ExjZfkiAaiHvwVb35UZJbJX5p6DR6+phDfnrnlwcUcUA/CNYHVFFkToChUPIUqBb1whQ==";
  rec-sha512 = fixed "rec-sha512" "recursive" "sha512" "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000b";
  twin = mk {
    name = "flat-sha256"; args = ["-c" "printf fixed > $out # the same output, made another way"];
    outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = "992a93455c71fedd36ac9bbc439952c041cf61445958472af479269b8d873513";
  };
  multi = mk { name = "multi"; outputs = ["out" "dev" "lib"]; args = ["-c" "mkdir $out $dev $lib"]; };
  base = mk { name = "base"; args = ["-c" "echo base > $out"]; };
  chain1 = mk { name = "chain1"; args = ["-c" "echo ${base} > $out"]; };
  chain2 = mk { name = "chain2"; args = ["-c" "echo ${chain1} > $out"]; };
  left = mk { name = "left"; args = ["-c" "echo ${base} > $out"]; };
  right = mk { name = "right"; args = ["-c" "echo ${base} ${multi.dev} > $out"]; };
  diamond = mk { name = "diamond"; args = ["-c" "echo ${left} ${right} ${multi.lib} ${flat-sha256} ${twin} ${rec-sha1} > $out"]; };
  sources = mk { name = "sources"; args = ["-c" "cat ${srcp} ${./lit.txt} > $out"]; };
  escapes = mk {
    name = "escapes";
    args = ["-c" "echo \"$out\" \\ \n \t \r \$HOME ${"$"}{x}"];
    weird = "q\"uote back\\slash nl\nl tab\tt cr\rc uni é ☃ 😀 dollar \$x $ {y} ${"$"}{z} ctl ` + "\x01\x1f\x7f\x1b" + ` bad ` + "\xfe\xff" + ` end";
    "sp ace" = "\t";
    empty = "";
  };
}
`

var drvAttrs = []string{"trivial", "flat-sha1", "rec-sha1", "flat-sha256", "rec-sha256", "flat-sha512",
	"rec-sha512", "twin", "multi", "base", "chain1", "chain2", "left", "right", "diamond", "sources", "escapes"}

func TestDerivationsAgainstNix(t *testing.T) {
	needTool(t, "nix-instantiate")
	n := newNixStore(t)
	bb := n.line(t, "nix-store", "--add", busyboxTree(t))
	dir := t.TempDir()
	src := n.line(t, "nix-store", "--add", writeFile(t, dir, "input.txt", "an input source\n"))
	writeFile(t, dir, "lit.txt", "a path literal\n")
	expr := writeFile(t, dir, "drvs.nix", drvExpr)
	show := func(paths ...string) []byte {
		args := append([]string{"--extra-experimental-features", "nix-command", "show-derivation"}, paths...)
		return n.run(t, nil, "nix", args...)
	}
	sd := storepath.Dir(storeDir)
	h := derivation.NewHasher(sd, func(p storepath.Path) (*derivation.Derivation, error) {
		data, err := os.ReadFile(n.realPath(sd.Print(p)))
		if err != nil {
			return nil, err
		}
		return derivation.Parse(data, sd)
	})

	var drvPaths, realPaths []string
	for _, attr := range drvAttrs {
		drvPath := n.line(t, "nix-instantiate", expr, "--argstr", "bb", bb, "--argstr", "src", src, "-A", attr)
		drvPaths = append(drvPaths, drvPath)
		realPaths = append(realPaths, n.realPath(drvPath))
		t.Run(attr, func(t *testing.T) {
			data, err := os.ReadFile(n.realPath(drvPath))
			if err != nil {
				t.Fatal(err)
			}
			d, err := derivation.Parse(data, sd)
			if err != nil {
				t.Fatal(err)
			}
			if got := d.ATerm(sd); !bytes.Equal(got, data) {
				t.Errorf("ATerm round trip:\n got %q\nwant %q", got, data)
			}
			p, err := d.Path(sd)
			if err != nil || sd.Print(p) != drvPath {
				t.Errorf("drv path %s (%v), nix-instantiate printed %s", sd.Print(p), err, drvPath)
			}
			if err := h.Check(d); err != nil {
				t.Errorf("Check: %v", err)
			}
			outs, err := h.OutputPaths(d)
			if err != nil {
				t.Fatal(err)
			}
			var computed []string
			for _, o := range outs {
				computed = append(computed, sd.Print(o))
			}
			sort.Strings(computed)
			nixOuts := strings.Fields(n.line(t, "nix-store", "-q", "--outputs", drvPath))
			sort.Strings(nixOuts)
			if strings.Join(computed, " ") != strings.Join(nixOuts, " ") {
				t.Errorf("output paths %v, nix-store -q --outputs says %v", computed, nixOuts)
			}

			want := show(drvPath)
			if got := storefs(t, nil, "--store-dir", storeDir, "derivation", "show", n.realPath(drvPath)); !bytes.Equal(got, want) {
				t.Errorf("storefs derivation show:\n got %s\nwant %s", got, want)
			}
			// A copy outside the store shows the same.
			copied := writeFile(t, t.TempDir(), attr+".drv", string(data))
			if got := storefs(t, nil, "--store-dir", storeDir, "derivation", "show", copied, n.realPath(drvPath)); !bytes.Equal(got, want) {
				t.Errorf("storefs derivation show of a copy:\n got %s\nwant %s", got, want)
			}

			refuseAltered(t, d, data, n.realPath(drvPath))
		})
	}
	if want, got := show(drvPaths...), storefs(t, nil, append([]string{"--store-dir", storeDir, "derivation", "show"}, realPaths...)...); !bytes.Equal(got, want) {
		t.Errorf("storefs derivation show of all:\n got %s\nwant %s", got, want)
	}
}

// refuseAltered checks that storefs refuses copies of the .drv with the
// path of its last output altered, in the outputs list and in its env var.
func refuseAltered(t *testing.T, d *derivation.Derivation, data []byte, original string) {
	t.Helper()
	ids := d.OutputIDs()
	id := ids[len(ids)-1]
	path := storeDir + "/" + d.Outputs[id].Path.Base()
	other := storeDir + "/" + strings.Repeat("0", 32) + path[len(storeDir)+33:]
	for _, c := range []struct {
		what, old, want string
	}{
		{"outputs list", `("` + id + `","` + path + `","`, `output "` + id + `" has path "` + other + `", but its computed path is ` + path},
		{"env var", `("` + id + `","` + path + `")`, `env var "` + id + `" is "` + other + `", but output "` + id + `" has path ` + path},
	} {
		if bytes.Count(data, []byte(c.old)) != 1 {
			t.Fatalf("%s: %q is not in the .drv once", c.what, c.old)
		}
		altered := bytes.Replace(data, []byte(c.old), []byte(strings.Replace(c.old, path, other, 1)), 1)
		f := writeFile(t, t.TempDir(), "altered.drv", string(altered))
		// The original is given too, so that input derivations are found next to it.
		r := storefsResult(t, nil, "--store-dir", storeDir, "derivation", "show", f, original)
		if r.code != 1 || len(r.stdout) != 0 || !strings.Contains(string(r.stderr), c.want) {
			t.Errorf("altered %s: exit %d, stdout %q, stderr %q; want exit 1 and an error containing %q", c.what, r.code, r.stdout, r.stderr, c.want)
		}
	}
}
