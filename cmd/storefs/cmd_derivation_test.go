package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// drvTestdata holds .drv files made by nix-instantiate with store dir /store
// and what nix show-derivation printed for them (its README says how).
const drvTestdata = "../../store/derivation/testdata"

func drvFile(t *testing.T, name string) string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(drvTestdata, "*-"+name+".drv"))
	if err != nil || len(m) != 1 {
		t.Fatalf("testdata %s.drv: %v %v", name, m, err)
	}
	return m[0]
}

func TestDerivationShowMatchesNix(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(drvTestdata, "*.drv"))
	if err != nil || len(files) < 10 {
		t.Fatalf("testdata: %v %v", files, err)
	}
	want, err := os.ReadFile(filepath.Join(drvTestdata, "all.json"))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := runDerivationShow(context.Background(), "/store", files, true, &out); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Errorf("derivation show differs from nix show-derivation:\n got %s\nwant %s", out.Bytes(), want)
	}

	// Through the command line, one file whose inputs lie next to it.
	diamond := drvFile(t, "diamond")
	want, err = os.ReadFile(strings.TrimSuffix(diamond, ".drv") + ".json")
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--store-dir", "/store", "derivation", "show", diamond}, stdio{nil, &stdout, &stderr})
	if code != 0 || !bytes.Equal(stdout.Bytes(), want) {
		t.Errorf("storefs derivation show: exit %d, stderr %s\n got %s\nwant %s", code, stderr.Bytes(), stdout.Bytes(), want)
	}
}

func TestDerivationShowRefuses(t *testing.T) {
	tmp := t.TempDir()
	trivial := drvFile(t, "trivial")
	data, err := os.ReadFile(trivial)
	if err != nil {
		t.Fatal(err)
	}
	// The output path altered in the outputs list only.
	i := bytes.Index(data, []byte(`-trivial","",""`))
	if i < 0 {
		t.Fatal("no output in trivial.drv")
	}
	bad := append([]byte(nil), data...)
	bad[i-1] = map[bool]byte{true: '1', false: '0'}[bad[i-1] == '0']
	badFile := filepath.Join(tmp, "bad.drv")
	if err := os.WriteFile(badFile, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	// A good file under a store path name that is not its own.
	misnamed := filepath.Join(tmp, "00000000000000000000000000000000-trivial.drv")
	if err := os.WriteFile(misnamed, data, 0o644); err != nil {
		t.Fatal(err)
	}
	// An input-addressed derivation whose inputs cannot be found.
	lonely := filepath.Join(tmp, "chain1.drv")
	chain1, err := os.ReadFile(drvFile(t, "chain1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lonely, chain1, 0o644); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(tmp, "garbage.drv")
	if err := os.WriteFile(garbage, []byte("Derive([]"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		args  []string
		code  int
		error string
	}{
		{"altered output", []string{"derivation", "show", badFile}, 1, `bad.drv: derivation "trivial": output "out" has path`},
		{"misnamed", []string{"derivation", "show", misnamed}, 1, "named 00000000000000000000000000000000-trivial.drv but its contents are the derivation /store/jpx999psj3wr619yjh0v0msq53xk0z17-trivial.drv"},
		{"missing input", []string{"derivation", "show", lonely}, 1, "loading input derivation /store/jpx999psj3wr619yjh0v0msq53xk0z17-trivial.drv: not among the files given nor next to them"},
		{"garbage", []string{"derivation", "show", garbage}, 1, `garbage.drv: derivation offset 9: expected "," after outputs, found end of input`},
		{"no such file", []string{"derivation", "show", filepath.Join(tmp, "nope.drv")}, 1, "nope.drv: no such file or directory"},
		{"bad store dir", []string{"--store-dir", "store", "derivation", "show", trivial}, 1, `--store-dir: store dir "store" must be an absolute`},
		{"no file", []string{"derivation", "show"}, 2, `expected "<file> ..."`},
	} {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), c.args, stdio{nil, &stdout, &stderr})
			if code != c.code || !strings.Contains(stderr.String(), c.error) || stdout.Len() != 0 {
				t.Errorf("exit %d (want %d), stdout %q, stderr %q, want it to contain %q", code, c.code, stdout.String(), stderr.String(), c.error)
			}
		})
	}
	// Without the check, the altered file and the lonely one are shown.
	var out bytes.Buffer
	if err := runDerivationShow(context.Background(), "/store", []string{badFile, lonely}, false, &out); err != nil {
		t.Errorf("--no-check: %v", err)
	}
	if !bytes.Contains(out.Bytes(), []byte(`"/store/m5hkciry3ggs7g45ilcrz2zjzc5140p8-chain1.drv": {`)) {
		t.Errorf("--no-check output lacks chain1:\n%s", out.Bytes())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := runDerivationShow(ctx, "/store", []string{trivial}, true, &out); err != context.Canceled {
		t.Errorf("cancelled: %v", err)
	}
}
