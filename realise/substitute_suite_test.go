package realise

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"storefs/goals"
	"storefs/store"
	"storefs/store/derivation"
	"storefs/store/nar"
	"storefs/store/narinfo"
	"storefs/store/nixhash"
	"storefs/store/signature"
	"storefs/store/storepath"
)

// The shared suite every kind of cache passes (as restic's backend tests):
// runSubstituterSuite takes a function that serves a cache directory and
// returns its URL, and runs every case against it. The directory is made
// by WriteFileCache from a source store and then, per case, broken in one
// way; after each case the destination store must pass store.Check with
// contents and hold nothing but valid paths.

const testStoreDir = storepath.Dir("/store")

// serveFunc serves the cache directory dir and returns its URL.
type serveFunc func(t *testing.T, dir string) string

// fixture is a source store with a closure, and keys.
type fixture struct {
	src                *store.Store
	tree, text, refs   storepath.Path // tree; text refers to tree; refs to both
	big                storepath.Path // a few MiB of random bytes
	drv, out           storepath.Path // a derivation whose builder fails, and its output
	d                  *derivation.Derivation
	trusted, untrusted signature.SecretKey
	other              signature.SecretKey // trusted too
}

func (f *fixture) closure() []storepath.Path {
	return []storepath.Path{f.tree, f.text, f.refs, f.big, f.drv, f.out}
}

var (
	fixtureOnce sync.Once
	fixtureVal  *fixture
	fixtureErr  error
)

func newFixture(t *testing.T) *fixture {
	t.Helper()
	fixtureOnce.Do(func() { fixtureVal, fixtureErr = makeFixture() })
	if fixtureErr != nil {
		t.Fatal(fixtureErr)
	}
	return fixtureVal
}

