package realise

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"storefs/goals"
	"storefs/store"
	"storefs/store/derivation"
	"storefs/store/nar"
	"storefs/store/nixhash"
	"storefs/store/storepath"
)

// checkOutputs checks what the builder left at outputs (id -> host path)
// and returns the registrations of every output.
func (b *Builder) checkOutputs(drv storepath.Path, d *derivation.Derivation, outputs map[string]string, closure []storepath.Path) ([]store.Registration, error) {
	s := b.Store
	drvName := s.Print(drv)
	candidates := append([]storepath.Path(nil), closure...)
	for _, o := range d.Outputs {
		candidates = append(candidates, o.Path)
	}
	regs := make([]store.Registration, 0, len(outputs))
	for _, id := range d.OutputIDs() {
		o := d.Outputs[id]
		host := outputs[id]
		if _, err := os.Lstat(host); err != nil {
			return nil, rejected(drvName, "builder failed to produce output path for output '%s' at '%s'", id, s.Print(o.Path))
		}
		narHash, narSize, refs, err := scanOutput(host, candidates)
		if err != nil && isResourceError(err) {
			return nil, fmt.Errorf("reading output '%s' of %s: %w", id, drvName, err)
		}
		if err != nil {
			// E.g. a socket or a fifo, which no NAR holds: refused, as
			// Nix does, naming the path as the builder saw it.
			msg := strings.ReplaceAll(err.Error(), host, s.Print(o.Path))
			return nil, rejected(drvName, "output '%s': %s", id, msg)
		}
		info := store.PathInfo{Path: o.Path, NarHash: narHash, NarSize: narSize, References: refs, Deriver: drv}
		if o.IsFixed() {
			if err := checkFixed(drvName, s.Print(o.Path), o, host, narHash); err != nil {
				return nil, err
			}
			if len(refs) > 0 {
				// Its path was computed without references; Nix 2.8
				// aborts on an assertion here, later Nix says this.
				return nil, rejected(drvName, "illegal path references in fixed-output derivation '%s': %s", drvName, strings.Join(s.Dir.PrintAll(refs), " "))
			}
			info.CA = storepath.ContentAddress{Recursive: o.Recursive, Hash: o.Hash}
		}
		regs = append(regs, store.Registration{Info: info, Contents: host})
	}
	if err := checkCycles(drvName, d, regs); err != nil {
		return nil, err
	}
	if err := b.checkReferenceRules(drvName, d, regs); err != nil {
		return nil, err
	}
	return regs, nil
}

// rejected is a build whose builder succeeded but whose outputs are
// refused.
func rejected(drvName, format string, a ...any) error {
	return &goals.BuildError{Drv: drvName, Status: goals.StatusOutputRejected, Message: fmt.Sprintf(format, a...)}
}

// checkCycles refuses outputs that refer to each other in a cycle: no
// order of registration would have each one's references valid first.
func checkCycles(drvName string, d *derivation.Derivation, regs []store.Registration) error {
	ids := map[storepath.Path]string{}
	for _, id := range d.OutputIDs() {
		ids[d.Outputs[id].Path] = id
	}
	refs := map[string][]string{} // output id -> the other outputs it refers to
	for _, r := range regs {
		from := ids[r.Info.Path]
		for _, p := range r.Info.References {
			if to, ok := ids[p]; ok && p != r.Info.Path {
				refs[from] = append(refs[from], to)
			}
		}
	}
	const (
		unvisited = iota
		onPath
		done
	)
	state := map[string]int{}
	var visit func(id string) error
	visit = func(id string) error {
		state[id] = onPath
		for _, to := range refs[id] {
			switch state[to] {
			case onPath:
				return rejected(drvName, "cycle detected in build of '%s' in the references of output '%s' from output '%s'", drvName, to, id)
			case unvisited:
				if err := visit(to); err != nil {
					return err
				}
			}
		}
		state[id] = done
		return nil
	}
	for _, id := range d.OutputIDs() {
		if state[id] == unvisited {
			if err := visit(id); err != nil {
				return err
			}
		}
	}
	return nil
}

// scanOutput computes an output's NAR hash and size and finds which
// candidates it refers to, in one pass over its NAR.
func scanOutput(p string, candidates []storepath.Path) (nixhash.Hash, uint64, []storepath.Path, error) {
	h := nixhash.SHA256.New()
	scan := newRefScanner(candidates)
	cw := &countingWriter{}
	if err := nar.Dump(io.MultiWriter(h, scan, cw), p); err != nil {
		return nixhash.Hash{}, 0, nil, err
	}
	return nixhash.FromHasher(nixhash.SHA256, h), cw.n, scan.Found(), nil
}

