package main

import (
	"context"
	"fmt"

	"storefs/store"
	"storefs/store/storepath"
)

// importCmd is `nix-store --import`: a stream on stdin, each path printed as
// it becomes valid.
type importCmd struct{}

func (c *importCmd) Run(ctx context.Context, g *Globals, io stdio) error {
	return g.withStore(func(s *store.Store) error {
		ps, err := s.Import(ctx, io.in)
		for _, p := range ps {
			fmt.Fprintln(io.out, s.Print(p))
		}
		return err
	})
}

// exportCmd is `nix-store --export`: the paths (not their closure) as a
// stream on stdout, references first.
type exportCmd struct {
	Paths []string `arg:"" help:"Valid store paths."`
}

func (c *exportCmd) Run(ctx context.Context, g *Globals, io stdio) error {
	return g.withPaths(c.Paths, func(s *store.Store, ps []storepath.Path) error {
		set := map[storepath.Path]bool{}
		for _, p := range ps {
			if _, err := s.Info(p); err != nil {
				return err
			}
			set[p] = true
		}
		sorted, err := topoSortPaths(s, set)
		if err != nil {
			return err
		}
		return s.Export(io.out, sorted)
	})
}
