package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"storefs/goals"
	"storefs/store"
	"storefs/store/derivation"
	"storefs/store/storepath"
)

// Every command refuses a bad argument with one line that names it.
func TestErrorsNameTheArgument(t *testing.T) {
	noConfig(t)
	dir := t.TempDir()
	globals := []string{"--store-dir", "/store", "--state-dir", filepath.Join(dir, "state")}
	missing := filepath.Join(dir, "nonexistent")
	notNAR := filepath.Join(dir, "hostname")
	os.WriteFile(notNAR, []byte("vm\n"), 0o644)
	invalid := "/store/00000000000000000000000000000000-foo"
	for _, c := range []struct {
		args []string
		want string // the whole line after "storefs: ", up to here
	}{
		{[]string{"add", missing}, "adding " + missing + ": lstat " + missing + ": no such file or directory"},
		{[]string{"add-fixed", "sha256", missing}, "adding " + missing + ": open " + missing + ": no such file or directory"},
		{[]string{"add-fixed", "--recursive", "sha256", missing}, "adding " + missing + ": lstat " + missing + ": no such file or directory"},
		{[]string{"nar", "ls", notNAR}, notNAR + ": nar offset 3 (root): "},
		{[]string{"nar", "dump", missing}, "lstat " + missing + ": no such file or directory"},
		{[]string{"hash", "path", missing}, "lstat " + missing + ": no such file or directory"},
		{[]string{"derivation", "show", missing}, "open " + missing + ": no such file or directory"},
		{[]string{"derivation", "show", notNAR}, notNAR + ": derivation offset 0: "},
		{[]string{"derivation", "add", notNAR}, notNAR + ": derivation offset 0: "},
		{[]string{"realise", missing}, "open " + missing + ": no such file or directory"},
		{[]string{"realise", notNAR}, notNAR + ": derivation offset 0: "},
		{[]string{"realise", "/store/nothere"}, `argument "/store/nothere": store path "nothere"`},
		{[]string{"realise", invalid}, invalid + ": not valid"},
		{[]string{"realise", invalid + ".drv"}, "cannot build " + invalid + ".drv: "},
		{[]string{"query", "--references", invalid}, invalid + ": not a valid path"},
		{[]string{"query", "--hash", notNAR}, `argument "` + notNAR + `": path "` + notNAR + `" is not in the store /store`},
		{[]string{"path-info", invalid}, invalid + ": not a valid path"},
		{[]string{"export", invalid}, invalid + ": not a valid path"},
		{[]string{"delete", invalid}, "cannot delete " + invalid + ": not a valid path"},
		{[]string{"add-root", invalid}, invalid + ": not a valid path"},
		{[]string{"log", invalid}, "no derivation is known to produce " + invalid},
		{[]string{"log", invalid + ".drv"}, "no build log of " + invalid + ".drv"},
		{[]string{"copy", "--to", "file:///tmp/c", invalid}, invalid + ": not a valid path"},
		{[]string{"copy", "--to", "s3://bucket", invalid}, `--to "s3://bucket": `},
		{[]string{"copy", "--from", "bogus://x", invalid}, `binary cache "bogus://x": `},
		{[]string{"key", "public", "--secret-key-file", notNAR}, notNAR + ": "},
		{[]string{"key", "generate", "bad:name"}, `key name "bad:name": `},
		{[]string{"--store-dir", "relative", "realise", "x"}, `--store-dir: store dir "relative"`},
	} {
		args := append(append([]string{}, globals...), c.args...)
		code, _, errOut := runArgs(t, "", args...)
		if code != exitFailure || !strings.HasPrefix(errOut, "storefs: "+c.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("storefs %s: exit %d, stderr %q; want one line starting %q",
				strings.Join(c.args, " "), code, errOut, "storefs: "+c.want)
		}
	}
}

// failingBuilder fails every build with fail's error, by default one that
// names nothing.
type failingBuilder struct {
	fail func(drv storepath.Path) error
}

