package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"storefs/store"
	"storefs/store/storepath"
)

// queryCmd is `nix-store --query`: one query type per call, as in Nix.
type queryCmd struct {
	References bool     `xor:"q" required:"" help:"The paths each path refers to."`
	Referrers  bool     `xor:"q" required:"" help:"The valid paths that refer to each path."`
	Requisites bool     `xor:"q" required:"" help:"The closure of the paths under references."`
	Deriver    bool     `xor:"q" required:"" help:"The derivation each path was built from, or unknown-deriver."`
	Outputs    bool     `xor:"q" required:"" help:"The output paths of each derivation."`
	Hash       bool     `xor:"q" required:"" help:"The NAR hash of each path (sha256:<nix32>)."`
	Size       bool     `xor:"q" required:"" help:"The NAR size of each path in bytes."`
	Paths      []string `arg:"" help:"Store paths."`
}

func (c *queryCmd) Run(ctx context.Context, g *Globals, io stdio) error {
	return g.withPaths(c.Paths, func(s *store.Store, ps []storepath.Path) error {
		return runQuery(s, io, c, ps)
	})
}

func runQuery(s *store.Store, io stdio, c *queryCmd, ps []storepath.Path) error {
	infos := make([]*store.PathInfo, len(ps))
	for i, p := range ps {
		info, err := s.Info(p)
		if err != nil {
			return err
		}
		infos[i] = info
	}
	lines := func(set map[storepath.Path]bool) error {
		sorted, err := topoSortPaths(s, set)
		for _, p := range sorted {
			fmt.Fprintln(io.out, s.Print(p))
		}
		return err
	}
	switch {
	case c.References, c.Referrers:
		set := map[storepath.Path]bool{}
		for _, info := range infos {
			refs := info.References
			if c.Referrers {
				var err error
				if refs, err = s.Referrers(info.Path); err != nil {
					return err
				}
			}
			for _, r := range refs {
				set[r] = true
			}
		}
		return lines(set)
	case c.Requisites:
		req, err := s.Requisites(ps)
		if err != nil {
			return err
		}
		set := map[storepath.Path]bool{}
		for _, p := range req {
			set[p] = true
		}
		return lines(set)
	case c.Outputs:
		// As Nix: a derivation's outputs sorted by path; any other path
		// stands for itself.
		for _, p := range ps {
			outs := []storepath.Path{p}
			if p.IsDerivation() {
				m, err := s.DerivationOutputs(p)
				if err != nil {
					return err
				}
				outs = outs[:0]
				for _, o := range m {
					outs = append(outs, o)
				}
				storepath.Sort(outs)
			}
			for _, o := range outs {
				fmt.Fprintln(io.out, s.Print(o))
			}
		}
	default:
		for _, info := range infos {
			switch {
			case c.Deriver && info.Deriver.IsZero():
				fmt.Fprintln(io.out, "unknown-deriver")
			case c.Deriver:
				fmt.Fprintln(io.out, s.Print(info.Deriver))
			case c.Hash:
				fmt.Fprintln(io.out, info.NarHash.String())
			case c.Size:
				fmt.Fprintln(io.out, strconv.FormatUint(info.NarSize, 10))
			}
		}
	}
	return nil
}

// topoSortPaths orders a set as nix-store -q prints it: references before
// the paths that refer to them, ties broken by name (Nix's post-order walk
// of its sorted path set).
func topoSortPaths(s *store.Store, set map[storepath.Path]bool) ([]storepath.Path, error) {
	items := make([]storepath.Path, 0, len(set))
	for p := range set {
		items = append(items, p)
	}
	storepath.Sort(items)
	visited := map[storepath.Path]bool{}
	onStack := map[storepath.Path]bool{}
	var out []storepath.Path
	var visit func(p storepath.Path) error
	visit = func(p storepath.Path) error {
		if onStack[p] {
			return errors.New("cycle in references at " + s.Print(p))
		}
		if visited[p] {
			return nil
		}
		visited[p] = true
		onStack[p] = true
		info, err := s.Info(p)
		if errors.Is(err, store.ErrNotValid) {
			info, err = &store.PathInfo{}, nil // no references: a leaf
		}
		if err != nil {
			return err
		}
		refs := append([]storepath.Path(nil), info.References...)
		storepath.Sort(refs)
		for _, r := range refs {
			if r != p && set[r] {
				if err := visit(r); err != nil {
					return err
				}
			}
		}
		out = append(out, p)
		delete(onStack, p)
		return nil
	}
	for _, p := range items {
		if err := visit(p); err != nil {
			return out, err
		}
	}
	return out, nil
}
