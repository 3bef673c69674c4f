package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"

	bolt "go.etcd.io/bbolt"

	"storefs/store/nar"
	"storefs/store/nixhash"
	"storefs/store/storepath"
)

// Problem is one broken rule found by Check.
type Problem struct {
	Path string // the store path, index key or backing entry concerned
	What string
}

func (p Problem) String() string { return p.Path + ": " + p.What }

// CheckOptions choose how deep Check looks.
type CheckOptions struct {
	// Contents recomputes every path's NAR hash and size and checks every
	// file's mode, which reads all contents.
	Contents bool
}

// Check walks the database and the backing directory and reports every
// broken invariant: records that do not decode, references that are not
// valid, indexes that disagree with the records, backing entries with no
// record and records with no backing entry, and (with Contents) contents
// whose NAR hash or size differs from the record, that do not hash to
// their content address, or that are not canonical.
func (s *Store) Check(opts CheckOptions) ([]Problem, error) {
	var probs []Problem
	add := func(path, format string, args ...any) {
		probs = append(probs, Problem{path, fmt.Sprintf(format, args...)})
	}
	valid := map[string]bool{}
	err := s.view(func(tx *bolt.Tx) error {
		infos := map[string]*PathInfo{}
		tx.Bucket(bucketPaths).ForEach(func(k, v []byte) error {
			p, err := storepath.ParseBase(string(k))
			if err != nil {
				add(string(k), "database key is not a store path: %v", err)
				return nil
			}
			info, err := decodeRecord(p, v)
			if err != nil {
				add(s.Print(p), "%v", err)
				return nil
			}
			valid[p.Base()] = true
			infos[p.Base()] = info
			return nil
		})
		wantReferrers := map[string]bool{}
		for base, info := range infos {
			s.checkCA(info, add)
			for _, ref := range info.References {
				if !valid[ref.Base()] {
					add(s.Print(info.Path), "reference %s is not a valid path", s.Print(ref))
				}
				wantReferrers[string(pairKey(ref.Base(), base))] = true
			}
		}
		tx.Bucket(bucketReferrers).ForEach(func(k, _ []byte) error {
			if !wantReferrers[string(k)] {
				a, b, _ := splitPairKey(k)
				add(string(s.Dir)+"/"+a, "referrers index names %s, which does not refer to it", b)
			}
			delete(wantReferrers, string(k))
			return nil
		})
		for k := range wantReferrers {
			a, b, _ := splitPairKey([]byte(k))
			add(string(s.Dir)+"/"+a, "referrers index lacks %s", b)
		}
		s.checkOutputIndexes(tx, valid, add)
		for base, info := range infos {
			if info.Path.IsDerivation() {
				s.checkDrvOutputs(tx, base, opts.Contents, add)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	names, err := readDirNames(s.BackingDir())
	if err != nil {
		return nil, fmt.Errorf("reading backing directory: %w", err)
	}
	sort.Strings(names)
	onDisk := map[string]bool{}
	for _, name := range names {
		onDisk[name] = true
		if !valid[name] {
			add(s.BackingDir()+"/"+name, "backing entry has no database record")
		}
	}
	if journals, err := readDirNames(filepath.Join(s.State, repairDir)); err == nil {
		for _, j := range journals {
			add(filepath.Join(s.State, repairDir, j), "a killed repair left this journal; storefs verify --repair puts the path back and repairs it")
		}
	}
	for base := range valid {
		if !onDisk[base] {
			add(string(s.Dir)+"/"+base, "valid path has no contents in the backing directory")
		}
	}
	if opts.Contents {
		err := s.ForEach(func(info *PathInfo) error {
			if !onDisk[info.Path.Base()] {
				return nil
			}
			s.checkContents(info, add)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	sort.Slice(probs, func(i, j int) bool {
		if probs[i].Path != probs[j].Path {
			return probs[i].Path < probs[j].Path
		}
		return probs[i].What < probs[j].What
	})
	return probs, nil
}

func (s *Store) checkOutputIndexes(tx *bolt.Tx, valid map[string]bool, add func(string, string, ...any)) {
	forward := map[string]string{}
	tx.Bucket(bucketDrvOutputs).ForEach(func(k, v []byte) error {
		drv, id, ok := splitPairKey(k)
		if !ok || !valid[drv] {
			add(string(s.Dir)+"/"+drv, "outputs index entry %q for a derivation that is not valid", k)
			return nil
		}
		forward[string(pairKey(string(v), drv))] = id
		return nil
	})
	tx.Bucket(bucketOutputDrvs).ForEach(func(k, v []byte) error {
		out, drv, _ := splitPairKey(k)
		id, ok := forward[string(k)]
		if !ok || id != string(v) {
			add(string(s.Dir)+"/"+out, "derivers index names %s output %q, which the outputs index lacks", drv, v)
		}
		delete(forward, string(k))
		return nil
	})
	for k, id := range forward {
		out, drv, _ := splitPairKey([]byte(k))
		add(string(s.Dir)+"/"+out, "derivers index lacks %s output %q", drv, id)
	}
}

// checkCA reports a content address that does not make the path.
func (s *Store) checkCA(info *PathInfo, add func(string, string, ...any)) {
	if info.CA.IsZero() {
		return
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
	p, err := s.Dir.MakeCA(info.Path.Name(), info.CA, others, self)
	switch {
	case err != nil:
		add(s.Print(info.Path), "content address %s: %v", info.CA, err)
	case p != info.Path:
		add(s.Print(info.Path), "content address %s makes the path %s", info.CA, s.Print(p))
	}
}

// checkDrvOutputs reports a valid derivation whose outputs are not
// recorded and, with contents, recorded outputs that differ from those its
// .drv file names.
func (s *Store) checkDrvOutputs(tx *bolt.Tx, base string, contents bool, add func(string, string, ...any)) {
	recorded := map[string]string{}
	forEachPair(tx.Bucket(bucketDrvOutputs), base, func(id string, v []byte) error {
		recorded[id] = string(v)
		return nil
	})
	where := string(s.Dir) + "/" + base
	if len(recorded) == 0 {
		add(where, "derivation has no outputs recorded")
	}
	if !contents {
		return
	}
	drv, err := storepath.ParseBase(base)
	if err != nil {
		return
	}
	outs, err := s.readDrvOutputs(drv)
	if err != nil {
		add(where, "reading derivation: %v", err)
		return
	}
	for id, p := range outs {
		if recorded[id] != p.Base() {
			add(where, "output %q is %s, the outputs index says %q", id, s.Print(p), recorded[id])
		}
		delete(recorded, id)
	}
	for id, v := range recorded {
		add(where, "outputs index names output %q (%s), which the derivation lacks", id, v)
	}
}

func (s *Store) checkContents(info *PathInfo, add func(string, string, ...any)) {
	where := s.Print(info.Path)
	real := s.RealPath(info.Path)
	if err := checkCanonical(real); err != nil {
		add(where, "not canonical: %v", err)
	}
	h := nixhash.SHA256.New()
	cw := &countWriter{w: h}
	if err := nar.Dump(cw, real); err != nil {
		add(where, "reading contents: %v", err)
		return
	}
	got := nixhash.FromHasher(nixhash.SHA256, h)
	if got != info.NarHash {
		add(where, "contents have NAR hash %s, the record says %s", got, info.NarHash)
	}
	if cw.n != info.NarSize {
		add(where, "contents have NAR size %d, the record says %d", cw.n, info.NarSize)
	}
	withHash := *info
	withHash.NarHash = got
	if err := s.CheckContentAddress(&withHash, real); errors.Is(err, ErrAddressMismatch) {
		add(where, "%v", err)
	}
}

type countWriter struct {
	w interface{ Write([]byte) (int, error) }
	n uint64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += uint64(n)
	return n, err
}
