package integration

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"storefs/store/narinfo"
	"storefs/store/nixhash"
	"storefs/store/signature"
	"storefs/store/storepath"
)

// narinfoClosure is a small closure in a real Nix store: files and a tree
// added with nix-store --add (content-addressed, no references), a text
// with references (builtins.toFile), a derivation and its built output
// (input-addressed, with a Deriver and a reference).
type narinfoClosure struct {
	hello, tree, busybox, text, drv, out string
}

func (c narinfoClosure) all() []string {
	return []string{c.hello, c.tree, c.busybox, c.text, c.drv, c.out}
}

func makeNarinfoClosure(t *testing.T, n *nixStore) narinfoClosure {
	t.Helper()
	work := t.TempDir()
	var c narinfoClosure
	c.hello = n.line(t, "nix-store", "--add", writeFile(t, work, "hello.txt", "hello\n"))
	tree := filepath.Join(work, "tree")
	if err := os.MkdirAll(filepath.Join(tree, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, tree, "a", "a\n")
	if err := os.WriteFile(filepath.Join(tree, "sub/run"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a", filepath.Join(tree, "link")); err != nil {
		t.Fatal(err)
	}
	c.tree = n.line(t, "nix-store", "--add", tree)
	c.busybox = n.line(t, "nix-store", "--add", busyboxTree(t))
	text := n.line(t, "nix-instantiate", "--eval", "--read-write-mode", "-E",
		`builtins.toFile "refs.txt" "uses ${builtins.storePath "`+c.hello+`"} and ${builtins.storePath "`+c.tree+`"}"`)
	c.text = strings.Trim(text, `"`)
	expr := `let bb = builtins.storePath "` + c.busybox + `"; hello = builtins.storePath "` + c.hello + `"; in
derivation { name = "narinfo-demo"; system = "x86_64-linux"; builder = "${bb}/bin/sh"; PATH = "${bb}/bin";
  args = ["-c" "mkdir $out; echo ${hello} > $out/ref; echo hi > $out/hi"]; }`
	c.drv = n.line(t, "nix-instantiate", writeFile(t, work, "demo.nix", expr))
	c.out = n.line(t, "nix-store", "--realise", c.drv)
	return c
}

// nixCopy copies the closure to a file:// cache with the given parameters.
func nixCopy(t *testing.T, n *nixStore, cache, params string, c narinfoClosure) {
	t.Helper()
	url := "file://" + cache + params
	n.run(t, nil, "nix", "copy", "--to", url, c.out, c.text, c.tree)
	n.run(t, nil, "nix", "copy", "--derivation", "--to", url, c.drv)
}

// readNarInfos returns every narinfo of a cache, by file name.
func readNarInfos(t *testing.T, cache string) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(cache, "*.narinfo"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[f] = data
	}
	return out
}

// fingerprintFromNix builds the fingerprint from what Nix's database says.
func fingerprintFromNix(t *testing.T, n *nixStore, path string) string {
	t.Helper()
	refs := strings.Fields(n.line(t, "nix-store", "-q", "--references", path))
	sort.Strings(refs)
	return "1;" + path + ";" + n.line(t, "nix-store", "-q", "--hash", path) + ";" +
		n.line(t, "nix-store", "-q", "--size", path) + ";" + strings.Join(refs, ",")
}

// Nix writes caches; storefs reads every narinfo and nix-cache-info, prints
// them back byte for byte and verifies Nix's signatures.
func TestNarInfoFromNix(t *testing.T) {
	n := newNixStore(t)
	c := makeNarinfoClosure(t, n)
	work := t.TempDir()
	sk, pk := filepath.Join(work, "sk"), filepath.Join(work, "pk")
	n.run(t, nil, "nix-store", "--generate-binary-cache-key", "nix-test-1", sk, pk)
	pkText, err := os.ReadFile(pk)
	if err != nil {
		t.Fatal(err)
	}
	public, err := signature.ParsePublicKey(string(pkText))
	if err != nil {
		t.Fatal(err)
	}
	// Same name, other key; and another name.
	impostor, _ := signature.Generate("nix-test-1")
	stranger, _ := signature.Generate("stranger-1")

	want := c.all()
	sort.Strings(want)
	for _, comp := range []struct{ name, ext string }{{"xz", ".nar.xz"}, {"zstd", ".nar.zst"}, {"none", ".nar"}} {
		cache := filepath.Join(work, "cache-"+comp.name)
		nixCopy(t, n, cache, "?compression="+comp.name+"&secret-key="+sk, c)

		info, err := os.ReadFile(filepath.Join(cache, "nix-cache-info"))
		if err != nil {
			t.Fatal(err)
		}
		ci, err := narinfo.ParseCacheInfo(info, cache)
		if err != nil || ci.StoreDir != storeDir {
			t.Fatalf("%s/nix-cache-info: %+v %v", cache, ci, err)
		}
		if out, err := ci.Print(); err != nil || !bytes.Equal(out, info) {
			t.Errorf("%s/nix-cache-info printed as %q, Nix wrote %q (%v)", cache, out, info, err)
		}

		var got []string
		for file, data := range readNarInfos(t, cache) {
			ni, err := narinfo.Parse(data, storeDir, file)
			if err != nil {
				t.Errorf("%v", err)
				continue
			}
			path := storepath.Dir(storeDir).Print(ni.StorePath)
			got = append(got, path)
			if filepath.Base(file) != ni.StorePath.HashPart()+".narinfo" {
				t.Errorf("%s describes %s", file, path)
			}
			if out, err := ni.Print(storeDir); err != nil || !bytes.Equal(out, data) {
				t.Errorf("%s printed as\n%s\nNix wrote\n%s(%v)", file, out, data, err)
			}
			if ni.Compression != comp.name || !strings.HasSuffix(ni.URL, comp.ext) {
				t.Errorf("%s: Compression %q URL %q", file, ni.Compression, ni.URL)
			}
			// FileHash and FileSize describe the file at URL.
			nar, err := os.ReadFile(filepath.Join(cache, ni.URL))
			if err != nil {
				t.Errorf("%s: %v", file, err)
			} else if sum := nixhash.Sum(nixhash.SHA256, nar); sum != ni.FileHash || uint64(len(nar)) != ni.FileSize {
				t.Errorf("%s: file %s has %s and %d bytes, narinfo says %s and %d", file, ni.URL, sum, len(nar), ni.FileHash, ni.FileSize)
			}
			fp, err := ni.Fingerprint(storeDir)
			if wantFP := fingerprintFromNix(t, n, path); err != nil || fp != wantFP {
				t.Errorf("%s: fingerprint\n%s (%v)\nfrom Nix's database\n%s", file, fp, err, wantFP)
			}
			if k, err := ni.Verify(storeDir, []signature.PublicKey{stranger.Public(), public}); err != nil || k.String() != public.String() {
				t.Errorf("%s: Nix's signature: %v", file, err)
			}
			_, err = ni.Verify(storeDir, []signature.PublicKey{impostor.Public()})
			var bad *signature.BadSignatureError
			if !errors.As(err, &bad) || bad.KeyName != "nix-test-1" {
				t.Errorf("%s: verified by another key of the same name: %v", file, err)
			}
			_, err = ni.Verify(storeDir, []signature.PublicKey{stranger.Public()})
			var untrusted *signature.UntrustedKeyError
			if !errors.As(err, &untrusted) || !strings.Contains(err.Error(), `signed by an untrusted key "nix-test-1"`) {
				t.Errorf("%s: verified without its key: %v", file, err)
			}
			// Nix records a deriver for the built output only, a CA for
			// every path but the built output.
			if isOut := path == c.out; isOut != (ni.Deriver.Base() == strings.TrimPrefix(c.drv, storeDir+"/")) || isOut != ni.CA.IsZero() {
				t.Errorf("%s: Deriver %q CA %q", file, ni.Deriver, ni.CA)
			}
			if ni.IsContentAddressed(storeDir) != !ni.CA.IsZero() {
				t.Errorf("%s: CA %s does not determine the path", file, ni.CA)
			}
		}
		sort.Strings(got)
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s holds narinfos for\n%q\nwant\n%q", cache, got, want)
		}
	}
}

