package store

import (
	bolt "go.etcd.io/bbolt"

	"storefs/store/storepath"
)

// ForEachPath calls fn for every valid path, in order of base name, without
// decoding records: what a listing of the store needs.
func (s *Store) ForEachPath(fn func(storepath.Path) error) error {
	return s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPaths).ForEach(func(k, _ []byte) error {
			p, err := storepath.ParseBase(string(k))
			if err != nil {
				return nil // Check reports it
			}
			return fn(p)
		})
	})
}
