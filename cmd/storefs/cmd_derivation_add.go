package main

import (
	"bytes"
	"context"
	"fmt"
	"os"

	"storefs/store"
	"storefs/store/derivation"
	"storefs/store/storepath"
)

// derivationAddCmd adds a derivation file to the store, checked, with its
// outputs recorded, and prints its .drv path (what nix-instantiate does
// after evaluation).
type derivationAddCmd struct {
	Files []string `arg:"" type:"existingfile" help:"Derivations: ATerm .drv files, or the JSON form of nix show-derivation."`
}

func (c *derivationAddCmd) Run(ctx context.Context, g *Globals, io stdio) error {
	return g.withStore(func(s *store.Store) error {
		for _, f := range c.Files {
			drvs, err := readDerivationFile(f, s.Dir)
			if err != nil {
				return err
			}
			for _, d := range drvs {
				info, err := s.AddDerivation(ctx, d)
				if err != nil {
					return fmt.Errorf("%s: %w", f, err)
				}
				fmt.Fprintln(io.out, s.Print(info.Path))
			}
		}
		return nil
	})
}

// readDerivationFile reads an ATerm .drv or the JSON form (which may hold
// several derivations).
func readDerivationFile(f string, dir storepath.Dir) ([]*derivation.Derivation, error) {
	data, err := os.ReadFile(f)
	if err != nil {
		return nil, err
	}
	if bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte("{")) {
		drvs, err := derivation.ParseJSON(data, dir)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		return drvs, nil
	}
	d, err := derivation.Parse(data, dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f, err)
	}
	return []*derivation.Derivation{d}, nil
}
