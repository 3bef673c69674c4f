package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"storefs/store/signature"
)

// Made by Nix 2.8: nix-store --generate-binary-cache-key test-cache-1 sk pk
// (store/narinfo/testdata/test-cache-1.*).
const (
	nixSecret = "test-cache-1:t8se0Rffmo74RTNY7nrQwWCA2IjSU4f5pQOubewcAYGlFiuZoO7N+1eBQceFwnpt3qGmZccRBVGTucnunyRp5w=="
	nixPublic = "test-cache-1:pRYrmaDuzftXgUHHhcJ6bd6hpmXHEQVRk7nJ7p8kaec="
)

func runArgs(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, stdio{strings.NewReader(stdin), &out, &errb})
	return code, out.String(), errb.String()
}

func TestKeyGenerateStdout(t *testing.T) {
	code, out, errOut := runArgs(t, "", "key", "generate", "cache.example.org-1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	secret, err := signature.ParseSecretKey(out)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasSuffix(out, "\n") || !strings.HasPrefix(out, "cache.example.org-1:") || len(out) != len("cache.example.org-1:")+88 {
		t.Errorf("secret key on stdout is not in Nix's form: %q", out)
	}
	if errOut != secret.Public().String()+"\n" {
		t.Errorf("stderr %q, want the public key and a newline", errOut)
	}
	// The public key command agrees, byte for byte.
	code, pub, errOut := runArgs(t, out, "key", "public")
	if code != 0 || pub != secret.Public().String() {
		t.Errorf("key public: exit %d, %q %q", code, pub, errOut)
	}
}

func TestKeyGenerateOut(t *testing.T) {
	file := filepath.Join(t.TempDir(), "secret")
	var out, errb bytes.Buffer
	if err := runKeyGenerate(context.Background(), "k1", file, stdio{nil, &out, &errb}); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("secret key file mode %v, want 0600", st.Mode().Perm())
	}
	data, _ := os.ReadFile(file)
	secret, err := signature.ParseSecretKey(string(data))
	if err != nil || strings.HasSuffix(string(data), "\n") {
		t.Fatalf("secret key file %q: %v", data, err)
	}
	if out.String() != secret.Public().String() || errb.Len() != 0 {
		t.Errorf("stdout %q stderr %q, want the public key %q on stdout", out.String(), errb.String(), secret.Public())
	}
	// An existing file is never overwritten.
	code, stdout, stderr := runArgs(t, "", "key", "generate", "k2", "--out", file)
	if code != exitFailure || stdout != "" || !strings.Contains(stderr, "storefs: secret key file "+file+" already exists") {
		t.Errorf("second generate: exit %d, %q %q", code, stdout, stderr)
	}
	if again, _ := os.ReadFile(file); !bytes.Equal(again, data) {
		t.Error("the existing key file was changed")
	}
	// --secret-key-file reads it back.
	code, pub, stderr := runArgs(t, "", "key", "public", "--secret-key-file", file)
	if code != 0 || pub != secret.Public().String() {
		t.Errorf("key public --secret-key-file: exit %d %q %q", code, pub, stderr)
	}
}

func TestKeyPublicOfNixKey(t *testing.T) {
	for _, in := range []string{nixSecret, nixSecret + "\n"} {
		code, out, errOut := runArgs(t, in, "key", "public")
		if code != 0 || out != nixPublic {
			t.Errorf("public key of Nix's key: exit %d, %q (%s), want %q", code, out, errOut, nixPublic)
		}
	}
}

func TestKeyErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		stdin string
		args  []string
		code  int
		want  string
	}{
		{"", []string{"key", "generate", "a:b"}, exitFailure, `storefs: key name "a:b": ':' is not allowed`},
		{"", []string{"key", "generate", ""}, exitFailure, "storefs: key name is empty"},
		{"", []string{"key", "generate", "k", "--out", filepath.Join(dir, "no/such/dir")}, exitFailure, "storefs: creating secret key file: open " + dir},
		{"", []string{"key", "generate"}, exitUsage, "expected \"<name>\""},
		{"", []string{"key", "public"}, exitFailure, "storefs: stdin: secret key has no colon"},
		{nixPublic, []string{"key", "public"}, exitFailure, `storefs: stdin: secret key "test-cache-1": base64 decodes to 32 bytes, want 64`},
		{nixSecret[:40], []string{"key", "public"}, exitFailure, `storefs: stdin: secret key "test-cache-1": bad base64`},
		{strings.Repeat("x", maxKeyFile+1), []string{"key", "public"}, exitFailure, "reading the secret key from stdin: more than 65536 bytes"},
		{"", []string{"key", "public", "--secret-key-file", filepath.Join(dir, "none")}, exitFailure, "storefs: reading the secret key: open " + dir + "/none: no such file"},
	}
	for _, tt := range tests {
		code, out, errOut := runArgs(t, tt.stdin, tt.args...)
		if code != tt.code || out != "" || !strings.Contains(errOut, tt.want) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit %d and %q", tt.args, code, out, errOut, tt.code, tt.want)
		}
		if strings.Contains(errOut, nixSecret[13:40]) {
			t.Errorf("%q: the error reveals the secret key: %s", tt.args, errOut)
		}
	}
}

func TestKeyCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	file := filepath.Join(t.TempDir(), "k")
	if err := runKeyGenerate(ctx, "k", file, stdio{nil, &bytes.Buffer{}, &bytes.Buffer{}}); err == nil {
		t.Error("generate ran with a cancelled context")
	}
	if _, err := os.Stat(file); err == nil {
		t.Error("a cancelled generate wrote a key")
	}
}
