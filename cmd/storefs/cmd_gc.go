package main

import (
	"context"
	"fmt"

	"storefs/store"
	"storefs/store/storepath"
)

// gcCmd is `nix-store --gc`.
type gcCmd struct {
	MaxFreed byteSize `name:"max-freed" placeholder:"BYTES" help:"Stop after freeing this many bytes (NAR size), with K, M, G or T for powers of 1024 (1G); as in Nix, 0 or less frees nothing."`
	DryRun   bool     `name:"dry-run" help:"Print what would be deleted; delete nothing."`
}

func (c *gcCmd) Run(ctx context.Context, g *Globals, io stdio) error {
	return g.withStore(func(s *store.Store) error {
		var res *store.GCResult
		var err error
		if c.MaxFreed.set && c.MaxFreed.n == 0 {
			// Nix's --max-freed 0 deletes nothing; GCOptions' 0 is no limit.
			res = &store.GCResult{}
		} else {
			res, err = s.GC(ctx, store.GCOptions{MaxFreed: c.MaxFreed.n, DryRun: c.DryRun})
		}
		if res != nil {
			for _, p := range res.Deleted {
				fmt.Fprintln(io.out, s.Print(p))
			}
			verb := "freed"
			if c.DryRun {
				verb = "would free"
			}
			fmt.Fprintf(io.err, "%d store paths deleted, %s %d bytes\n", len(res.Deleted), verb, res.Freed)
		}
		return err
	})
}

// deleteCmd is `nix-store --delete`.
type deleteCmd struct {
	Paths []string `arg:"" help:"Store paths to delete; none may be a gc root or be referred to by a valid path that stays."`
}

func (c *deleteCmd) Run(ctx context.Context, g *Globals, io stdio) error {
	return g.withPaths(c.Paths, func(s *store.Store, ps []storepath.Path) error {
		if err := s.DeleteSpecific(ctx, ps); err != nil {
			return err
		}
		for _, p := range ps {
			fmt.Fprintln(io.out, s.Print(p))
		}
		return nil
	})
}

// addRootCmd makes store paths garbage collector roots.
type addRootCmd struct {
	Paths []string `arg:"" help:"Valid store paths to keep."`
}

func (c *addRootCmd) Run(ctx context.Context, g *Globals, io stdio) error {
	return g.withPaths(c.Paths, func(s *store.Store, ps []storepath.Path) error {
		for _, p := range ps {
			link, err := s.AddRoot(p)
			if err != nil {
				return err
			}
			fmt.Fprintln(io.out, link)
		}
		return nil
	})
}
