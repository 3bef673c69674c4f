package store

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"storefs/store/nixhash"
)

// Repair puts drifted modes, owners and times back in canonical form
// without changing what the NAR records, and leaves contents that differ
// from their record exactly as it found them, for a single-file path (plain
// and executable), a directory and a symlink.
func TestRepairDrift(t *testing.T) {
	ctx := context.Background()
	kinds := []struct {
		name string
		make func(t *testing.T, dir string) string // returns what to add
	}{
		{"file", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "file.txt")
			must(t, os.WriteFile(p, []byte("hello\n"), 0o644))
			return p
		}},
		{"exe", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "run")
			must(t, os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755))
			return p
		}},
		{"dir", func(t *testing.T, dir string) string { return tree(t, "tree", "content\n") }},
		{"symlink", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "link")
			must(t, os.Symlink("somewhere/else", p))
			return p
		}},
	}
	// A drift changes the contents of real (the path's backing entry);
	// repaired says whether Repair can make them match the record again.
	drifts := []struct {
		name     string
		drift    func(t *testing.T, real string)
		repaired bool
	}{
		{"mtime", func(t *testing.T, real string) {
			ts := []unix.Timespec{{Sec: 1234567}, {Sec: 1234567}}
			must(t, unix.UtimesNanoAt(unix.AT_FDCWD, real, ts, unix.AT_SYMLINK_NOFOLLOW))
			if st, err := os.Lstat(real); err == nil && st.IsDir() {
				must(t, unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(real, "file"), ts, 0))
			}
		}, true},
		{"mode", func(t *testing.T, real string) {
			st, err := os.Lstat(real)
			must(t, err)
			switch {
			case st.Mode()&os.ModeSymlink != 0: // a symlink has no mode of its own: its owner drifts
				must(t, os.Lchown(real, 1000, 1000))
			case st.IsDir():
				must(t, os.Chmod(real, 0o700))
				must(t, os.Chmod(filepath.Join(real, "file"), 0o600))
				must(t, os.Chmod(filepath.Join(real, "sub", "exe"), 0o744))
			case st.Mode()&0o100 != 0:
				must(t, os.Chmod(real, 0o644)) // the executable bit is lost
			default:
				must(t, os.Chmod(real, 0o664))
			}
		}, true},
		{"content", func(t *testing.T, real string) {
			st, err := os.Lstat(real)
			must(t, err)
			switch {
			case st.Mode()&os.ModeSymlink != 0:
				must(t, os.Remove(real))
				must(t, os.Symlink("elsewhere", real))
			case st.IsDir():
				must(t, os.Chmod(real, 0o755))
				must(t, os.WriteFile(filepath.Join(real, "added"), []byte("x"), 0o644))
			default:
				must(t, os.Chmod(real, 0o644))
				must(t, os.WriteFile(real, []byte("changed\n"), 0o644))
			}
		}, false},
	}
	for _, k := range kinds {
		for _, d := range drifts {
			t.Run(k.name+"/"+d.name, func(t *testing.T) {
				s, err := Open("/store", t.TempDir(), Options{})
				must(t, err)
				info, err := s.AddPath(ctx, k.make(t, t.TempDir()), true, nixhash.SHA256)
				must(t, err)
				real := s.RealPath(info.Path)
				d.drift(t, real)
				before, err := snapshotTree(real)
				must(t, err)
				must(t, s.Repair())
				probs, err := s.Check(CheckOptions{Contents: true})
				must(t, err)
				if d.repaired {
					for _, p := range probs {
						t.Errorf("after Repair: %s", p)
					}
					return
				}
				text := ""
				for _, p := range probs {
					text += p.String() + "\n"
				}
				t.Logf("left for the checker:\n%s", text)
				if !strings.Contains(text, "contents have NAR hash") {
					t.Errorf("Check after Repair does not report the changed contents:\n%s", text)
				}
				after, err := snapshotTree(real)
				must(t, err)
				if len(after.entries) != len(before.entries) {
					t.Fatalf("Repair changed the tree: %d entries, were %d", len(after.entries), len(before.entries))
				}
				for i, e := range before.entries {
					a := after.entries[i]
					a.atime, e.atime = unix.Timespec{}, unix.Timespec{} // reading changes it
					if a != e {
						t.Errorf("Repair left %s as %+v, found it as %+v", e.path, a, e)
					}
				}
				removeAllForce(real) // so that the cleanup's store is not broken
			})
		}
	}
}

