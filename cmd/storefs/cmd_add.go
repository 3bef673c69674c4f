package main

import (
	"context"
	"fmt"

	"storefs/store"
	"storefs/store/nixhash"
)

// addCmd is `nix-store --add`: each tree becomes a content-addressed path
// (recursive sha256) and its store path is printed.
type addCmd struct {
	Paths []string `arg:"" type:"path" help:"Files or directories to add."`
}

func (c *addCmd) Run(ctx context.Context, g *Globals, io stdio) error {
	return g.withStore(func(s *store.Store) error {
		return runAdd(ctx, s, io, c.Paths, true, nixhash.SHA256)
	})
}

// addFixedCmd is `nix-store --add-fixed`.
type addFixedCmd struct {
	Recursive bool     `help:"Hash the NAR of each path instead of the flat file."`
	Algo      string   `arg:"" enum:"md5,sha1,sha256,sha512" help:"Hash algorithm: md5, sha1, sha256 or sha512."`
	Paths     []string `arg:"" type:"path" help:"Files (or, with --recursive, trees) to add."`
}

func (c *addFixedCmd) Run(ctx context.Context, g *Globals, io stdio) error {
	algo, err := nixhash.ParseAlgo(c.Algo)
	if err != nil {
		return err
	}
	return g.withStore(func(s *store.Store) error {
		return runAdd(ctx, s, io, c.Paths, c.Recursive, algo)
	})
}

func runAdd(ctx context.Context, s *store.Store, io stdio, paths []string, recursive bool, algo nixhash.Algo) error {
	for _, p := range paths {
		info, err := s.AddPath(ctx, p, recursive, algo)
		if err != nil {
			return err
		}
		fmt.Fprintln(io.out, s.Print(info.Path))
	}
	return nil
}
