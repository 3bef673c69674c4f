package store

import (
	"fmt"
	"io"

	"storefs/store/export"
	"storefs/store/nar"
	"storefs/store/nixhash"
	"storefs/store/storepath"
)

// Export writes the paths, which must be valid, as a `nix-store --export`
// stream, in the order given (callers sort: references first). A path
// whose contents no longer match its record's NAR hash and size stops the
// export with an error naming it (the stream is then incomplete, which an
// import refuses).
func (s *Store) Export(w io.Writer, ps []storepath.Path) error {
	ew := export.NewWriter(w, s.Dir)
	for _, p := range ps {
		info, err := s.Info(p)
		if err != nil {
			return err
		}
		e := &export.Entry{Path: p, References: info.References, Deriver: info.Deriver}
		err = ew.Add(e, func(w io.Writer) error {
			// As Nix, refuse to ship contents that no longer match
			// their record (storefs verify --check-contents says why).
			h := nixhash.SHA256.New()
			cw := &countWriter{w: io.MultiWriter(w, h)}
			if err := nar.Dump(cw, s.RealPath(p)); err != nil {
				return err
			}
			if got := nixhash.FromHasher(nixhash.SHA256, h); got != info.NarHash || cw.n != info.NarSize {
				return fmt.Errorf("its contents have NAR hash %s and size %d, the record says %s and %d (storefs verify --check-contents)", got, cw.n, info.NarHash, info.NarSize)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return ew.Close()
}
