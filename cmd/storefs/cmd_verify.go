package main

import (
	"context"
	"fmt"

	"storefs/store"
)

// verifyCmd is `nix-store --verify`: the store's checker.
type verifyCmd struct {
	CheckContents bool `help:"Also recompute every path's NAR hash and check its file modes and recorded derivation outputs."`
	Repair        bool `help:"Remove backing entries that have no record, rebuild the indexes and re-canonicalise contents whose modes or times drifted when that makes them match their record (others are left as found); exit 0 if nothing is left wrong."`
}

// problemsError reports that the checker found problems; exit code 1.
type problemsError int

func (e problemsError) Error() string { return fmt.Sprintf("verify: %d problems found", int(e)) }

func (c *verifyCmd) Run(ctx context.Context, g *Globals, io stdio) error {
	return g.withStore(func(s *store.Store) error {
		return runVerify(ctx, s, io, store.CheckOptions{Contents: c.CheckContents}, c.Repair)
	})
}

func runVerify(ctx context.Context, s *store.Store, io stdio, opts store.CheckOptions, repair bool) error {
	probs, err := s.Check(opts)
	if err != nil {
		return err
	}
	for _, p := range probs {
		fmt.Fprintln(io.err, p)
	}
	if repair && len(probs) > 0 {
		if err := s.Repair(); err != nil {
			return err
		}
		if probs, err = s.Check(opts); err != nil {
			return err
		}
		for _, p := range probs {
			fmt.Fprintln(io.err, "after repair:", p)
		}
	}
	if len(probs) > 0 {
		return problemsError(len(probs))
	}
	return nil
}
