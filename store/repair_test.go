package store

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
