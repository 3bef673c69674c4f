package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"storefs/internal/nginxtest"
	"storefs/store/narinfo"
)

// substInfo is what both `nix path-info --json` and `storefs path-info
// --json` say of a path, for comparing.
type substInfo struct {
	Path       string   `json:"path"`
	NarHash    string   `json:"narHash"`
	NarSize    uint64   `json:"narSize"`
	References []string `json:"references"`
	Deriver    string   `json:"deriver"`
	CA         string   `json:"ca"`
	Signatures []string `json:"signatures"`
}

func substParseInfos(t testing.TB, who string, data []byte) map[string]substInfo {
	t.Helper()
	var list []substInfo
	if err := json.Unmarshal(data, &list); err != nil {
		t.Fatalf("%s path-info --json: %v\n%s", who, err, data)
	}
	out := map[string]substInfo{}
	for _, i := range list {
		slices.Sort(i.References)
		// Nix 2.8 prints SRI, storefs may print nix32: compare as SRI.
		i.NarHash = substSRI(t, i.NarHash)
		out[i.Path] = i
	}
	return out
}

func substSRI(t testing.TB, h string) string {
	t.Helper()
	if h == "" || strings.HasPrefix(h, "sha256-") {
		return h
	}
	out, err := exec.Command("nix-hash", "--type", "sha256", "--to-sri", h).Output()
	if err != nil {
		t.Fatalf("nix-hash --to-sri %s: %v", h, err)
	}
	return strings.TrimSpace(string(out))
}

// substNixInfos is what Nix's database says of paths. A .drv argument of
// nix path-info means its outputs unless --derivation is given, and
// --derivation on any other path means its deriver: two calls.
func substNixInfos(t testing.TB, n *nixStore, paths []string) map[string]substInfo {
	t.Helper()
	var drvs, others []string
	for _, p := range paths {
		if strings.HasSuffix(p, ".drv") {
			drvs = append(drvs, p)
		} else {
			others = append(others, p)
		}
	}
	out := map[string]substInfo{}
	for _, q := range []struct {
		flags []string
		ps    []string
	}{{[]string{"path-info", "--json"}, others}, {[]string{"path-info", "--json", "--derivation"}, drvs}} {
		if len(q.ps) == 0 {
			continue
		}
		for k, v := range substParseInfos(t, "nix", n.run(t, nil, "nix", append(q.flags, q.ps...)...)) {
			out[k] = v
		}
	}
	return out
}

// substNixKey makes a signing key pair with Nix; it returns the secret key
// file and the public key.
func substNixKey(t testing.TB, n *nixStore, name string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	sk, pk := filepath.Join(dir, "secret"), filepath.Join(dir, "public")
	n.run(t, nil, "nix-store", "--generate-binary-cache-key", name, sk, pk)
	pub, err := os.ReadFile(pk)
	if err != nil {
		t.Fatal(err)
	}
	return sk, string(pub)
}

