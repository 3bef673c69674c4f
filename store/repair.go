package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"storefs/store/nar"
	"storefs/store/nixhash"
	"storefs/store/storepath"
)

// Repair fixes what can be fixed without losing or inventing a valid path:
// it removes backing entries that have no record, rebuilds the referrers
// and derivation output indexes from the records, and canonicalises
// contents whose modes, owners or times drifted.
//
// Repairing contents changes only what makes them match their record, and
// never leaves a path worse than it was: after canonicalising, the NAR
// hash and size of the contents are compared with the record. A file
// whose mode drifted may have lost or gained the executable bit the NAR
// records; when the hash differs, the other choice of that bit is tried
// for the files whose modes were not canonical (up to maxRepairGuesses of
// them). If nothing matches, every mode, owner and time is put back as it
// was found, and the path is left for Check to report (its contents
// differ from the record; only a substitute or a rebuild can mend it).
// Before it changes anything of a path it writes a journal of how it found
// it (repair/<base>.json); a Repair killed half way is undone by the next
// one, which then starts the path again.
func (s *Store) Repair() error {
	if err := s.replayRepairJournals(); err != nil {
		return err
	}
	names, err := readDirNames(s.BackingDir())
	if err != nil {
		return err
	}
	for _, name := range names {
		p, err := storepath.ParseBase(name)
		if err != nil {
			if err := removeAllForce(filepath.Join(s.BackingDir(), name)); err != nil {
				return err
			}
			continue
		}
		if ok, err := s.IsValid(p); err != nil || ok {
			if err != nil {
				return err
			}
			if checkCanonical(s.RealPath(p)) != nil {
				if err := s.repairContents(p); err != nil && !errors.Is(err, ErrUnrepairable) {
					return err
				}
			}
			continue
		}
		l, err := s.TryLock(p)
		if err != nil || l == nil {
			continue // being written now
		}
		ok, err := s.IsValid(p)
		if err == nil && !ok {
			err = removeAllForce(s.RealPath(p))
		}
		l.Unlock()
		if err != nil {
			return fmt.Errorf("repairing %s: %w", s.Print(p), err)
		}
	}
	return s.rebuildIndexes()
}

// ErrUnrepairable says a valid path's contents differ from its record in
// more than modes and times; Repair left them as they were.
var ErrUnrepairable = errors.New("contents differ from the record")

// maxRepairGuesses bounds the files whose executable bit Repair guesses
// (2^n NAR hashes of the path in the worst case).
const maxRepairGuesses = 8

// repairContents canonicalises p's contents if that makes them match p's
// record, and otherwise puts them back as they were (see Repair).
func (s *Store) repairContents(p storepath.Path) error {
	info, err := s.Info(p)
	if err != nil {
		return err
	}
	l, err := s.TryLock(p)
	if err != nil {
		return err
	}
	if l == nil {
		return nil // a collection or a writer holds it; try another time
	}
	defer l.Unlock()
	real := s.RealPath(p)
	before, err := snapshotTree(real)
	if err != nil {
		return fmt.Errorf("repairing %s: %w", s.Print(p), err)
	}
	// The journal lets the next Repair put everything back should this
	// one be killed half way.
	journal, err := s.writeRepairJournal(p, before)
	if err != nil {
		return fmt.Errorf("repairing %s: %w", s.Print(p), err)
	}
	done := func() error {
		if err := syncFS(s.BackingDir()); err != nil {
			return err
		}
		return removeJournal(journal)
	}
	fail := func(err error) error {
		if rerr := before.restore(); rerr != nil {
			return fmt.Errorf("repairing %s: %v; putting back its modes and times: %w", s.Print(p), err, rerr)
		}
		if jerr := done(); jerr != nil {
			return fmt.Errorf("repairing %s: %v; %w", s.Print(p), err, jerr)
		}
		return fmt.Errorf("repairing %s: %w", s.Print(p), err)
	}
	if err := Canonicalise(real); err != nil {
		return fail(err)
	}
	// Regular files whose mode was not canonical may have had their
	// executable bit changed.
	var suspects []string
	for _, e := range before.entries {
		if e.mode&unix.S_IFMT == unix.S_IFREG && e.mode&0o7777 != canonicalFile && e.mode&0o7777 != canonicalExec {
			suspects = append(suspects, e.path)
		}
	}
	if len(suspects) > maxRepairGuesses {
		suspects = suspects[:maxRepairGuesses]
	}
	var got nixhash.Hash
	var size uint64
	for guess := 0; guess < 1<<len(suspects); guess++ {
		if guess > 0 {
			// Flip the bits that differ between this guess and the last.
			for i, f := range suspects {
				if (guess^(guess-1))&(1<<i) != 0 {
					if err := flipExec(f); err != nil {
						return fail(err)
					}
				}
			}
		}
		if got, size, err = narHashOf(real); err != nil {
			return fail(err)
		}
		if got == info.NarHash && size == info.NarSize {
			return done()
		}
	}
	return fail(fmt.Errorf("%w: canonical contents have NAR hash %s and size %d, the record says %s and %d; left as found",
		ErrUnrepairable, got, size, info.NarHash, info.NarSize))
}

// flipExec turns a canonical regular file's executable bit the other way,
// keeping its canonical mtime.
func flipExec(p string) error {
	st, err := os.Lstat(p)
	if err != nil {
		return err
	}
	mode := os.FileMode(canonicalExec)
	if st.Mode().Perm() == canonicalExec {
		mode = canonicalFile
	}
	return os.Chmod(p, mode)
}

func narHashOf(p string) (nixhash.Hash, uint64, error) {
	h := nixhash.SHA256.New()
	cw := &countWriter{w: h}
	if err := nar.Dump(cw, p); err != nil {
		return nixhash.Hash{}, 0, err
	}
	return nixhash.FromHasher(nixhash.SHA256, h), cw.n, nil
}

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

// rebuildIndexes recomputes every index from the records in one transaction.
func (s *Store) rebuildIndexes() error {
	return s.update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketReferrers, bucketDrvOutputs, bucketOutputDrvs} {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketPaths).ForEach(func(k, v []byte) error {
			p, err := storepath.ParseBase(string(k))
			if err != nil {
				return nil // Check reports it
			}
			info, err := decodeRecord(p, v)
			if err != nil {
				return nil
			}
			for _, ref := range info.References {
				if err := tx.Bucket(bucketReferrers).Put(pairKey(ref.Base(), p.Base()), nil); err != nil {
					return err
				}
			}
			if p.IsDerivation() {
				return s.putDrvOutputs(tx, p)
			}
			return nil
		})
	})
}
