package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	bolt "go.etcd.io/bbolt"

	"storefs/store/storepath"
)

// ErrReferenced says a path cannot be deleted because a valid path refers
// to it.
var ErrReferenced = errors.New("still referenced")

// AddRoot makes p a garbage collector root: a symlink gcroots/<base>
// pointing to p's store path.
func (s *Store) AddRoot(p storepath.Path) (string, error) {
	if ok, err := s.IsValid(p); err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("%s: %w", s.Print(p), ErrNotValid)
		}
		return "", err
	}
	link := filepath.Join(s.RootsDir(), p.Base())
	if target, err := os.Readlink(link); err == nil && target == s.Print(p) {
		return link, nil
	}
	tmp := link + ".tmp"
	os.Remove(tmp)
	if err := os.Symlink(s.Print(p), tmp); err != nil {
		return "", err
	}
	return link, os.Rename(tmp, link)
}

// Roots returns the store paths that the symlinks under gcroots/ point to,
// following chains of symlinks outside the store (indirect roots). A root
// that leads outside the store is an error naming it; a dangling one is
// skipped, as Nix skips it.
func (s *Store) Roots() (map[storepath.Path][]string, error) {
	roots := map[storepath.Path][]string{}
	err := filepath.WalkDir(s.RootsDir(), func(link string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink == 0 {
			return nil
		}
		p, err := s.resolveRoot(link)
		if err != nil {
			return err
		}
		if !p.IsZero() {
			roots[p] = append(roots[p], link)
		}
		return nil
	})
	return roots, err
}

func (s *Store) resolveRoot(link string) (storepath.Path, error) {
	cur := link
	for hops := 0; hops < 40; hops++ {
		target, err := os.Readlink(cur)
		if err != nil {
			if os.IsNotExist(err) {
				return storepath.Path{}, nil
			}
			return storepath.Path{}, fmt.Errorf("gc root %s: %w", link, err)
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(cur), target)
		}
		if strings.HasPrefix(target, string(s.Dir)+"/") {
			p, _, err := s.Dir.ParsePrefix(target)
			if err != nil {
				return storepath.Path{}, fmt.Errorf("gc root %s: %w", link, err)
			}
			return p, nil
		}
		st, err := os.Lstat(target)
		if os.IsNotExist(err) {
			return storepath.Path{}, nil
		}
		if err != nil || st.Mode()&fs.ModeSymlink == 0 {
			return storepath.Path{}, fmt.Errorf("gc root %s points to %s, outside the store %s", link, target, s.Dir)
		}
		cur = target
	}
	return storepath.Path{}, fmt.Errorf("gc root %s: too many levels of symlinks", link)
}

// GCOptions bound a collection.
type GCOptions struct {
	MaxFreed uint64 // stop once this many bytes (NAR size) are freed; 0 = no limit
	DryRun   bool   // report what would be deleted, delete nothing
}

// GCResult is what a collection deleted (or would delete).
type GCResult struct {
	Deleted []storepath.Path
	Freed   uint64 // sum of the deleted paths' NAR sizes
}

// GC deletes the valid paths that no root, temporary root or runtime root
// (a path a live process uses) reaches,
// oldest registration first, never a path before the paths that refer to
// it. Paths whose locks are held (being added or built) are kept, and so
// is what they refer to. It holds the gc lock throughout, so holders of
// temporary roots wait for it to finish before adding more.
func (s *Store) GC(ctx context.Context, opts GCOptions) (*GCResult, error) {
	unlock, err := s.lockGC(ctx, true)
	if err != nil {
		return nil, err
	}
	defer unlock()
	roots, err := s.allRoots()
	if err != nil {
		return nil, err
	}
	var infos []*PathInfo
	byPath := map[storepath.Path]*PathInfo{}
	if err := s.ForEach(func(info *PathInfo) error {
		infos = append(infos, info)
		byPath[info.Path] = info
		return nil
	}); err != nil {
		return nil, err
	}
	live := map[storepath.Path]bool{}
	var mark func(p storepath.Path)
	mark = func(p storepath.Path) {
		if live[p] {
			return
		}
		live[p] = true
		if info := byPath[p]; info != nil {
			for _, r := range info.References {
				mark(r)
			}
		}
	}
	for p := range roots {
		mark(p)
	}
	var dead []*PathInfo
	for _, info := range infos {
		if !live[info.Path] {
			dead = append(dead, info)
		}
	}
	sort.SliceStable(dead, func(i, j int) bool {
		return dead[i].RegistrationTime.Before(dead[j].RegistrationTime)
	})
	// Referrers left among the dead: a path goes only after all of them.
	pending := map[storepath.Path]int{}
	for _, info := range dead {
		for _, r := range info.References {
			if r != info.Path {
				pending[r]++
			}
		}
	}
	res := &GCResult{}
	gone := map[storepath.Path]bool{}
	for progress := true; progress; {
		progress = false
		for _, info := range dead {
			if gone[info.Path] || pending[info.Path] > 0 {
				continue
			}
			if opts.MaxFreed > 0 && res.Freed >= opts.MaxFreed {
				return res, nil
			}
			if err := ctx.Err(); err != nil {
				return res, err
			}
			if !opts.DryRun {
				err := s.Delete(info.Path, true)
				if errors.Is(err, errLocked) || errors.Is(err, ErrReferenced) {
					gone[info.Path] = true // in use: keep it and what it refers to
					continue
				}
				if err != nil {
					return res, err
				}
			}
			gone[info.Path] = true
			progress = true
			res.Deleted = append(res.Deleted, info.Path)
			res.Freed += info.NarSize
			for _, r := range info.References {
				if r != info.Path {
					pending[r]--
				}
			}
		}
	}
	return res, nil
}

