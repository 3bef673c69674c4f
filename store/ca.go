package store

import (
	"errors"
	"fmt"
	"io"
	"os"

	"storefs/store/nar"
	"storefs/store/nixhash"
	"storefs/store/storepath"
)

// ErrAddressNotPath says a content address does not make the path it is
// given for (with the path's name and references).
var ErrAddressNotPath = errors.New("content address does not make the path")

// CheckContentAddress checks info.CA, which comes from outside (a
// narinfo's CA field, which no signature covers): with the path's name and
// references it must make info.Path (else an error wrapping
// ErrAddressNotPath), and the contents at contents must hash to it (else
// ErrAddressMismatch): the NAR for fixed:r:, the bytes of a regular file
// for fixed: and text: (never executable for text:, which Nix always
// writes as a plain file; Nix 2.8's add-fixed keeps a flat file's
// executable bit). A zero CA passes.
func (s *Store) CheckContentAddress(info *PathInfo, contents string) error {
	ca := info.CA
	if ca.IsZero() {
		return nil
	}
	var others []storepath.Path
	self := false
	for _, r := range info.References {
		if r == info.Path {
			self = true
		} else {
			others = append(others, r)
		}
	}
	p, err := s.Dir.MakeCA(info.Path.Name(), ca, others, self)
	if err != nil {
		return fmt.Errorf("content address %s: %v: %w", ca, err, ErrAddressNotPath)
	}
	if p != info.Path {
		return fmt.Errorf("content address %s makes %s: %w", ca, s.Print(p), ErrAddressNotPath)
	}
	var got nixhash.Hash
	switch {
	case ca.Recursive && ca.Hash.Algo == nixhash.SHA256 && info.NarHash.Algo == nixhash.SHA256:
		got = info.NarHash // checked against the contents by the caller
	case ca.Recursive:
		h := ca.Hash.Algo.New()
		if err := nar.Dump(h, contents); err != nil {
			return fmt.Errorf("checking content address %s: %w", ca, err)
		}
		got = nixhash.FromHasher(ca.Hash.Algo, h)
	default:
		st, err := os.Lstat(contents)
		if err != nil {
			return fmt.Errorf("checking content address %s: %w", ca, err)
		}
		if !st.Mode().IsRegular() || ca.Text && st.Mode()&0o100 != 0 {
			what := "a regular file"
			if ca.Text {
				what = "a non-executable regular file"
			}
			return fmt.Errorf("content address %s needs %s, the contents are %s: %w", ca, what, st.Mode(), ErrAddressMismatch)
		}
		f, err := os.Open(contents)
		if err != nil {
			return fmt.Errorf("checking content address %s: %w", ca, err)
		}
		defer f.Close()
		h := ca.Hash.Algo.New()
		if _, err := io.Copy(h, f); err != nil {
			return fmt.Errorf("checking content address %s: %w", ca, err)
		}
		got = nixhash.FromHasher(ca.Hash.Algo, h)
	}
	if got != ca.Hash {
		return fmt.Errorf("content address %s, the contents have %s: %w", ca, got, ErrAddressMismatch)
	}
	return nil
}
