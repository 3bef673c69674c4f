package store

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"storefs/store/nixhash"
	"storefs/store/storepath"
)

func TestScanHashParts(t *testing.T) {
	h := "0123456789abcdfghijklmnpqrsvwxyz"
	prefixes := [][]byte{[]byte("/store/"), []byte("/var/lib/storefs/store/")}
	for _, c := range []struct {
		data string
		want []string
	}{
		{"/store/" + h + "-x", []string{h}},
		{"/store/" + h + "-x/bin/sh (deleted)", []string{h}},
		{"PATH=/store/" + h + "-bb/bin:/usr/bin\x00HOME=/", []string{h}},
		{"7f00-7f01 r-xp 0 08:01 12 /var/lib/storefs/store/" + h + "-lib/libc.so\n", []string{h}},
		{"/store/" + h, nil},                              // no dash: not a path
		{"/store/" + h[:31] + "-x", nil},                  // short
		{"/store/" + strings.Repeat("e", 32) + "-x", nil}, // e is not nix32
		{"/store/" + strings.ToUpper(h) + "-x", nil},
		{"/stores/" + h + "-x", nil},
		{"/store//store/" + h + "-x", []string{h}},
		{"", nil},
		{"/store/", nil},
	} {
		found := map[string]bool{}
		scanHashParts([]byte(c.data), prefixes, found)
		var got []string
		for k := range found {
			got = append(got, k)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%q: found %v, want %v", c.data, got, c.want)
		}
	}
}

// Paths that live processes use survive a collection: an open file, an
// executable, a current directory and an environment variable; the same
// paths go once the processes are gone.
func TestGCKeepsWhatProcessesUse(t *testing.T) {
	s := testStore(t)
	ctx := context.Background()
	// Contents of their own: a process of another test using the same
	// /store path would keep it alive here too.
	uniq := fmt.Sprint(os.Getpid(), time.Now().UnixNano())
	bb := filepath.Join(t.TempDir(), "bb")
	must(t, os.MkdirAll(filepath.Join(bb, "bin"), 0o755))
	data, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("busybox-static is needed (make deps installs it): %v", err)
	}
	must(t, os.WriteFile(filepath.Join(bb, "bin/busybox"), data, 0o755))
	must(t, os.WriteFile(filepath.Join(bb, "tag"), []byte(uniq), 0o644))
	exe, err := s.AddPath(ctx, bb, true, nixhash.SHA256)
	must(t, err)
	open, err := s.AddText(ctx, "open", []byte("open "+uniq), nil)
	must(t, err)
	cwd, err := s.AddPath(ctx, tree(t, "cwd", uniq), true, nixhash.SHA256)
	must(t, err)
	env, err := s.AddText(ctx, "env", []byte("env "+uniq), nil)
	must(t, err)
	dead, err := s.AddText(ctx, "dead", []byte("dead "+uniq), nil)
	must(t, err)

	f, err := os.Open(s.RealPath(open.Path))
	must(t, err)
	sleeper := filepath.Join(s.RealPath(exe.Path), "bin/busybox")
	cmd := exec.Command(sleeper, "sleep", "60")
	cmd.ExtraFiles = []*os.File{f}
	cmd.Dir = s.RealPath(cwd.Path)
	cmd.Env = []string{"X=" + s.Print(env.Path) + "/whatever"}
	must(t, cmd.Start())
	f.Close()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	res, err := s.GC(ctx, GCOptions{})
	must(t, err)
	if !slices.Equal(res.Deleted, []storepath.Path{dead.Path}) {
		t.Errorf("GC with a live process deleted %v, want only %s", res.Deleted, dead.Path)
	}
	err = s.DeleteSpecific(ctx, []storepath.Path{open.Path})
	if err == nil || !strings.Contains(err.Error(), "in use by a live process") {
		t.Errorf("DeleteSpecific of an open path: %v", err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	res, err = s.GC(ctx, GCOptions{})
	must(t, err)
	if len(res.Deleted) != 4 {
		t.Errorf("GC once the process is gone deleted %v, want the 4 paths it used", res.Deleted)
	}
}
