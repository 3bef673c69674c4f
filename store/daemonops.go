package store

import (
	"bytes"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"storefs/store/storepath"
)

// PathFromHashPart returns the valid path whose hash part is hash, or the
// zero Path. Base names sort by their hash part first, so this is one seek.
func (s *Store) PathFromHashPart(hash string) (storepath.Path, error) {
	if err := storepath.ValidateHashPart(hash); err != nil {
		return storepath.Path{}, err
	}
	var out storepath.Path
	err := s.view(func(tx *bolt.Tx) error {
		prefix := []byte(hash + "-")
		k, _ := tx.Bucket(bucketPaths).Cursor().Seek(prefix)
		if k == nil || !bytes.HasPrefix(k, prefix) {
			return nil
		}
		p, err := storepath.ParseBase(string(k))
		out = p
		return err
	})
	return out, err
}

// AddSignatures adds sigs (`<key name>:<base64>`) to p's record, keeping
// the ones it has; a signature already there is not added twice.
func (s *Store) AddSignatures(p storepath.Path, sigs []string) error {
	return s.update(func(tx *bolt.Tx) error {
		info, err := getInfo(tx, p)
		if err != nil {
			return fmt.Errorf("adding signatures to %s: %w", s.Print(p), err)
		}
		have := map[string]bool{}
		for _, sig := range info.Sigs {
			have[sig] = true
		}
		changed := false
		for _, sig := range sigs {
			if !have[sig] {
				have[sig] = true
				info.Sigs = append(info.Sigs, sig)
				changed = true
			}
		}
		if !changed {
			return nil
		}
		rec, err := encodeRecord(info)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketPaths).Put([]byte(p.Base()), rec)
	})
}
