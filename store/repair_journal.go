package store

// Snapshots of a tree's metadata, and the journal that keeps one on disk
// while Repair changes the tree (repair.go).

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"storefs/store/storepath"
)

// treeSnapshot is the metadata of every entry of a tree, in walk order
// (a directory before its entries), so that it can be put back.
type treeSnapshot struct{ entries []snapEntry }

type snapEntry struct {
	path     string
	mode     uint32
	uid, gid uint32
	atime    unix.Timespec
	mtime    unix.Timespec
}

// A repair journal, repair/<base>.json, holds the snapshot of a path taken
// before Repair changed anything of it, as JSON: {"entries": [{"path":
// <relative to the path, "" for itself>, "mode", "uid", "gid", "atime",
// "mtime" (nanoseconds)}...]}. It is written (and synced) before the first
// change and removed once the path is repaired or put back (and synced);
// one left by a killed Repair is put back by the next.
const repairDir = "repair"

type journalEntry struct {
	Path  string `json:"path"`
	Mode  uint32 `json:"mode"`
	UID   uint32 `json:"uid"`
	GID   uint32 `json:"gid"`
	Atime int64  `json:"atime"`
	Mtime int64  `json:"mtime"`
}

func (s *Store) writeRepairJournal(p storepath.Path, snap *treeSnapshot) (string, error) {
	dir := filepath.Join(s.State, repairDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	real := s.RealPath(p)
	var j struct {
		Entries []journalEntry `json:"entries"`
	}
	for _, e := range snap.entries {
		rel, err := filepath.Rel(real, e.path)
		if err != nil {
			return "", err
		}
		if rel == "." {
			rel = ""
		}
		j.Entries = append(j.Entries, journalEntry{rel, e.mode, e.uid, e.gid, e.atime.Nano(), e.mtime.Nano()})
	}
	data, err := json.Marshal(j)
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, ".tmp-")
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	name := filepath.Join(dir, p.Base()+".json")
	if err == nil {
		err = os.Rename(f.Name(), name)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("repair journal: %w", err)
	}
	return name, nil
}

func removeJournal(name string) error {
	if err := os.Remove(name); err != nil && !os.IsNotExist(err) {
		return err
	}
	return syncDir(filepath.Dir(name))
}

// replayRepairJournals puts back the paths a killed Repair left half done.
func (s *Store) replayRepairJournals() error {
	dir := filepath.Join(s.State, repairDir)
	names, err := readDirNames(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, name := range names {
		file := filepath.Join(dir, name)
		base, ok := strings.CutSuffix(name, ".json")
		p, perr := storepath.ParseBase(base)
		if !ok || perr != nil {
			os.Remove(file) // a journal cut short before its rename
			continue
		}
		l, err := s.TryLock(p)
		if err != nil || l == nil {
			continue
		}
		err = s.replayJournal(p, file)
		l.Unlock()
		if err != nil {
			return fmt.Errorf("repair journal %s: %w", file, err)
		}
	}
	return nil
}

func (s *Store) replayJournal(p storepath.Path, file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var j struct {
		Entries []journalEntry `json:"entries"`
	}
	if err := json.Unmarshal(data, &j); err != nil {
		return removeJournal(file) // written whole or not at all: not ours
	}
	real := s.RealPath(p)
	snap := &treeSnapshot{}
	for _, e := range j.Entries {
		if strings.Contains("/"+e.Path+"/", "/../") {
			return fmt.Errorf("entry %q leaves the path", e.Path)
		}
		snap.entries = append(snap.entries, snapEntry{
			path: filepath.Join(real, e.Path), mode: e.Mode, uid: e.UID, gid: e.GID,
			atime: unix.NsecToTimespec(e.Atime), mtime: unix.NsecToTimespec(e.Mtime),
		})
	}
	if _, err := os.Lstat(real); err == nil {
		if err := snap.restore(); err != nil {
			return err
		}
		if err := syncFS(s.BackingDir()); err != nil {
			return err
		}
	}
	return removeJournal(file)
}

func snapshotTree(root string) (*treeSnapshot, error) {
	snap := &treeSnapshot{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		snap.entries = append(snap.entries, snapEntry{path: p, mode: st.Mode, uid: st.Uid, gid: st.Gid, atime: st.Atim, mtime: st.Mtim})
		return nil
	})
	return snap, err
}

// restore puts back every entry's owner, mode and times, entries before
// their directory (whose mtime the others do not change, but whose mode
// may forbid reaching them).
func (t *treeSnapshot) restore() error {
	var errs []error
	for i := len(t.entries) - 1; i >= 0; i-- {
		e := t.entries[i]
		if _, err := os.Lstat(e.path); os.IsNotExist(err) {
			continue // nothing to put back
		}
		if err := unix.Fchownat(unix.AT_FDCWD, e.path, int(e.uid), int(e.gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", e.path, err))
		}
		if e.mode&unix.S_IFMT != unix.S_IFLNK {
			if err := unix.Fchmodat(unix.AT_FDCWD, e.path, e.mode&0o7777, 0); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", e.path, err))
			}
		}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, e.path, []unix.Timespec{e.atime, e.mtime}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", e.path, err))
		}
	}
	return errors.Join(errs...)
}