// allRoots returns the gc roots, the live holders' temporary roots and the
// valid paths that live processes use (liveroots.go). The caller holds the
// gc lock exclusively.
func (s *Store) allRoots() (map[storepath.Path]bool, error) {
	roots, err := s.Roots()
	if err != nil {
		return nil, err
	}
	all, err := s.readTempRoots()
	if err != nil {
		return nil, err
	}
	for p := range roots {
		all[p] = true
	}
	if used := s.runtimeRoots(); len(used) > 0 {
		err := s.ForEachPath(func(p storepath.Path) error {
			if used[p.HashPart()] {
				all[p] = true
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return all, nil
}

// DeleteSpecific deletes the paths, as `nix-store --delete`: each must be
// valid and dead (no root or temporary root names it and no other valid
// path refers to it, unless that path is deleted before it here). All are
// checked before any is deleted; a path whose lock is held then fails the
// call with the paths before it deleted.
func (s *Store) DeleteSpecific(ctx context.Context, ps []storepath.Path) error {
	unlock, err := s.lockGC(ctx, true)
	if err != nil {
		return err
	}
	defer unlock()
	roots, err := s.allRoots()
	if err != nil {
		return err
	}
	doomed := map[storepath.Path]bool{}
	for _, p := range ps {
		doomed[p] = true
	}
	// Referrers first, so a path whose only referrers are doomed too goes.
	var order []storepath.Path
	seen := map[storepath.Path]bool{}
	var visit func(p storepath.Path) error
	visit = func(p storepath.Path) error {
		if seen[p] {
			return nil
		}
		seen[p] = true
		if roots[p] {
			return fmt.Errorf("cannot delete %s: it is a gc root, a temporary root or in use by a live process, so still alive", s.Print(p))
		}
		refs, err := s.Referrers(p)
		if err != nil {
			return err
		}
		if _, err := s.Info(p); err != nil {
			return fmt.Errorf("cannot delete %w", err)
		}
		for _, r := range refs {
			if r == p {
				continue
			}
			if !doomed[r] {
				return fmt.Errorf("cannot delete %s: %w by %s", s.Print(p), ErrReferenced, s.Print(r))
			}
			if err := visit(r); err != nil {
				return err
			}
		}
		order = append(order, p)
		return nil
	}
	for _, p := range ps {
		if err := visit(p); err != nil {
			return err
		}
	}
	for _, p := range order {
		if err := s.Delete(p, true); err != nil {
			return err
		}
	}
	return nil
}

var errLocked = errors.New("locked by another writer")

// Delete removes a valid path that no other valid path refers to. With
// nowait it does not wait for the path's lock and fails with an error if
// it is held.
func (s *Store) Delete(p storepath.Path, nowait bool) error {
	var l *PathLock
	var err error
	if nowait {
		l, err = s.TryLock(p)
		if err == nil && l == nil {
			err = fmt.Errorf("deleting %s: %w", s.Print(p), errLocked)
		}
	} else {
		l, err = s.Lock(context.Background(), p)
	}
	if err != nil {
		return err
	}
	defer l.Unlock()
	marker, err := s.markPending([]Registration{{Info: PathInfo{Path: p}}})
	if err != nil {
		return err
	}
	defer s.clearPending(marker)
	err = s.update(func(tx *bolt.Tx) error {
		info, err := getInfo(tx, p)
		if err != nil {
			return fmt.Errorf("deleting %s: %w", s.Print(p), err)
		}
		refs, err := referrers(tx, p)
		if err != nil {
			return err
		}
		for _, r := range refs {
			if r != p {
				return fmt.Errorf("cannot delete %s: %w by %s", s.Print(p), ErrReferenced, s.Print(r))
			}
		}
		if err := tx.Bucket(bucketPaths).Delete([]byte(p.Base())); err != nil {
			return err
		}
		for _, r := range info.References {
			if err := tx.Bucket(bucketReferrers).Delete(pairKey(r.Base(), p.Base())); err != nil {
				return err
			}
		}
		return deleteOutputIndexes(tx, p)
	})
	if err != nil {
		return err
	}
	return removeAllForce(s.RealPath(p))
}

// deleteOutputIndexes drops a derivation's entries from both output indexes.
func deleteOutputIndexes(tx *bolt.Tx, drv storepath.Path) error {
	fwd := tx.Bucket(bucketDrvOutputs)
	var keys [][]byte
	var outs []string
	forEachPair(fwd, drv.Base(), func(id string, v []byte) error {
		keys = append(keys, pairKey(drv.Base(), id))
		outs = append(outs, string(v))
		return nil
	})
	for i, k := range keys {
		if err := fwd.Delete(k); err != nil {
			return err
		}
		if err := tx.Bucket(bucketOutputDrvs).Delete(pairKey(outs[i], drv.Base())); err != nil {
			return err
		}
	}
	return nil
}