// storefs signs; real Nix checks the signatures.
func TestNarInfoSignedByStorefs(t *testing.T) {
	n := newNixStore(t)
	c := makeNarinfoClosure(t, n)
	work := t.TempDir()

	// Keys: storefs's and Nix's read each other, byte for byte.
	sfsSecret := filepath.Join(work, "storefs.secret")
	pub := string(storefs(t, nil, "key", "generate", "storefs-test-1", "--out", sfsSecret))
	secretText, err := os.ReadFile(sfsSecret)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(n.run(t, bytes.NewReader(secretText), "nix", "key", "convert-secret-to-public")); got != pub {
		t.Errorf("Nix derives public key %q from storefs's secret key, storefs printed %q", got, pub)
	}
	// Without --out: the secret key on stdout, the public key on stderr.
	r := storefsResult(t, nil, "key", "generate", "storefs-test-3")
	if got := string(n.run(t, bytes.NewReader(r.stdout), "nix", "key", "convert-secret-to-public")); r.code != 0 || got+"\n" != string(r.stderr) {
		t.Errorf("storefs key generate: exit %d, stderr %q; Nix derives %q from its stdout", r.code, r.stderr, got)
	}
	nixSK, nixPK := filepath.Join(work, "nix.secret"), filepath.Join(work, "nix.public")
	n.run(t, nil, "nix-store", "--generate-binary-cache-key", "nix-test-2", nixSK, nixPK)
	nixPub, _ := os.ReadFile(nixPK)
	nixSec, _ := os.ReadFile(nixSK)
	if got := storefs(t, bytes.NewReader(nixSec), "key", "public"); !bytes.Equal(got, nixPub) {
		t.Errorf("storefs derives public key %q from Nix's secret key, Nix wrote %q", got, nixPub)
	}
	// A second storefs key with the same name, and Nix's key: both wrong.
	otherSecret := filepath.Join(work, "other.secret")
	otherPub := string(storefs(t, nil, "key", "generate", "storefs-test-1", "--out", otherSecret))

	// An unsigned cache; storefs signs every narinfo. The CA field is
	// dropped so that Nix must check the signature of every path: it
	// trusts a content-addressed path without one.
	cache := filepath.Join(work, "cache")
	nixCopy(t, n, cache, "?compression=none", c)
	secret, err := signature.ParseSecretKey(string(secretText))
	if err != nil {
		t.Fatal(err)
	}
	infos := readNarInfos(t, cache)
	if len(infos) != len(c.all()) {
		t.Fatalf("%d narinfos in %s, want %d", len(infos), cache, len(c.all()))
	}
	for file, data := range infos {
		ni, err := narinfo.Parse(data, storeDir, file)
		if err != nil {
			t.Fatal(err)
		}
		if len(ni.Sigs) != 0 {
			t.Fatalf("%s is signed already", file)
		}
		ni.CA = storepath.ContentAddress{}
		if err := ni.Sign(storeDir, secret); err != nil {
			t.Fatal(err)
		}
		out, err := ni.Print(storeDir)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, out, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	verify := func(key string) result {
		return runCmd(t, n.env, nil, "nix", "store", "verify", "--store", "file://"+cache,
			"--trusted-public-keys", key, "--all")
	}
	if r := verify(pub); r.code != 0 {
		t.Fatalf("nix store verify with storefs's key: exit %d\n%s", r.code, r.stderr)
	}
	for _, wrong := range []string{otherPub, string(nixPub)} {
		r := verify(wrong)
		if r.code == 0 || strings.Count(string(r.stderr), "is untrusted") != len(c.all()) {
			t.Errorf("nix store verify with the wrong key %s: exit %d\n%s", wrong, r.code, r.stderr)
		}
	}

	// Substituting from the cache into another store requires the
	// signatures (require-sigs = true).
	other := t.TempDir()
	copyFrom := func(key string) result {
		return runCmd(t, n.env, nil, "nix", "copy", "--from", "file://"+cache, "--to", "local?root="+other,
			"--trusted-public-keys", key, c.out)
	}
	if r := copyFrom(otherPub); r.code == 0 || !strings.Contains(string(r.stderr), "lacks a valid signature") {
		t.Errorf("nix copy --from with the wrong key: exit %d\n%s", r.code, r.stderr)
	}
	if r := copyFrom(pub); r.code != 0 {
		t.Fatalf("nix copy --from with storefs's key: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(other, "nix/store", strings.TrimPrefix(c.out, storeDir+"/"), "hi")); err != nil {
		t.Errorf("substituted path: %v", err)
	}
}
