package realise

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"storefs/goals"
	"storefs/store/derivation"
	"storefs/store/nixhash"
)

// freshOutputs copies each fixed output into new inodes, removes the
// original, and refuses what no NAR holds as the builder's fault.
func TestFreshOutputs(t *testing.T) {
	fixed := derivation.Output{Hash: nixhash.Sum(nixhash.SHA256, []byte("x")), Recursive: true}
	d := &derivation.Derivation{Outputs: map[string]derivation.Output{"out": fixed, "dev": fixed, "missing": fixed}}
	dir := t.TempDir()
	scratch, fresh := filepath.Join(dir, "scratch"), filepath.Join(dir, "fresh")
	for _, p := range []string{scratch, fresh, filepath.Join(scratch, "out-tree/sub")} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(scratch, "out-tree/sub/f"), []byte("contents"), 0o644)
	os.WriteFile(filepath.Join(scratch, "out-tree/exe"), []byte("#!"), 0o755)
	os.Symlink("sub/f", filepath.Join(scratch, "out-tree/link"))
	os.WriteFile(filepath.Join(scratch, "dev-file"), []byte("dev"), 0o644)
	outputs := map[string]string{
		"out": filepath.Join(scratch, "out-tree"), "dev": filepath.Join(scratch, "dev-file"),
		"missing": filepath.Join(scratch, "missing"),
	}
	inode := func(p string) uint64 {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}
	before := map[string]uint64{"out": inode(outputs["out"] + "/sub/f"), "dev": inode(outputs["dev"])}
	held, err := os.OpenFile(outputs["dev"], os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	name := func(id string) string { return "/store/x-" + id }
	if err := freshOutputs("/store/x.drv", d, outputs, fresh, name); err != nil {
		t.Fatal(err)
	}
	for id, orig := range map[string]string{"out": filepath.Join(scratch, "out-tree"), "dev": filepath.Join(scratch, "dev-file")} {
		if _, err := os.Lstat(orig); !os.IsNotExist(err) {
			t.Errorf("%s: the original %s is still there (%v)", id, orig, err)
		}
		if filepath.Dir(outputs[id]) != fresh {
			t.Errorf("%s is now at %s, want under %s", id, outputs[id], fresh)
		}
	}
	if got := inode(outputs["out"] + "/sub/f"); got == before["out"] {
		t.Error("out/sub/f kept its inode")
	}
	if got := inode(outputs["dev"]); got == before["dev"] {
		t.Error("dev kept its inode")
	}
	held.WriteAt([]byte("EVIL"), 0)
	for p, want := range map[string]string{outputs["dev"]: "dev", outputs["out"] + "/sub/f": "contents", outputs["out"] + "/exe": "#!"} {
		if data, err := os.ReadFile(p); err != nil || string(data) != want {
			t.Errorf("%s: %q %v, want %q", p, data, err, want)
		}
	}
	if st, err := os.Stat(outputs["out"] + "/exe"); err != nil || st.Mode()&0o100 == 0 {
		t.Errorf("exe lost its executable bit: %v %v", st, err)
	}
	if l, err := os.Readlink(outputs["out"] + "/link"); err != nil || l != "sub/f" {
		t.Errorf("link: %q %v", l, err)
	}
	if _, ok := outputs["missing"]; !ok || strings.HasPrefix(outputs["missing"], fresh) {
		t.Errorf("a missing output moved: %q", outputs["missing"])
	}

	// A fifo: no NAR holds it, so the output is refused, naming it as the
	// builder saw it.
	bad := filepath.Join(scratch, "bad")
	os.Mkdir(bad, 0o755)
	if err := unix.Mkfifo(filepath.Join(bad, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	d2 := &derivation.Derivation{Outputs: map[string]derivation.Output{"out": fixed}}
	err = freshOutputs("/store/x.drv", d2, map[string]string{"out": bad}, fresh, name)
	var be *goals.BuildError
	if !errors.As(err, &be) || be.Status != goals.StatusOutputRejected || !strings.Contains(err.Error(), "/store/x-out/fifo") {
		t.Errorf("a fifo in a fixed output: %v, want an output-rejected BuildError naming /store/x-out/fifo", err)
	}
	if _, err := os.Lstat(filepath.Join(fresh, "bad")); !os.IsNotExist(err) {
		t.Errorf("a refused copy was left behind: %v", err)
	}
}

// How long the copy takes for a large fixed output (printed, not checked).
func TestFreshOutputCost(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "big")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	for range 100 {
		f.Write(buf)
	}
	f.Close()
	start := time.Now()
	if dumpErr, err := copyThroughNAR(src, filepath.Join(dir, "copy")); dumpErr != nil || err != nil {
		t.Fatal(dumpErr, err)
	}
	t.Logf("copying a 100 MiB fixed output through its NAR took %v", time.Since(start))
}

// A copy that cannot be written (no room, here no directory) is the
// machine's failure, not the builder's.
func TestFreshOutputsWriteFailure(t *testing.T) {
	fixed := derivation.Output{Hash: nixhash.Sum(nixhash.SHA256, []byte("x")), Recursive: true}
	d := &derivation.Derivation{Outputs: map[string]derivation.Output{"out": fixed}}
	dir := t.TempDir()
	src := filepath.Join(dir, "out")
	big := make([]byte, 4<<20)
	if err := os.WriteFile(src, big, 0o644); err != nil {
		t.Fatal(err)
	}
	err := freshOutputs("/store/x.drv", d, map[string]string{"out": src}, filepath.Join(dir, "missing"), func(string) string { return "/store/x" })
	var be *goals.BuildError
	if err == nil || errors.As(err, &be) || !strings.Contains(err.Error(), "copying fixed output /store/x") {
		t.Errorf("a copy that cannot be written: %v, want a plain error naming the output", err)
	}
}
