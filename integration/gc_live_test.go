package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestGCKeepsPathsInUse: storefs gc keeps a path a live process executes
// from and one it holds a file of open, and deletes both once the
// process is gone.
func TestGCKeepsPathsInUse(t *testing.T) {
	s := newSfsStore(t)
	// A tree of its own: processes of other tests run the usual busybox
	// tree's /store path, which is a runtime root for every store whose
	// store dir is /store.
	tree := busyboxTree(t)
	writeFile(t, tree, "tag", randomTag(t))
	bb := strings.TrimSpace(string(s.run(t, nil, "add", tree)))
	file := strings.TrimSpace(string(s.run(t, nil, "add", writeFile(t, t.TempDir(), "held", "held"))))
	real := func(p string) string { return filepath.Join(s.state, "store", strings.TrimPrefix(p, storeDir+"/")) }
	f, err := os.Open(real(file))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(real(bb), "bin/busybox"), "sleep", "60")
	cmd.ExtraFiles = []*os.File{f}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	s.run(t, nil, "gc")
	if got := strings.Join(s.valid(t), " "); !strings.Contains(got, bb) || !strings.Contains(got, file) {
		t.Errorf("storefs gc deleted a path in use: valid now %s", got)
	}
	if err := syscall.Kill(cmd.Process.Pid, 0); err != nil {
		t.Errorf("the process did not survive: %v", err)
	}
	s.verify(t)
	cmd.Process.Kill()
	cmd.Wait()
	s.run(t, nil, "gc")
	if got := s.valid(t); len(got) != 0 {
		t.Errorf("storefs gc once the process is gone left %v", got)
	}
	s.verify(t)
}
