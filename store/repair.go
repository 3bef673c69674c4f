package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

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
				return s.putDrvOutputs(tx, p, nil)
			}
			return nil
		})
	})
}
