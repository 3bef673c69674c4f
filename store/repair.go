package store

import (
	"fmt"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"

	"storefs/store/storepath"
)

// Repair fixes what can be fixed without losing or inventing a valid path:
// it removes backing entries that have no record, rebuilds the referrers
// and derivation output indexes from the records, and canonicalises
// contents whose modes or times drifted. Contents whose NAR hash differs
// from the record cannot be repaired here and stay reported by Check.
func (s *Store) Repair() error {
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
				if err := s.recanonicalise(p); err != nil {
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

func (s *Store) recanonicalise(p storepath.Path) error {
	real := s.RealPath(p)
	if err := os.Chmod(real, 0o755); err != nil && !os.IsNotExist(err) {
		st, lerr := os.Lstat(real)
		if lerr != nil || st.Mode()&os.ModeSymlink == 0 {
			return err
		}
	}
	if err := Canonicalise(real); err != nil {
		return fmt.Errorf("repairing %s: %w", s.Print(p), err)
	}
	return nil
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
