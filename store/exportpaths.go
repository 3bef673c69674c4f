package store

import (
	"io"

	"storefs/store/export"
	"storefs/store/nar"
	"storefs/store/storepath"
)

// Export writes the paths, which must be valid, as a `nix-store --export`
// stream, in the order given (callers sort: references first).
func (s *Store) Export(w io.Writer, ps []storepath.Path) error {
	ew := export.NewWriter(w, s.Dir)
	for _, p := range ps {
		info, err := s.Info(p)
		if err != nil {
			return err
		}
		e := &export.Entry{Path: p, References: info.References, Deriver: info.Deriver}
		err = ew.Add(e, func(w io.Writer) error { return nar.Dump(w, s.RealPath(p)) })
		if err != nil {
			return err
		}
	}
	return ew.Close()
}
