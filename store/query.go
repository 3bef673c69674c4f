package store

import (
	"fmt"
	"os"

	bolt "go.etcd.io/bbolt"

	"storefs/store/derivation"
	"storefs/store/storepath"
)

// IsValid reports whether p has a record.
func (s *Store) IsValid(p storepath.Path) (bool, error) {
	var ok bool
	err := s.view(func(tx *bolt.Tx) error {
		ok = tx.Bucket(bucketPaths).Get([]byte(p.Base())) != nil
		return nil
	})
	return ok, err
}

// Info returns p's record, or an error wrapping ErrNotValid.
func (s *Store) Info(p storepath.Path) (*PathInfo, error) {
	var info *PathInfo
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		info, err = getInfo(tx, p)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.Print(p), err)
	}
	return info, nil
}

func getInfo(tx *bolt.Tx, p storepath.Path) (*PathInfo, error) {
	v := tx.Bucket(bucketPaths).Get([]byte(p.Base()))
	if v == nil {
		return nil, ErrNotValid
	}
	return decodeRecord(p, v)
}

// Referrers returns the valid paths that refer to p (p itself included when
// it refers to itself).
func (s *Store) Referrers(p storepath.Path) ([]storepath.Path, error) {
	var out []storepath.Path
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		out, err = referrers(tx, p)
		return err
	})
	return out, err
}

func referrers(tx *bolt.Tx, p storepath.Path) ([]storepath.Path, error) {
	var out []storepath.Path
	err := forEachPair(tx.Bucket(bucketReferrers), p.Base(), func(second string, _ []byte) error {
		r, err := storepath.ParseBase(second)
		if err != nil {
			return fmt.Errorf("referrers index of %s: %w", p, err)
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

// DerivationOutputs returns the outputs (id -> path) recorded for a valid
// derivation.
func (s *Store) DerivationOutputs(drv storepath.Path) (map[string]storepath.Path, error) {
	out := map[string]storepath.Path{}
	err := s.view(func(tx *bolt.Tx) error {
		return forEachPair(tx.Bucket(bucketDrvOutputs), drv.Base(), func(id string, v []byte) error {
			p, err := storepath.ParseBase(string(v))
			if err != nil {
				return fmt.Errorf("outputs index of %s: %w", drv, err)
			}
			out[id] = p
			return nil
		})
	})
	return out, err
}

// DerivationOutput names one output of one derivation.
type DerivationOutput struct {
	Drv storepath.Path
	ID  string
}

// Derivers returns the valid derivations that have p as an output: how p
// can be built.
func (s *Store) Derivers(p storepath.Path) ([]DerivationOutput, error) {
	var out []DerivationOutput
	err := s.view(func(tx *bolt.Tx) error {
		return forEachPair(tx.Bucket(bucketOutputDrvs), p.Base(), func(drv string, id []byte) error {
			d, err := storepath.ParseBase(drv)
			if err != nil {
				return fmt.Errorf("derivers index of %s: %w", p, err)
			}
			out = append(out, DerivationOutput{d, string(id)})
			return nil
		})
	})
	return out, err
}

// Requisites returns the closure of ps under references, sorted.
func (s *Store) Requisites(ps []storepath.Path) ([]storepath.Path, error) {
	seen := map[storepath.Path]bool{}
	err := s.view(func(tx *bolt.Tx) error {
		todo := append([]storepath.Path(nil), ps...)
		for len(todo) > 0 {
			p := todo[len(todo)-1]
			todo = todo[:len(todo)-1]
			if seen[p] {
				continue
			}
			info, err := getInfo(tx, p)
			if err != nil {
				return fmt.Errorf("%s: %w", s.Print(p), err)
			}
			seen[p] = true
			todo = append(todo, info.References...)
		}
		return nil
	})
	out := make([]storepath.Path, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	storepath.Sort(out)
	return out, err
}

// ForEach calls fn for every valid path, in order of base name.
func (s *Store) ForEach(fn func(*PathInfo) error) error {
	return s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPaths).ForEach(func(k, v []byte) error {
			p, err := storepath.ParseBase(string(k))
			if err != nil {
				return fmt.Errorf("database key %q: %w", k, err)
			}
			info, err := decodeRecord(p, v)
			if err != nil {
				return err
			}
			return fn(info)
		})
	})
}

// readDrvOutputs parses a derivation in the backing directory, checks that
// its recorded output paths are the computed ones, and returns its outputs.
// As in Nix, the .drv's own path may be its text or its source address
// (`nix-store --add x.drv`); its writer has checked which.
func (s *Store) readDrvOutputs(drv storepath.Path) (map[string]storepath.Path, error) {
	d, err := s.readDerivation(drv)
	if err != nil {
		return nil, err
	}
	if err := s.hasher.Check(d); err != nil {
		return nil, err
	}
	out := map[string]storepath.Path{}
	for id, o := range d.Outputs {
		out[id] = o.Path
	}
	return out, nil
}

// readDerivation parses the derivation at drv in the backing directory.
func (s *Store) readDerivation(drv storepath.Path) (*derivation.Derivation, error) {
	data, err := os.ReadFile(s.RealPath(drv))
	if err != nil {
		return nil, err
	}
	d, err := derivation.Parse(data, s.Dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.Print(drv), err)
	}
	return d, nil
}
