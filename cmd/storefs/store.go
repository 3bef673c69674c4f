package main

import (
	"fmt"

	"storefs/store"
	"storefs/store/storepath"
)

// openStore opens the store named by the global flags.
func (g *Globals) openStore() (*store.Store, error) {
	dir, err := g.storeDir()
	if err != nil {
		return nil, err
	}
	return store.Open(dir, g.StateDir, store.Options{})
}

// parsePaths parses full store paths given on the command line.
func parsePaths(dir storepath.Dir, args []string) ([]storepath.Path, error) {
	out := make([]storepath.Path, 0, len(args))
	for _, a := range args {
		p, err := dir.Parse(a)
		if err != nil {
			return nil, fmt.Errorf("argument %q: %w", a, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// withStore opens the store named by the global flags, runs fn and closes
// the store.
func (g *Globals) withStore(fn func(s *store.Store) error) error {
	s, err := g.openStore()
	if err != nil {
		return err
	}
	defer s.Close()
	return fn(s)
}

// withPaths is withStore for a command whose arguments are store paths.
func (g *Globals) withPaths(args []string, fn func(s *store.Store, ps []storepath.Path) error) error {
	return g.withStore(func(s *store.Store) error {
		ps, err := parsePaths(s.Dir, args)
		if err != nil {
			return err
		}
		return fn(s, ps)
	})
}