func (b failingBuilder) Build(_ context.Context, drv storepath.Path, _ *derivation.Derivation, _ goals.BuildOptions) error {
	if b.fail != nil {
		return b.fail(drv)
	}
	return errors.New("no space left on device")
}

// addTestDerivation adds a derivation named name with no inputs.
func addTestDerivation(t *testing.T, s *store.Store, name string) storepath.Path {
	t.Helper()
	info, err := s.AddDerivation(context.Background(), &derivation.Derivation{
		Outputs: map[string]derivation.Output{"out": {}},
		System:  "x86_64-linux", Builder: "/bin/sh", Args: []string{"-c", "echo > $out"},
		Env: map[string]string{"name": name, "builder": "/bin/sh", "system": "x86_64-linux", "out": ""},
	})
	if err != nil {
		t.Fatal(err)
	}
	return info.Path
}

// A realise error that does not name the derivation gets it in front;
// one that names it already is left alone.
func TestRealiseErrorsNameTheDerivation(t *testing.T) {
	s, err := store.Open("/store", t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	drvPath := addTestDerivation(t, s, "t")
	drv := s.Print(drvPath)
	w := goals.New(s, failingBuilder{}, nil, goals.Options{MaxJobs: 1})
	defer w.Wait()
	var out, errb bytes.Buffer
	unknown := "/store/00000000000000000000000000000000-foo"
	p, _ := s.Dir.Parse(unknown)
	for _, c := range []struct {
		target realiseTarget
		want   string
	}{
		{realiseTarget{arg: drv, drv: drvPath}, "realising " + drv + ": no space left on device"},
		{realiseTarget{arg: unknown, path: p}, unknown + ": " + goals.ErrUnknownPath.Error()},
	} {
		err := runRealise(ctx, w, stdio{nil, &out, &errb}, []realiseTarget{c.target}, false, false)
		if err == nil || err.Error() != c.want {
			t.Errorf("realise %s: %v, want %q", c.target.arg, err, c.want)
		}
	}
}

// A failed build's error goes on with its log's last lines, each starting
// with "> "; several failures come after a line saying how many (as the
// help says). The CLI prints it after "storefs: ".
func TestRealiseFailureLayout(t *testing.T) {
	s, err := store.Open("/store", t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a, b := addTestDerivation(t, s, "a"), addTestDerivation(t, s, "b")
	w := goals.New(s, failingBuilder{func(drv storepath.Path) error {
		return &goals.BuildError{Drv: s.Print(drv), Status: goals.StatusBuildFailed,
			Message: "builder failed with exit code 3", LogTail: []string{"line 1", "oops"}}
	}}, nil, goals.Options{MaxJobs: 1, FailureTTL: time.Minute})
	defer w.Wait()
	var out, errb bytes.Buffer
	targets := []realiseTarget{{arg: s.Print(a), drv: a}, {arg: s.Print(b), drv: b}}
	err = runRealise(context.Background(), w, stdio{nil, &out, &errb}, targets, true, false)
	one := func(drv storepath.Path) string {
		return "build of " + s.Print(drv) + " failed: builder failed with exit code 3; last 2 log lines:\n> line 1\n> oops"
	}
	if want := "2 failures:\n" + one(a) + "\n" + one(b); err == nil || err.Error() != want {
		t.Errorf("realise --keep-going of two failing builds:\n%v\nwant\n%s", err, want)
	}
	var ec interface{ ExitCode() int }
	if !errors.As(err, &ec) || ec.ExitCode() != 100 {
		t.Errorf("exit code of %v: want 100", err)
	}
	err = runRealise(context.Background(), w, stdio{nil, &out, &errb}, targets[:1], false, false)
	if err == nil || err.Error() != "build of "+s.Print(a)+" failed earlier (remembered; storefs realise --retry-failed forgets): builder failed with exit code 3; last 2 log lines:\n> line 1\n> oops" {
		t.Errorf("one remembered failure: %v", err)
	}
}
