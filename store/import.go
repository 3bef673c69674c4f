package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"storefs/store/export"
	"storefs/store/nar"
	"storefs/store/nixhash"
	"storefs/store/storepath"
)

// Import adds every path of a `nix-store --export` stream, in stream order,
// and returns them. Each NAR is checked as it is restored (grammar, hash and
// size computed on the way); a path's references must be valid or come
// earlier in the stream; a .drv must be the text path of its contents and
// name its outputs' computed paths; a path whose name is the source address
// of its contents gets that content address. A path valid already is
// skipped. Paths imported before an error stay valid.
func (s *Store) Import(ctx context.Context, r io.Reader) ([]storepath.Path, error) {
	er := export.NewReader(r, s.Dir)
	var done []storepath.Path
	for {
		if err := ctx.Err(); err != nil {
			return done, err
		}
		p, err := s.importOne(ctx, er)
		if err == io.EOF {
			return done, nil
		}
		if err != nil {
			return done, fmt.Errorf("import: %w", err)
		}
		done = append(done, p)
	}
}

func (s *Store) importOne(ctx context.Context, er *export.Reader) (storepath.Path, error) {
	nr, err := er.Next()
	if err != nil {
		return storepath.Path{}, err
	}
	tmp, err := s.NewTemp()
	if err != nil {
		return storepath.Path{}, err
	}
	defer removeAllForce(tmp)
	contents := filepath.Join(tmp, "contents")
	if err := nar.RestoreFrom(nr, contents); err != nil {
		return storepath.Path{}, er.Fail(err)
	}
	e, err := er.Trailer()
	if err != nil {
		return storepath.Path{}, err
	}
	info := PathInfo{Path: e.Path, NarHash: nr.NarHash(), NarSize: uint64(nr.NarSize()), References: e.References, Deriver: e.Deriver}
	if err := s.checkAddress(&info, contents); err != nil {
		return storepath.Path{}, err
	}
	if err := s.registerLocked(ctx, Registration{info, contents}); err != nil {
		return storepath.Path{}, err
	}
	return e.Path, nil
}

// checkAddress refuses a .drv that is not the text path of its contents and
// records the content address of a path named after its NAR hash.
func (s *Store) checkAddress(info *PathInfo, contents string) error {
	self := false
	var others []storepath.Path
	for _, r := range info.References {
		if r == info.Path {
			self = true
		} else {
			others = append(others, r)
		}
	}
	if info.Path.IsDerivation() {
		data, err := readSmallFile(contents)
		if err != nil {
			return fmt.Errorf("%s: %w", s.Print(info.Path), err)
		}
		ca := storepath.ContentAddress{Text: true, Hash: nixhash.Sum(nixhash.SHA256, data)}
		want, err := s.Dir.MakeCA(info.Path.Name(), ca, others, self)
		if err != nil {
			return fmt.Errorf("%s: %w", s.Print(info.Path), err)
		}
		if want != info.Path {
			return fmt.Errorf("%s: its contents and references make the text path %s: %w", s.Print(info.Path), s.Print(want), ErrAddressMismatch)
		}
		info.CA = ca
		return nil
	}
	ca := storepath.ContentAddress{Recursive: true, Hash: info.NarHash}
	if want, err := s.Dir.MakeCA(info.Path.Name(), ca, others, self); err == nil && want == info.Path {
		info.CA = ca
	}
	return nil
}

// ErrAddressMismatch says a content-addressed path's contents do not make
// its address.
var ErrAddressMismatch = errors.New("content address mismatch")

// readSmallFile reads a derivation's contents, refusing anything huge.
func readSmallFile(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	const max = 64 << 20
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err == nil && len(data) > max {
		err = fmt.Errorf("derivation larger than %d bytes", max)
	}
	return data, err
}
