package sandbox

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// setupFails runs the build and checks it fails to set up with an error
// containing want (and errors.Is errno, when not 0).
func setupFails(t *testing.T, b *build, want string, errno unix.Errno) {
	t.Helper()
	res, err := Run(context.Background(), b.Spec)
	if err == nil {
		t.Fatalf("Run succeeded (%+v), want an error containing %q\n%s", res, want, b.log)
	}
	if !errors.Is(err, ErrSetup) {
		t.Errorf("error %q is not a setup error", err)
	}
	var se *SetupError
	if !errors.As(err, &se) {
		t.Errorf("error %q is not a *SetupError", err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
	if errno != 0 && !errors.Is(err, errno) {
		t.Errorf("error %q is not %v", err, errno)
	}
	b.noneLeft(t)
	ents, _ := os.ReadDir(b.dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "sandbox-") {
			t.Errorf("the scratch dir %s was left behind", e.Name())
		}
	}
}

func TestMissingBuilder(t *testing.T) {
	b := newBuild(t, "")
	b.Builder = bbBin + "/nope"
	setupFails(t, b, "sandbox: executing builder "+bbBin+"/nope: no such file or directory", unix.ENOENT)
}

func TestBuilderNotExecutable(t *testing.T) {
	b := newBuild(t, "")
	writeHost(t, filepath.Join(b.Inputs[0].Host, "builder.sh"), "echo hi")
	b.Builder = storeDir + "/" + bbBase + "/builder.sh"
	setupFails(t, b, "sandbox: executing builder "+b.Builder+": permission denied", unix.EACCES)
}

func TestMissingInput(t *testing.T) {
	b := newBuild(t, "mkdir $out")
	missing := filepath.Join(b.dir, "inputs/missing")
	b.Inputs = append(b.Inputs, Mount{Host: missing, Path: storeDir + "/ssssssssssssssssssssssssssssssss-missing"})
	setupFails(t, b, "sandbox: input /store/ssssssssssssssssssssssssssssssss-missing: lstat "+missing+": no such file or directory", unix.ENOENT)
	if !errors.Is(errorOf(t, b), fs.ErrNotExist) {
		t.Error("not errors.Is fs.ErrNotExist")
	}
}

// The init stage reaches host paths as an unmapped root: a directory it
// does not own and may not enter is refused, and the error says which
// mount failed.
func TestUnreachableInput(t *testing.T) {
	b := newBuild(t, "mkdir $out")
	private := filepath.Join(b.dir, "private")
	in := filepath.Join(private, "in")
	if err := os.MkdirAll(in, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(private, 12345, 12345); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(private, 0o700); err != nil {
		t.Fatal(err)
	}
	p := storeDir + "/pppppppppppppppppppppppppppppppp-in"
	b.Inputs = append(b.Inputs, Mount{Host: in, Path: p})
	setupFails(t, b, "sandbox: bind-mounting input "+in+" at "+p+": permission denied", unix.EACCES)
}

func errorOf(t *testing.T, b *build) error {
	t.Helper()
	_, err := Run(context.Background(), b.Spec)
	return err
}

// Specs the sandbox cannot run are refused before anything starts, each
// with an error naming what is wrong.
func TestBadSpecs(t *testing.T) {
	in := storeDir + "/" + bbBase
	cases := []struct {
		name   string
		change func(b *build)
		want   string
	}{
		{"relative builder", func(b *build) { b.Builder = "bin/sh" }, `builder "bin/sh": not an absolute, clean path`},
		{"unclean builder", func(b *build) { b.Builder = "/store//x" }, `builder "/store//x": not an absolute, clean path`},
		{"NUL in argument", func(b *build) { b.Args = []string{"-c", "a\x00b"} }, `argument 2 "a\x00b": contains a NUL byte`},
		{"env without =", func(b *build) { b.Env = []string{"PATH"} }, `environment entry "PATH": not NAME=value`},
		{"env without name", func(b *build) { b.Env = []string{"=x"} }, `environment entry "=x": not NAME=value`},
		{"store dir /", func(b *build) { b.StoreDir = "/" }, `store dir "/": must not be the root`},
		{"store dir relative", func(b *build) { b.StoreDir = "store" }, `store dir "store": not an absolute, clean path`},
		{"store dir in /dev", func(b *build) { b.StoreDir = "/dev/store" }, `store dir "/dev/store": clashes with the sandbox's own /dev`},
		{"store dir /build", func(b *build) { b.StoreDir = "/build" }, `store dir "/build": clashes with the sandbox's own /build`},
		{"root uid", func(b *build) { b.HostUID = 0 }, "host uid 0, gid "},
		{"root gid", func(b *build) { b.HostGID = 0 }, ", gid 0: the builder must run as an unprivileged host user"},
		{"negative timeout", func(b *build) { b.Timeout = -time.Second }, "timeout -1s, max silent time 0s: must not be negative"},
		{"no build dir", func(b *build) { b.BuildDir = b.dir + "/nope" }, "build dir: stat " + "DIR/nope: no such file or directory"},
		{"build dir a file", func(b *build) { b.BuildDir = b.Inputs[0].Host + "/bin/busybox" }, "build dir DIR/inputs/" + bbBase + "/bin/busybox: not a directory"},
		{"relative scratch dir", func(b *build) { b.ScratchDir = "scratch" }, `scratch dir "scratch": not an absolute, clean path`},
		{"input outside store", func(b *build) { b.Inputs[0].Path = "/nix/store/" + bbBase }, "input /nix/store/" + bbBase + ": not directly under the store dir /store"},
		{"input deeper", func(b *build) { b.Inputs[0].Path = in + "/bin" }, "input " + in + "/bin: not directly under the store dir /store"},
		{"input relative host", func(b *build) { b.Inputs[0].Host = "inputs" }, `input host path "inputs": not an absolute, clean path`},
		{"input twice", func(b *build) { b.Inputs = append(b.Inputs, b.Inputs[0]) }, "input " + in + ": already given as input"},
		{"output is an input", func(b *build) { b.Outputs[0].Path = in }, "output " + in + ": already given as input"},
		{"output host exists", func(b *build) { b.Outputs[0].Host = b.BuildDir }, "output " + outPath + ": host path DIR/build already exists"},
		{"output host dir missing", func(b *build) { b.Outputs[0].Host = b.dir + "/a/b" }, "output " + outPath + ": stat DIR/a: no such file or directory"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newBuild(t, "mkdir $out")
			c.change(b)
			want := strings.ReplaceAll(c.want, "DIR", b.dir)
			_, err := Run(context.Background(), b.Spec)
			if err == nil {
				t.Fatalf("Run succeeded, want an error containing %q", want)
			}
			if !strings.HasPrefix(err.Error(), "sandbox: checking the build spec: ") || !strings.Contains(err.Error(), want) {
				t.Errorf("error %q, want one containing %q", err, want)
			}
			if !errors.Is(err, ErrSetup) {
				t.Errorf("error %q is not a setup error", err)
			}
		})
	}
}

// A scratch dir that exists is refused: Run would otherwise remove it.
func TestScratchDirExists(t *testing.T) {
	b := newBuild(t, "mkdir $out")
	b.ScratchDir = b.BuildDir
	setupFails(t, b, "sandbox: making the scratch dir "+b.BuildDir+": mkdir "+b.BuildDir+": file exists", unix.EEXIST)
	if _, err := os.Stat(b.BuildDir); err != nil {
		t.Errorf("the build dir is gone: %v", err)
	}
}

// A given scratch dir is used and removed.
func TestScratchDirGiven(t *testing.T) {
	b := newBuild(t, "mkdir $out; echo t > /tmp/t; cat /tmp/t > $out/t")
	b.ScratchDir = filepath.Join(b.dir, "scratch")
	b.mustSucceed(t)
	if got := b.output(t, "t"); got != "t" {
		t.Errorf("/tmp: %q", got)
	}
	if _, err := os.Lstat(b.ScratchDir); !os.IsNotExist(err) {
		t.Errorf("the scratch dir is still there: %v", err)
	}
}

// Outputs are renamed out of the scratch dir, so they must be on its
// filesystem; another is refused before the build.
func TestOutputOnAnotherFilesystem(t *testing.T) {
	b := newBuild(t, "mkdir $out")
	shm, err := os.MkdirTemp("/dev/shm", "sandbox-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shm) })
	b.Outputs[0].Host = filepath.Join(shm, "out")
	setupFails(t, b, "sandbox: output "+outPath+": host directory "+shm+" is not on the filesystem of the scratch dir "+b.dir+"/sandbox-", 0)
}
