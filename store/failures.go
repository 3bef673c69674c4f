package store

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"storefs/store/derivation"
	"storefs/store/storepath"
)

// bucketFailures remembers failed realisations so that repeated requests
// fail fast (docs/design.md, "Invariants", 6; the whole schema is in db.go):
//
//	failures
//	└── <base of the derivation or path> -> JSON of Failure
//
// The bucket is made on first use.
var bucketFailures = []byte("failures")

// Failure is a remembered failed realisation.
type Failure struct {
	Time    time.Time `json:"time"`
	Message string    `json:"message"` // why, with the log's last lines
	Status  int       `json:"status"`  // the exit status it failed with (100, 101, 102...)
}

// RecordFailure remembers that realising p failed.
func (s *Store) RecordFailure(p storepath.Path, f Failure) error {
	data, err := json.Marshal(f)
	if err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketFailures)
		if err != nil {
			return err
		}
		return b.Put([]byte(p.Base()), data)
	})
}

// LookupFailure returns the remembered failure of p, or nil.
func (s *Store) LookupFailure(p storepath.Path) (*Failure, error) {
	var f *Failure
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketFailures)
		if b == nil {
			return nil
		}
		v := b.Get([]byte(p.Base()))
		if v == nil {
			return nil
		}
		f = &Failure{}
		if err := json.Unmarshal(v, f); err != nil {
			return fmt.Errorf("failure record of %s: %w", s.Print(p), err)
		}
		return nil
	})
	return f, err
}

// ClearFailures forgets the failures of ps, or every failure when ps is
// empty.
func (s *Store) ClearFailures(ps ...storepath.Path) error {
	return s.update(func(tx *bolt.Tx) error {
		if len(ps) == 0 {
			if tx.Bucket(bucketFailures) == nil {
				return nil
			}
			return tx.DeleteBucket(bucketFailures)
		}
		b := tx.Bucket(bucketFailures)
		if b == nil {
			return nil
		}
		for _, p := range ps {
			if err := b.Delete([]byte(p.Base())); err != nil {
				return err
			}
		}
		return nil
	})
}

// ReadDerivation parses the valid derivation drv from the backing directory.
func (s *Store) ReadDerivation(drv storepath.Path) (*derivation.Derivation, error) {
	if ok, err := s.IsValid(drv); err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("derivation %s: %w", s.Print(drv), ErrNotValid)
		}
		return nil, err
	}
	return s.readDerivation(drv)
}