// substCompare checks that storefs (state dir state) registered every path
// exactly as Nix's database has it.
func substCompare(t *testing.T, n *nixStore, state string, paths []string) {
	t.Helper()
	nix := substNixInfos(t, n, paths)
	sfs := substParseInfos(t, "storefs", storefs(t, nil, append([]string{"--store-dir", storeDir, "--state-dir", state, "path-info", "--json"}, paths...)...))
	for _, p := range paths {
		a, b := nix[p], sfs[p]
		if a.NarHash == "" || a.NarHash != b.NarHash || a.NarSize != b.NarSize || !slices.Equal(a.References, b.References) || a.Deriver != b.Deriver || a.CA != b.CA {
			t.Errorf("%s:\nNix     %+v\nstorefs %+v", p, a, b)
		}
	}
	if r := storefsResult(t, nil, "--store-dir", storeDir, "--state-dir", state, "verify", "--check-contents"); r.code != 0 {
		t.Errorf("storefs verify --check-contents: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// Nix writes caches (xz, zstd, none); storefs substitutes the whole
// closure from each and registers exactly what Nix recorded.
func TestSubstituteFromNixCaches(t *testing.T) {
	n := newNixStore(t)
	c := makeNarinfoClosure(t, n)
	sk, pk := substNixKey(t, n, "nix-subst-1")
	closure := strings.Fields(n.line(t, "nix-store", "-qR", c.out, c.text, c.tree, c.drv))
	work := t.TempDir()
	for _, comp := range []string{"xz", "zstd", "none"} {
		t.Run(comp, func(t *testing.T) {
			cache := filepath.Join(work, comp)
			nixCopy(t, n, cache, "?compression="+comp+"&secret-key="+sk, c)
			state := t.TempDir()
			out := storefs(t, nil, "--store-dir", storeDir, "--state-dir", state, "realise",
				"--substituters", "file://"+cache, "--trusted-public-keys", pk, c.out, c.text, c.tree, c.drv)
			if !strings.Contains(string(out), c.out) {
				t.Errorf("realise printed %q", out)
			}
			substCompare(t, n, state, closure)
			// The signatures are the narinfos'.
			sfs := substParseInfos(t, "storefs", storefs(t, nil, "--store-dir", storeDir, "--state-dir", state, "path-info", "--json", c.out))
			ni, err := narinfo.Parse(mustRead(t, filepath.Join(cache, strings.TrimPrefix(c.out, storeDir+"/")[:32]+".narinfo")), storeDir, "narinfo")
			if err != nil {
				t.Fatal(err)
			}
			if got := sfs[c.out].Signatures; len(got) != 1 || got[0] != ni.Sigs[0].String() {
				t.Errorf("signatures %q, narinfo has %v", got, ni.Sigs)
			}
		})
	}

	t.Run("substitute-before-build", func(t *testing.T) {
		state := t.TempDir()
		r := storefsResult(t, nil, "--store-dir", storeDir, "--state-dir", state, "realise",
			"--substituters", "file://"+filepath.Join(work, "zstd"), "--trusted-public-keys", pk, c.drv)
		if r.code != 0 || strings.TrimSpace(string(r.stdout)) != c.out {
			t.Fatalf("exit %d, stdout %q\n%s", r.code, r.stdout, r.stderr)
		}
		if strings.Contains(string(r.stderr), "building") || !strings.Contains(string(r.stderr), "substituted "+c.out) {
			t.Errorf("the output was not substituted:\n%s", r.stderr)
		}
		substCompare(t, n, state, []string{c.drv, c.out})
	})

	t.Run("untrusted", func(t *testing.T) {
		_, otherPK := substNixKey(t, n, "someone-else-1")
		state := t.TempDir()
		r := storefsResult(t, nil, "--store-dir", storeDir, "--state-dir", state, "realise",
			"--substituters", "file://"+filepath.Join(work, "xz"), "--trusted-public-keys", otherPK, c.text)
		if r.code == 0 || !strings.Contains(string(r.stderr), "signed with nix-subst-1") {
			t.Errorf("exit %d\n%s", r.code, r.stderr)
		}
		if r := storefsResult(t, nil, "--store-dir", storeDir, "--state-dir", state, "verify", "--check-contents"); r.code != 0 {
			t.Errorf("storefs verify: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if names, _ := os.ReadDir(filepath.Join(state, "store")); len(names) != 0 {
			t.Errorf("the backing directory holds %d entries", len(names))
		}
	})

	t.Run("nginx", func(t *testing.T) {
		url := nginxtest.Serve(t, filepath.Join(work, "xz"))
		state := t.TempDir()
		storefs(t, nil, "--store-dir", storeDir, "--state-dir", state, "copy", "--from", url,
			"--trusted-public-keys", pk, c.out, c.text)
		substCompare(t, n, state, strings.Fields(n.line(t, "nix-store", "-qR", c.out, c.text)))
	})
}

func mustRead(t testing.TB, p string) []byte {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// storefs copy --to writes caches (every compression, listings, signed)
// that real Nix substitutes from, checking the signatures.
func TestNixSubstitutesFromStorefsCopy(t *testing.T) {
	n := newNixStore(t)
	c := makeNarinfoClosure(t, n)
	paths := []string{c.out, c.text, c.tree}
	closure := strings.Fields(n.line(t, "nix-store", "-qR", c.out, c.text, c.tree))
	state := t.TempDir()
	storefs(t, bytes.NewReader(n.run(t, nil, "nix-store", append([]string{"--export"}, closure...)...)),
		"--store-dir", storeDir, "--state-dir", state, "import")
	work := t.TempDir()
	sk := filepath.Join(work, "storefs.secret")
	pk := string(storefs(t, nil, "key", "generate", "storefs-copy-1", "--out", sk))
	_, wrongPK := substNixKey(t, n, "storefs-copy-1")

	// Nix's own listings, to compare byte for byte.
	nixCache := filepath.Join(work, "nix-cache")
	n.run(t, nil, "nix", "copy", "--to", "file://"+nixCache+"?compression=none&write-nar-listing=true", c.out, c.text, c.tree)

	for _, comp := range []string{"none", "xz", "zstd", "bzip2", "br"} {
		t.Run(comp, func(t *testing.T) {
			cache := filepath.Join(work, "cache-"+comp)
			storefs(t, nil, "--store-dir", storeDir, "--state-dir", state, "copy", "--to", "file://"+cache,
				"--secret-key-file", sk, "--compression", comp, "--write-nar-listing", c.out, c.text, c.tree)
			if got := string(mustRead(t, filepath.Join(cache, "nix-cache-info"))); got != "StoreDir: /store\n" {
				t.Errorf("nix-cache-info %q", got)
			}
			for _, p := range closure {
				h := strings.TrimPrefix(p, storeDir+"/")[:32]
				if got, want := mustRead(t, filepath.Join(cache, h+".ls")), mustRead(t, filepath.Join(nixCache, h+".ls")); !bytes.Equal(got, want) {
					t.Errorf("%s.ls:\nstorefs %s\nNix     %s", h, got, want)
				}
			}
			other := newNixStore(t)
			// Nix trusts content-addressed paths unsigned; the built
			// output needs the signature.
			if r := runCmd(t, other.env, nil, "nix", "copy", "--from", "file://"+cache, "--trusted-public-keys", wrongPK, c.out); r.code == 0 || !strings.Contains(string(r.stderr), "lacks a valid signature") {
				t.Errorf("nix copy with the wrong key: exit %d\n%s", r.code, r.stderr)
			}
			other.run(t, nil, "nix", append([]string{"copy", "--from", "file://" + cache, "--trusted-public-keys", pk}, paths...)...)
			nix := substNixInfos(t, n, closure)
			got := substNixInfos(t, other, closure)
			for _, p := range closure {
				a, b := nix[p], got[p]
				if a.NarHash != b.NarHash || a.NarSize != b.NarSize || !slices.Equal(a.References, b.References) || a.Deriver != b.Deriver {
					t.Errorf("%s:\nsource %+v\ncopied %+v", p, a, b)
				}
			}
			other.run(t, nil, "nix-store", "--verify", "--check-contents")
			// Copying again writes nothing new.
			before := substListFiles(t, cache)
			storefs(t, nil, "--store-dir", storeDir, "--state-dir", state, "copy", "--to", "file://"+cache,
				"--secret-key-file", sk, "--compression", comp, c.out)
			if after := substListFiles(t, cache); !slices.Equal(before, after) {
				t.Errorf("a second copy changed the cache:\n%q\n%q", before, after)
			}
		})
	}
}

func substListFiles(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			st, _ := d.Info()
			out = append(out, fmt.Sprintf("%s %d %v", p, st.Size(), st.ModTime().UnixNano()))
		}
		return nil
	})
	return out
}