type countingWriter struct{ n uint64 }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += uint64(len(p)); return len(p), nil }

// checkFixed compares a fixed output with its declared hash. A flat one
// must be a regular, non-executable file.
func checkFixed(drvName, outName string, o derivation.Output, host string, narHash nixhash.Hash) error {
	var got nixhash.Hash
	switch {
	case o.Recursive && o.Hash.Algo == nixhash.SHA256:
		got = narHash
	case o.Recursive:
		h := o.Hash.Algo.New()
		if err := nar.Dump(h, host); err != nil {
			return err
		}
		got = nixhash.FromHasher(o.Hash.Algo, h)
	default:
		st, err := os.Lstat(host)
		if err != nil {
			return err
		}
		if !st.Mode().IsRegular() || st.Mode()&0o100 != 0 {
			return rejected(drvName, "output path '%s' should be a non-executable regular file since recursive hashing is not enabled (outputHashMode=flat)", outName)
		}
		f, err := os.Open(host)
		if err != nil {
			return err
		}
		h := o.Hash.Algo.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return err
		}
		got = nixhash.FromHasher(o.Hash.Algo, h)
	}
	if got != o.Hash {
		// Nix 2.8 says "hash mismatch in fixed-output derivation '<drv>':
		// specified: <SRI> got: <SRI>"; the nix32 forms are what older
		// expressions write.
		return &goals.BuildError{Drv: drvName, Status: goals.StatusHashMismatch,
			Message: fmt.Sprintf("hash mismatch in fixed-output derivation '%s': specified: %s (%s), got: %s (%s)",
				drvName, o.Hash.SRI(), o.Hash, got.SRI(), got)}
	}
	return nil
}

// checkReferenceRules enforces allowedReferences, allowedRequisites,
// disallowedReferences and disallowedRequisites. Their values name store
// paths or output ids of this derivation.
func (b *Builder) checkReferenceRules(drvName string, d *derivation.Derivation, regs []store.Registration) error {
	s := b.Store
	byPath := map[storepath.Path]*store.PathInfo{}
	for i := range regs {
		byPath[regs[i].Info.Path] = &regs[i].Info
	}
	resolve := func(spec string) (map[storepath.Path]bool, error) {
		set := map[storepath.Path]bool{}
		for _, w := range strings.Fields(spec) {
			if o, ok := d.Outputs[w]; ok {
				set[o.Path] = true
				continue
			}
			p, err := s.Dir.Parse(w)
			if err != nil {
				return nil, fmt.Errorf("derivation contains an illegal reference specifier '%s'", w)
			}
			set[p] = true
		}
		return set, nil
	}
	requisites := func(info *store.PathInfo) ([]storepath.Path, error) {
		seen := map[storepath.Path]bool{}
		var valid []storepath.Path
		todo := []storepath.Path{info.Path}
		for len(todo) > 0 {
			p := todo[len(todo)-1]
			todo = todo[:len(todo)-1]
			if seen[p] {
				continue
			}
			seen[p] = true
			if out, ok := byPath[p]; ok {
				todo = append(todo, out.References...)
			} else {
				valid = append(valid, p)
			}
		}
		closure, err := s.Requisites(valid)
		for _, p := range closure {
			seen[p] = true
		}
		out := make([]storepath.Path, 0, len(seen))
		for p := range seen {
			out = append(out, p)
		}
		storepath.Sort(out)
		return out, err
	}
	for i := range regs {
		info := &regs[i].Info
		for _, rule := range []struct {
			key      string
			allowed  bool
			closured bool
		}{
			{"allowedReferences", true, false}, {"allowedRequisites", true, true},
			{"disallowedReferences", false, false}, {"disallowedRequisites", false, true},
		} {
			spec, ok := d.Env[rule.key]
			if !ok {
				continue
			}
			set, err := resolve(spec)
			if err != nil {
				return rejected(drvName, "%v", err)
			}
			paths := info.References
			if rule.closured {
				if paths, err = requisites(info); err != nil {
					return err
				}
			}
			var bad []string
			for _, p := range paths {
				if p == info.Path && rule.closured {
					continue
				}
				if set[p] != rule.allowed {
					bad = append(bad, s.Print(p))
				}
			}
			if len(bad) > 0 {
				sort.Strings(bad)
				return rejected(drvName, "output '%s' is not allowed to refer to the following paths (%s): %s",
					s.Print(info.Path), rule.key, strings.Join(bad, " "))
			}
		}
	}
	return nil
}