// repairHelperEnv makes TestRepairHelper run Repair on the store whose
// state dir it names: the process TestRepairKilled kills.
const repairHelperEnv = "STOREFS_TEST_REPAIR_STATE"

func TestRepairHelper(t *testing.T) {
	state := os.Getenv(repairHelperEnv)
	if state == "" {
		t.Skip("run by TestRepairKilled")
	}
	s, err := Open("/store", state, Options{})
	must(t, err)
	must(t, s.Repair())
}

// Repair killed (SIGKILL) at random points never leaves a path worse than
// it found it: after the next Repair replays its journal, the path is as
// it was found or repaired, and a Repair run to its end repairs it.
func TestRepairKilled(t *testing.T) {
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "tree")
	for i := 0; i < 300; i++ {
		mode := os.FileMode(0o644)
		if i%100 == 0 {
			mode = 0o755
		}
		must(t, os.MkdirAll(filepath.Join(src, fmt.Sprint(i%10)), 0o755))
		must(t, os.WriteFile(filepath.Join(src, fmt.Sprint(i%10), fmt.Sprint(i)), []byte(fmt.Sprint(i)), mode))
	}
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	t.Logf("seed %d", seed)
	var found, repaired, other int
	var full time.Duration // how long an unkilled helper takes, measured by trial 0
	for trial := 0; trial < 16; trial++ {
		state := t.TempDir()
		s, err := Open("/store", state, Options{})
		must(t, err)
		info, err := s.AddPath(ctx, src, true, nixhash.SHA256)
		must(t, err)
		real := s.RealPath(info.Path)
		// Every mtime drifts; the executables lose their bit.
		ts := []unix.Timespec{{Sec: 99}, {Sec: 99}}
		must(t, filepath.WalkDir(real, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if st, _ := d.Info(); st != nil && st.Mode()&0o100 != 0 && !d.IsDir() {
				must(t, os.Chmod(p, 0o644))
			}
			return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
		}))
		drifted, err := snapshotTree(real)
		must(t, err)

		cmd := exec.Command(os.Args[0], "-test.run=^TestRepairHelper$")
		cmd.Env = append(os.Environ(), repairHelperEnv+"="+state)
		start := time.Now()
		must(t, cmd.Start())
		var delay time.Duration
		if trial == 0 {
			must(t, cmd.Wait())
			full = time.Since(start)
			t.Logf("an unkilled Repair process takes %v", full)
		} else {
			delay = time.Duration(rng.Int64N(int64(full) * 3 / 2))
			time.Sleep(delay)
			cmd.Process.Kill()
			cmd.Wait()
		}

		must(t, s.replayRepairJournals())
		now, err := snapshotTree(real)
		must(t, err)
		probs, err := s.Check(CheckOptions{Contents: true})
		must(t, err)
		switch {
		case sameMeta(drifted, now):
			found++
		case len(probs) == 0:
			repaired++
		default:
			other++
			t.Errorf("trial %d, killed after %v: neither as found nor repaired: %v", trial, delay, probs)
		}
		must(t, s.Repair())
		checkClean(t, s)
	}
	t.Logf("after a kill: %d as found, %d repaired, %d otherwise", found, repaired, other)
}

// sameMeta compares snapshots but for access times.
func sameMeta(a, b *treeSnapshot) bool {
	if len(a.entries) != len(b.entries) {
		return false
	}
	for i := range a.entries {
		x, y := a.entries[i], b.entries[i]
		x.atime, y.atime = unix.Timespec{}, unix.Timespec{}
		if x != y {
			return false
		}
	}
	return true
}
