package realise

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"storefs/goals"
	"storefs/sandbox"
	"storefs/store"
	"storefs/store/derivation"
	"storefs/store/nixhash"
	"storefs/store/storepath"
)

func mustPath(t *testing.T, base string) storepath.Path {
	t.Helper()
	p, err := storepath.ParseBase(base)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBuilderEnv checks the environment against what Nix 2.8 gives (seen
// with nix-store --realise; see integration/realise_test.go for the
// comparison of real builds).
func TestBuilderEnv(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("RZ_IMPURE", "from the caller")
	d := &derivation.Derivation{
		Outputs: map[string]derivation.Output{"out": {}},
		Env: map[string]string{
			"name": "x", "out": "/store/x", "passAsFile": "big other", "big": "contents\n", "PATH": "/mine",
			"impureEnvVars": "RZ_IMPURE RZ_UNSET",
		},
	}
	env, err := builderEnv("/store", d, dir, 3)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(env, "\n")
	// The .attr- name of "big" is what Nix 2.8 gave a builder.
	want := strings.Join([]string{
		"HOME=/homeless-shelter", "NIX_BUILD_CORES=3", "NIX_BUILD_TOP=/build", "NIX_LOG_FD=2", "NIX_STORE=/store",
		"PATH=/mine", "PWD=/build", "TEMP=/build", "TEMPDIR=/build", "TERM=xterm-256color", "TMP=/build", "TMPDIR=/build",
		"bigPath=/build/.attr-1lak0mvllw8rv9i9ygkglvhqsq19qi9ynl4bi7gbf69ab5nzw89a",
		"impureEnvVars=RZ_IMPURE RZ_UNSET", "name=x", "out=/store/x", "passAsFile=big other",
	}, "\n")
	if got != want {
		t.Errorf("env:\n%s\nwant:\n%s", got, want)
	}
	fi, err := os.Stat(filepath.Join(dir, ".attr-1lak0mvllw8rv9i9ygkglvhqsq19qi9ynl4bi7gbf69ab5nzw89a"))
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("passAsFile file: %v %v, want mode 0644", fi, err)
	}

	// A fixed-output derivation also gets NIX_OUTPUT_CHECKED and its
	// impureEnvVars from this process's environment.
	d.Outputs["out"] = derivation.Output{Hash: nixhash.Sum(nixhash.SHA256, []byte("fixed"))}
	env, err = builderEnv("/store", d, t.TempDir(), 3)
	if err != nil {
		t.Fatal(err)
	}
	got = strings.Join(env, "\n")
	for _, w := range []string{"NIX_OUTPUT_CHECKED=1", "RZ_IMPURE=from the caller", "RZ_UNSET="} {
		if !strings.Contains(got, w+"\n") {
			t.Errorf("fixed-output env lacks %q:\n%s", w, got)
		}
	}
}

func TestCheckPlatform(t *testing.T) {
	have := strings.Join(systemFeatures(), ", ")
	for _, c := range []struct {
		system, features, want string
	}{
		{"x86_64-linux", "", ""},
		{"x86_64-linux", "big-parallel benchmark big-parallel", ""},
		{"i686-linux", "", ""},
		{"aarch64-linux", "", "a 'aarch64-linux' with features {} is required to build '/store/x.drv', but I am a 'x86_64-linux' with features {" + have + "}"},
		{"x86_64-linux", "zzz big-parallel", "a 'x86_64-linux' with features {big-parallel, zzz} is required to build '/store/x.drv'"},
	} {
		d := &derivation.Derivation{System: c.system, Env: map[string]string{"requiredSystemFeatures": c.features}}
		err := checkPlatform("/store/x.drv", d, "x86_64-linux")
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.HasPrefix(err.Error(), c.want)) {
			t.Errorf("%s %q: %v, want %q", c.system, c.features, err, c.want)
		}
	}
}

func TestExecFailure(t *testing.T) {
	err := &sandbox.SetupError{What: "executing builder /store/b/bin/sh", Err: unix.ENOENT}
	msg, ok := execFailure(err, "/store/b/bin/sh")
	if !ok || msg != "executing '/store/b/bin/sh': no such file or directory" {
		t.Errorf("execFailure = %q %v", msg, ok)
	}
	if _, ok := execFailure(&sandbox.SetupError{What: "bind-mounting input", Err: unix.EPERM}, "/x"); ok {
		t.Error("a setup error taken for the builder's failure")
	}
}

func TestCheckCycles(t *testing.T) {
	a := mustPath(t, "00000000000000000000000000000000-x")
	b := mustPath(t, "11111111111111111111111111111111-x-dev")
	c := mustPath(t, "22222222222222222222222222222222-x-lib")
	other := mustPath(t, "33333333333333333333333333333333-dep")
	d := &derivation.Derivation{Outputs: map[string]derivation.Output{"out": {Path: a}, "dev": {Path: b}, "lib": {Path: c}}}
	reg := func(p storepath.Path, refs ...storepath.Path) store.Registration {
		return store.Registration{Info: store.PathInfo{Path: p, References: refs}}
	}
	for _, tc := range []struct {
		name string
		regs []store.Registration
		want string
	}{
		{"chain", []store.Registration{reg(a, a, b, other), reg(b, c), reg(c, c)}, ""},
		{"two", []store.Registration{reg(a, b), reg(b, a), reg(c)}, "in the references of output"},
		{"three", []store.Registration{reg(a, b), reg(b, c), reg(c, a)}, "cycle detected in build of '/store/x.drv'"},
	} {
		err := checkCycles("/store/x.drv", d, tc.regs)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
		var be *goals.BuildError
		if err != nil && (!errors.As(err, &be) || be.Status != goals.StatusOutputRejected) {
			t.Errorf("%s: %#v is not an output-rejected BuildError", tc.name, err)
		}
	}
}

func TestCheckFixed(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, []byte("other"), 0o444); err != nil {
		t.Fatal(err)
	}
	o := derivation.Output{Hash: nixhash.Sum(nixhash.SHA256, []byte("fixed"))}
	err := checkFixed("/store/x.drv", "/store/x", o, f, nixhash.Hash{})
	var be *goals.BuildError
	if !errors.As(err, &be) || be.Status != goals.StatusHashMismatch {
		t.Fatalf("checkFixed: %v, want a hash mismatch", err)
	}
	for _, w := range []string{"hash mismatch in fixed-output derivation '/store/x.drv'",
		// nix-hash --type sha256 --flat --base32 of "fixed":
		"specified: sha256-mSqTRVxx/t02rJu8Q5lSwEHPYURZWEcq9Hkmm42HNRM= (sha256:04rmhy6rn9kryhm4fn2r8ihwyhf0aacl7g4vmhvdvzkibi2r6alr)",
		"got: sha256-2SmKENGwc1g33EvYXaxkGw887yekfl1TpU8vP1svz/o="} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("message %q lacks %q", err, w)
		}
	}
	if err := os.Chmod(f, 0o555); err != nil {
		t.Fatal(err)
	}
	err = checkFixed("/store/x.drv", "/store/x", o, f, nixhash.Hash{})
	if !errors.As(err, &be) || be.Status != goals.StatusOutputRejected || !strings.Contains(err.Error(), "non-executable regular file") {
		t.Errorf("an executable flat output: %v", err)
	}
}