func makeFixture() (*fixture, error) {
	ctx := context.Background()
	work, err := os.MkdirTemp("", "storefs-subst-fixture-")
	if err != nil {
		return nil, err
	}
	// Left for the process's lifetime; the fixture is shared by every test.
	s, err := store.Open(testStoreDir, filepath.Join(work, "state"), store.Options{})
	if err != nil {
		return nil, err
	}
	f := &fixture{src: s}
	tree := filepath.Join(work, "tree")
	must := func(err error) {
		if err != nil && fixtureErr == nil {
			fixtureErr = err
		}
	}
	must(os.MkdirAll(filepath.Join(tree, "sub/deeper"), 0o755))
	must(os.WriteFile(filepath.Join(tree, "a"), []byte("a\n"), 0o644))
	must(os.WriteFile(filepath.Join(tree, "sub/run"), []byte("#!/bin/sh\necho hi\n"), 0o755))
	must(os.WriteFile(filepath.Join(tree, "sub/deeper/empty"), nil, 0o644))
	must(os.Symlink("a", filepath.Join(tree, "link")))
	big := filepath.Join(work, "big")
	data := make([]byte, 3<<20)
	rand.Read(data[:1<<20]) // half compressible
	must(os.WriteFile(big, data, 0o644))
	if fixtureErr != nil {
		return nil, fixtureErr
	}
	add := func(p string) storepath.Path {
		info, err := s.AddPath(ctx, p, true, nixhash.SHA256)
		must(err)
		if info == nil {
			return storepath.Path{}
		}
		return info.Path
	}
	text := func(name, data string, refs ...storepath.Path) storepath.Path {
		info, err := s.AddText(ctx, name, []byte(data), refs)
		must(err)
		if info == nil {
			return storepath.Path{}
		}
		return info.Path
	}
	f.tree = add(tree)
	f.big = add(big)
	f.text = text("text.txt", "uses "+testStoreDir.Print(f.tree), f.tree)
	f.refs = text("refs.txt", "uses "+testStoreDir.Print(f.tree)+" and "+testStoreDir.Print(f.text), f.tree, f.text)
	if fixtureErr != nil {
		return nil, fixtureErr
	}
	f.d = failingDerivation(f.text)
	info, err := s.AddDerivation(ctx, f.d)
	if err != nil {
		return nil, err
	}
	f.drv = info.Path
	outs, err := s.DerivationOutputs(f.drv)
	if err != nil {
		return nil, err
	}
	f.out = outs["out"]
	// The output as if built elsewhere: it refers to text.
	tmp, err := s.NewTemp()
	if err != nil {
		return nil, err
	}
	contents := filepath.Join(tmp, "out")
	if err := os.WriteFile(contents, []byte("built from "+testStoreDir.Print(f.text)), 0o444); err != nil {
		return nil, err
	}
	h, n, err := narOf(contents)
	if err != nil {
		return nil, err
	}
	unlock, err := s.LockAll(ctx, []storepath.Path{f.out})
	if err != nil {
		return nil, err
	}
	err = s.Register(store.Registration{Info: store.PathInfo{Path: f.out, NarHash: h, NarSize: n, References: []storepath.Path{f.text}, Deriver: f.drv}, Contents: contents})
	unlock()
	if err != nil {
		return nil, err
	}
	for _, k := range []struct {
		dst  *signature.SecretKey
		name string
	}{{&f.trusted, "trusted-1"}, {&f.untrusted, "stranger-1"}, {&f.other, "other-1"}} {
		if *k.dst, err = signature.Generate(k.name); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// failingDerivation is a derivation whose builder does not exist: it can
// only be substituted.
func failingDerivation(input storepath.Path) *derivation.Derivation {
	return &derivation.Derivation{
		Outputs:   map[string]derivation.Output{"out": {}},
		InputDrvs: map[storepath.Path][]string{},
		InputSrcs: []storepath.Path{input},
		System:    HostSystem(),
		Builder:   "/no/such/builder",
		Env:       map[string]string{"name": "never-built", "builder": "/no/such/builder", "system": HostSystem(), "out": "", "input": testStoreDir.Print(input)},
	}
}

func narOf(p string) (nixhash.Hash, uint64, error) {
	h := nixhash.SHA256.New()
	cw := &countingWriter{}
	if err := nar.Dump(io.MultiWriter(h, cw), p); err != nil {
		return nixhash.Hash{}, 0, err
	}
	return nixhash.FromHasher(nixhash.SHA256, h), cw.n, nil
}

// writeCache writes the fixture's closure into a new cache directory.
func (f *fixture) writeCache(t *testing.T, compression string, key signature.SecretKey) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "cache")
	err := WriteFileCache(context.Background(), f.src, dir, f.closure(), CacheWriteOptions{Compression: compression, SecretKey: key})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// editNarInfo changes p's narinfo in dir; with key, it is signed again (all
// other signatures dropped).
func editNarInfo(t *testing.T, dir string, p storepath.Path, key *signature.SecretKey, edit func(ni *narinfo.NarInfo)) {
	t.Helper()
	file := filepath.Join(dir, p.HashPart()+".narinfo")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	ni, err := narinfo.Parse(data, testStoreDir, file)
	if err != nil {
		t.Fatal(err)
	}
	if key != nil {
		ni.Sigs = nil
	}
	edit(ni)
	if key != nil {
		if err := ni.Sign(testStoreDir, *key); err != nil {
			t.Fatal(err)
		}
	}
	out, err := ni.Print(testStoreDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readNarInfo(t *testing.T, dir string, p storepath.Path) *narinfo.NarInfo {
	t.Helper()
	file := filepath.Join(dir, p.HashPart()+".narinfo")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	ni, err := narinfo.Parse(data, testStoreDir, file)
	if err != nil {
		t.Fatal(err)
	}
	return ni
}

// refusingBuilder fails the test if anything is built.
type refusingBuilder struct{ t *testing.T }

func (b refusingBuilder) Build(_ context.Context, drv storepath.Path, _ *derivation.Derivation, _ goals.BuildOptions) error {
	b.t.Errorf("built %s, which should have been substituted", drv)
	return errors.New("refusing to build")
}

// dest is a fresh store substituting from caches.
type dest struct {
	s   *store.Store
	sub *Substituter
	w   *goals.Worker

	mu       sync.Mutex
	warnings []string
	progress map[storepath.Path]uint64
}

// fastHTTP retries quickly, so fault tests take milliseconds.
var fastHTTP = HTTPOptions{ConnectTimeout: 2 * time.Second, StallTimeout: 300 * time.Millisecond, MaxRetries: 3, RetryBackoff: 5 * time.Millisecond}

func newDest(t *testing.T, f *fixture, urls []string, edit func(*SubstituterOptions)) *dest {
	t.Helper()
	s, err := store.Open(testStoreDir, t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := &dest{s: s, progress: map[storepath.Path]uint64{}}
	opts := SubstituterOptions{
		TrustedKeys: []signature.PublicKey{f.trusted.Public(), f.other.Public()},
		RequireSigs: true,
		HTTP:        fastHTTP,
		OnWarning: func(msg string) {
			d.mu.Lock()
			d.warnings = append(d.warnings, msg)
			d.mu.Unlock()
		},
		OnProgress: func(p storepath.Path, done, total uint64) {
			d.mu.Lock()
			d.progress[p] = done
			d.mu.Unlock()
		},
	}
	if edit != nil {
		edit(&opts)
	}
	d.sub, err = NewSubstituter(s, urls, opts)
	if err != nil {
		t.Fatal(err)
	}
	d.w = goals.New(s, refusingBuilder{t}, d.sub, goals.Options{})
	t.Cleanup(func() { d.w.Wait(); checkStore(t, s); s.Close() })
	return d
}

// checkStore runs the store's checker with contents and checks that no
// scratch space or pending marker is left.
func checkStore(t *testing.T, s *store.Store) {
	t.Helper()
	probs, err := s.Check(store.CheckOptions{Contents: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range probs {
		t.Errorf("store check: %s", p)
	}
	for _, sub := range []string{"tmp", "pending"} {
		names, _ := os.ReadDir(filepath.Join(s.State, sub))
		for _, n := range names {
			t.Errorf("left behind in %s: %s", sub, n.Name())
		}
	}
}

// valid lists the valid paths of s.
func valid(t *testing.T, s *store.Store) []storepath.Path {
	t.Helper()
	var out []storepath.Path
	if err := s.ForEach(func(i *store.PathInfo) error { out = append(out, i.Path); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// sameInfo checks that dst registered p exactly as src has it.
func sameInfo(t *testing.T, src, dst *store.Store, p storepath.Path, wantSig string) {
	t.Helper()
	a, err := src.Info(p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := dst.Info(p)
	if err != nil {
		t.Fatalf("%s not registered: %v", p, err)
	}
	if a.NarHash != b.NarHash || a.NarSize != b.NarSize || !slices.Equal(a.References, b.References) || a.Deriver != b.Deriver || a.CA != b.CA {
		t.Errorf("%s registered as %+v, source has %+v", p, b, a)
	}
	if wantSig != "" && !slices.ContainsFunc(b.Sigs, func(s string) bool { return strings.HasPrefix(s, wantSig+":") }) {
		t.Errorf("%s registered with signatures %q, want one by %s", p, b.Sigs, wantSig)
	}
}

func wantErr(t *testing.T, err error, subs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", subs)
	}
	t.Logf("error (as expected): %v", err)
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", err, s)
		}
	}
}

func runSubstituterSuite(t *testing.T, serve serveFunc) {
	f := newFixture(t)
	ctx := context.Background()
	for _, comp := range Compressions {
		t.Run("closure-"+comp, func(t *testing.T) {
			dir := f.writeCache(t, comp, f.trusted)
			d := newDest(t, f, []string{serve(t, dir)}, nil)
			for _, p := range []storepath.Path{f.refs, f.big} {
				if err := d.w.Realise(ctx, p); err != nil {
					t.Fatal(err)
				}
			}
			for _, p := range []storepath.Path{f.tree, f.text, f.refs, f.big} {
				sameInfo(t, f.src, d.s, p, "trusted-1")
			}
			if got := len(valid(t, d.s)); got != 4 {
				t.Errorf("%d paths valid, want 4", got)
			}
			if fs := readNarInfo(t, dir, f.big).FileSize; d.progress[f.big] != fs {
				t.Errorf("progress of big ended at %d bytes, want FileSize %d", d.progress[f.big], fs)
			}
		})
	}
	t.Run("substitute-before-build", func(t *testing.T) {
		dir := f.writeCache(t, "zstd", f.trusted)
		d := newDest(t, f, []string{serve(t, dir)}, nil)
		if err := d.w.Realise(ctx, f.text); err != nil {
			t.Fatal(err)
		}
		if _, err := d.s.AddDerivation(ctx, failingDerivation(f.text)); err != nil {
			t.Fatal(err)
		}
		outs, err := d.w.BuildDerivation(ctx, f.drv)
		if err != nil {
			t.Fatal(err)
		}
		if outs["out"] != f.out {
			t.Errorf("outputs %v, want %s", outs, f.out)
		}
		sameInfo(t, f.src, d.s, f.out, "trusted-1")
	})
	t.Run("output-with-a-reference-in-no-cache", func(t *testing.T) {
		// The output's narinfo (signed) names a reference no cache has:
		// as in Nix, that output counts as not substitutable and the
		// derivation is built, without --fallback (here: refused, as the
		// destination builds nothing).
		dir := f.writeCache(t, "zstd", f.trusted)
		ghost, _ := storepath.ParseBase("00000000000000000000000000000000-ghost")
		editNarInfo(t, dir, f.out, &f.trusted, func(ni *narinfo.NarInfo) {
			ni.References = append(ni.References, ghost)
		})
		d := newDest(t, f, []string{serve(t, dir)}, nil)
		if err := d.w.Realise(ctx, f.text); err != nil {
			t.Fatal(err)
		}
		// Without its derivation, the error names the reference.
		if err := d.w.Realise(ctx, f.out); !errors.Is(err, goals.ErrIncompleteClosure) {
			t.Errorf("substituting %s: %v, want ErrIncompleteClosure", f.out, err)
		} else {
			wantErr(t, err, "dependency /store/"+ghost.Base()+" failed", "names it as a reference")
		}
		if _, err := d.s.AddDerivation(ctx, failingDerivation(f.text)); err != nil {
			t.Fatal(err)
		}
		_, err := d.w.BuildDerivation(ctx, f.drv)
		if !errors.Is(err, goals.ErrNoLocalBuilds) {
			t.Errorf("err = %v, want the build refused (goals.ErrNoLocalBuilds)", err)
		}
	})
	t.Run("derivation-itself", func(t *testing.T) {
		dir := f.writeCache(t, "none", f.trusted)
		d := newDest(t, f, []string{serve(t, dir)}, nil)
		if _, err := d.w.BuildDerivation(ctx, f.drv); err != nil {
			t.Fatal(err)
		}
		sameInfo(t, f.src, d.s, f.drv, "")
		sameInfo(t, f.src, d.s, f.out, "")
	})
	t.Run("miss", func(t *testing.T) {
		dir := f.writeCache(t, "none", f.trusted)
		d := newDest(t, f, []string{serve(t, dir)}, nil)
		missing, _ := storepath.ParseBase("00000000000000000000000000000000-missing")
		err := d.w.Realise(ctx, missing)
		if !errors.Is(err, goals.ErrUnknownPath) {
			t.Fatalf("got %v, want ErrUnknownPath", err)
		}
	})
	bad := []struct {
		name    string
		path    func(f *fixture) storepath.Path
		breakIt func(t *testing.T, f *fixture, dir string)
		want    []string
	}{
		{"nar-hash-differs", func(f *fixture) storepath.Path { return f.text }, func(t *testing.T, f *fixture, dir string) {
			editNarInfo(t, dir, f.text, &f.trusted, func(ni *narinfo.NarInfo) { ni.NarHash = nixhash.Sum(nixhash.SHA256, []byte("other")) })
		}, []string{"NarHash mismatch for /store/" + f.text.Base(), "the narinfo says sha256:"}},
		{"nar-of-another-path", func(f *fixture) storepath.Path { return f.text }, func(t *testing.T, f *fixture, dir string) {
			other := readNarInfo(t, dir, f.refs)
			editNarInfo(t, dir, f.text, &f.trusted, func(ni *narinfo.NarInfo) {
				ni.URL, ni.FileHash, ni.FileSize = other.URL, other.FileHash, other.FileSize
			})
		}, []string{"substituting /store/" + f.text.Base(), "NarSize"}},
		{"truncated-nar", func(f *fixture) storepath.Path { return f.big }, func(t *testing.T, f *fixture, dir string) {
			ni := readNarInfo(t, dir, f.big)
			if err := os.Truncate(filepath.Join(dir, ni.URL), int64(ni.FileSize/2)); err != nil {
				t.Fatal(err)
			}
		}, []string{"unpacking", "archive truncated"}},
		{"file-hash-differs", func(f *fixture) storepath.Path { return f.tree }, func(t *testing.T, f *fixture, dir string) {
			editNarInfo(t, dir, f.tree, nil, func(ni *narinfo.NarInfo) { ni.FileHash = nixhash.Sum(nixhash.SHA256, []byte("other")) })
		}, []string{"FileHash mismatch for /store/" + f.tree.Base()}},
		{"bad-signature", func(f *fixture) storepath.Path { return f.tree }, func(t *testing.T, f *fixture, dir string) {
			editNarInfo(t, dir, f.tree, nil, func(ni *narinfo.NarInfo) { ni.NarSize++ })
		}, []string{"refusing /store/" + f.tree.Base(), "no good signature by a trusted key", "signed with trusted-1"}},
		{"no-signature", func(f *fixture) storepath.Path { return f.tree }, func(t *testing.T, f *fixture, dir string) {
			editNarInfo(t, dir, f.tree, nil, func(ni *narinfo.NarInfo) { ni.Sigs = nil })
		}, []string{"it is not signed", "--no-require-sigs"}},
		{"untrusted-key", func(f *fixture) storepath.Path { return f.tree }, func(t *testing.T, f *fixture, dir string) {
			editNarInfo(t, dir, f.tree, &f.untrusted, func(ni *narinfo.NarInfo) {})
		}, []string{"signed with stranger-1", "trusted keys: [trusted-1 other-1]"}},
		{"url-leaves-cache", func(f *fixture) storepath.Path { return f.tree }, func(t *testing.T, f *fixture, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "../outside.nar"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			editNarInfo(t, dir, f.tree, &f.trusted, func(ni *narinfo.NarInfo) { ni.URL = "../outside.nar" })
		}, []string{"NAR URL", `".." segment: it may not leave the cache`}},
		{"url-etc-passwd", func(f *fixture) storepath.Path { return f.tree }, func(t *testing.T, f *fixture, dir string) {
			editNarInfo(t, dir, f.tree, &f.trusted, func(ni *narinfo.NarInfo) { ni.URL = "nar/../../../../etc/passwd" })
		}, []string{"may not leave the cache"}},
		{"url-absolute", func(f *fixture) storepath.Path { return f.tree }, func(t *testing.T, f *fixture, dir string) {
			editNarInfo(t, dir, f.tree, &f.trusted, func(ni *narinfo.NarInfo) { ni.URL = "/etc/passwd" })
		}, []string{"is absolute"}},
		{"narinfo-for-another-path", func(f *fixture) storepath.Path { return f.tree }, func(t *testing.T, f *fixture, dir string) {
			data, err := os.ReadFile(filepath.Join(dir, f.big.HashPart()+".narinfo"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, f.tree.HashPart()+".narinfo"), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}, []string{"its narinfo describes /store/" + f.big.Base() + " instead"}},
		{"garbage-compression", func(f *fixture) storepath.Path { return f.tree }, func(t *testing.T, f *fixture, dir string) {
			editNarInfo(t, dir, f.tree, nil, func(ni *narinfo.NarInfo) { ni.Compression = "xz" })
		}, []string{"decompressing", "xz"}},
		{"garbage-zstd", func(f *fixture) storepath.Path { return f.tree }, func(t *testing.T, f *fixture, dir string) {
			editNarInfo(t, dir, f.tree, nil, func(ni *narinfo.NarInfo) { ni.Compression = "zstd" })
		}, []string{"unpacking", "zstd"}},
		{"unknown-compression", func(f *fixture) storepath.Path { return f.tree }, func(t *testing.T, f *fixture, dir string) {
			editNarInfo(t, dir, f.tree, nil, func(ni *narinfo.NarInfo) { ni.Compression = "lz4" })
		}, []string{`unsupported compression "lz4"`}},
		{"nar-missing", func(f *fixture) storepath.Path { return f.tree }, func(t *testing.T, f *fixture, dir string) {
			if err := os.Remove(filepath.Join(dir, readNarInfo(t, dir, f.tree).URL)); err != nil {
				t.Fatal(err)
			}
		}, []string{"which the cache does not have"}},
		{"malformed-narinfo", func(f *fixture) storepath.Path { return f.tree }, func(t *testing.T, f *fixture, dir string) {
			if err := os.WriteFile(filepath.Join(dir, f.tree.HashPart()+".narinfo"), []byte("StorePath /store/x\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, []string{f.tree.HashPart() + ".narinfo line 1", "is not `Key: value`"}},
		{"other-store-dir", func(f *fixture) storepath.Path { return f.tree }, func(t *testing.T, f *fixture, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "nix-cache-info"), []byte("StoreDir: /nix/store\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, []string{"is for the store dir /nix/store, not /store"}},
		{"reference-in-no-cache", func(f *fixture) storepath.Path { return f.refs }, func(t *testing.T, f *fixture, dir string) {
			if err := os.Remove(filepath.Join(dir, f.text.HashPart()+".narinfo")); err != nil {
				t.Fatal(err)
			}
		}, []string{"cannot realise /store/" + f.refs.Base(), "dependency /store/" + f.text.Base() + " failed", "names it as a reference"}},
		{"no-cache-info", func(f *fixture) storepath.Path { return f.tree }, func(t *testing.T, f *fixture, dir string) {
			if err := os.Remove(filepath.Join(dir, "nix-cache-info")); err != nil {
				t.Fatal(err)
			}
		}, []string{"is not a binary cache: it has no nix-cache-info"}},
	}
	for _, c := range bad {
		t.Run("bad/"+c.name, func(t *testing.T) {
			dir := f.writeCache(t, "none", f.trusted)
			c.breakIt(t, f, dir)
			d := newDest(t, f, []string{serve(t, dir)}, nil)
			p := c.path(f)
			err := d.w.Realise(ctx, p)
			wantErr(t, err, c.want...)
			if errors.Is(err, goals.ErrUnknownPath) {
				t.Errorf("a path a cache has reads as unknown: %v", err)
			}
			if ok, _ := d.s.IsValid(p); ok {
				t.Errorf("%s registered from a bad cache", p)
			}
		})
	}
	// Fields no signature covers are checked before they are recorded.
	appendLine := func(t *testing.T, dir string, p storepath.Path, line string) {
		file := filepath.Join(dir, p.HashPart()+".narinfo")
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, append(data, line+"\n"...), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	unsigned := []struct {
		name    string
		path    func(f *fixture) storepath.Path
		breakIt func(t *testing.T, f *fixture, dir string)
		check   func(t *testing.T, info *store.PathInfo)
		warning string
		refused []string // the path is not substituted: the error has these
	}{
		{"ca-added", func(f *fixture) storepath.Path { return f.out }, func(t *testing.T, f *fixture, dir string) {
			appendLine(t, dir, f.out, "CA: fixed:r:sha256:"+strings.Repeat("1", 52))
		}, func(t *testing.T, info *store.PathInfo) {
			if !info.CA.IsZero() {
				t.Errorf("recorded with the narinfo's unsigned CA %s", info.CA)
			}
		}, "ignoring its CA field: content address fixed:r:sha256:1111", nil},
		{"ca-of-another-kind", func(f *fixture) storepath.Path { return f.tree }, func(t *testing.T, f *fixture, dir string) {
			editNarInfo(t, dir, f.tree, nil, func(ni *narinfo.NarInfo) { ni.CA.Recursive = false })
		}, func(t *testing.T, info *store.PathInfo) {
			if !info.CA.IsZero() {
				t.Errorf("recorded with the CA %s", info.CA)
			}
		}, "ignoring its CA field", nil},
		{"ca-makes-path-not-contents", func(f *fixture) storepath.Path { return f.text }, func(t *testing.T, f *fixture, dir string) {
			// A signer vouches for other contents under a text path.
			other := readNarInfo(t, dir, f.tree)
			editNarInfo(t, dir, f.text, &f.trusted, func(ni *narinfo.NarInfo) {
				ni.URL, ni.FileHash, ni.FileSize, ni.NarHash, ni.NarSize = other.URL, other.FileHash, other.FileSize, other.NarHash, other.NarSize
			})
		}, nil, "", []string{"narinfo of /store/" + f.text.Base(), "content address text:sha256:", "needs a non-executable regular file"}},
		{"deriver-not-a-drv", func(f *fixture) storepath.Path { return f.out }, func(t *testing.T, f *fixture, dir string) {
			editNarInfo(t, dir, f.out, nil, func(ni *narinfo.NarInfo) { ni.Deriver = f.tree })
		}, func(t *testing.T, info *store.PathInfo) {
			if !info.Deriver.IsZero() {
				t.Errorf("recorded with the deriver %s", info.Deriver)
			}
		}, "ignoring its Deriver", nil},
		{"bad-sig-by-trusted-name", func(f *fixture) storepath.Path { return f.tree }, func(t *testing.T, f *fixture, dir string) {
			appendLine(t, dir, f.tree, "Sig: other-1:"+strings.Repeat("A", 86)+"==")
		}, func(t *testing.T, info *store.PathInfo) {
			if len(info.Sigs) != 1 || !strings.HasPrefix(info.Sigs[0], "trusted-1:") {
				t.Errorf("recorded signatures %q, want only trusted-1's", info.Sigs)
			}
		}, "ignoring a bad signature by other-1", nil},
	}
	for _, c := range unsigned {
		t.Run("unsigned/"+c.name, func(t *testing.T) {
			dir := f.writeCache(t, "none", f.trusted)
			c.breakIt(t, f, dir)
			d := newDest(t, f, []string{serve(t, dir)}, nil)
			p := c.path(f)
			err := d.w.Realise(ctx, p)
			if c.refused != nil {
				wantErr(t, err, c.refused...)
				if ok, _ := d.s.IsValid(p); ok {
					t.Errorf("%s registered", p)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			info, err := d.s.Info(p)
			if err != nil {
				t.Fatal(err)
			}
			c.check(t, info)
			if w := strings.Join(d.warnings, "\n"); !strings.Contains(w, c.warning) {
				t.Errorf("warnings %q, want one with %q", w, c.warning)
			}
		})
	}
	t.Run("fallback-to-next-cache", func(t *testing.T) {
		broken := f.writeCache(t, "none", f.trusted)
		editNarInfo(t, broken, f.text, &f.trusted, func(ni *narinfo.NarInfo) { ni.NarHash = nixhash.Sum(nixhash.SHA256, nil) })
		os.WriteFile(filepath.Join(broken, "nix-cache-info"), []byte("StoreDir: /store\nPriority: 10\n"), 0o644)
		good := f.writeCache(t, "xz", f.other)
		d := newDest(t, f, []string{serve(t, good), serve(t, broken)}, nil)
		if err := d.w.Realise(ctx, f.text); err != nil {
			t.Fatal(err)
		}
		sameInfo(t, f.src, d.s, f.text, "other-1")
		if len(d.warnings) == 0 || !strings.Contains(strings.Join(d.warnings, "\n"), "NarHash mismatch") {
			t.Errorf("warnings %q, want the failed cache's", d.warnings)
		}
	})
	t.Run("priority", func(t *testing.T) {
		low := f.writeCache(t, "none", f.trusted) // Priority 50 by default
		high := f.writeCache(t, "zstd", f.other)
		os.WriteFile(filepath.Join(high, "nix-cache-info"), []byte("StoreDir: /store\nPriority: 20\n"), 0o644)
		d := newDest(t, f, []string{serve(t, low), serve(t, high)}, nil)
		if err := d.w.Realise(ctx, f.tree); err != nil {
			t.Fatal(err)
		}
		sameInfo(t, f.src, d.s, f.tree, "other-1")
	})
	t.Run("no-require-sigs", func(t *testing.T) {
		dir := f.writeCache(t, "br", signature.SecretKey{})
		d := newDest(t, f, []string{serve(t, dir)}, func(o *SubstituterOptions) { o.RequireSigs = false; o.TrustedKeys = nil })
		if err := d.w.Realise(ctx, f.refs); err != nil {
			t.Fatal(err)
		}
		sameInfo(t, f.src, d.s, f.refs, "")
	})
	t.Run("untrusted-cache", func(t *testing.T) {
		dir := f.writeCache(t, "none", f.untrusted)
		d := newDest(t, f, []string{serve(t, dir)}, nil)
		err := d.w.Realise(ctx, f.text)
		wantErr(t, err, "signed with stranger-1")
	})
}
